package discovery

import "strings"

// Entity names are made from the protocol's CamelCase field names by
// splitting them into words (humanName), with a table of names written out
// where the split reads badly (nameOverrides). Entity ids use the split
// words in snake case (snakeName), so that an entity id can be traced back
// to its topic: tesla/<VIN>/DCChargingPower is sensor.<car>_dc_charging_power.

// splitWords splits a CamelCase protocol name into its words: a new word
// starts at an upper-case letter after a lower-case letter or digit, at the
// last upper-case letter of an acronym followed by a lower-case letter
// ("DCCharging" → "DC", "Charging"), and at every underscore. Digits stay
// with the letters before them ("Re1L0" → "Re1", "L0").
func splitWords(name string) []string {
	var words []string
	start := 0
	flush := func(end int) {
		if end > start {
			words = append(words, name[start:end])
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' {
			flush(i)
			start = i + 1
			continue
		}
		if i == start || !isUpper(c) {
			continue
		}
		prev := name[i-1]
		switch {
		case isLower(prev) || isDigit(prev):
			flush(i)
			start = i
		case isUpper(prev) && i+1 < len(name) && isLower(name[i+1]):
			flush(i)
			start = i
		}
	}
	flush(len(name))
	return words
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// wordSpelling is how some words are written in entity names, keyed by the
// word in lower case.
var wordSpelling = map[string]string{
	"ac": "AC", "dc": "DC", "bms": "BMS", "gps": "GPS", "hvac": "HVAC",
	"tpms": "TPMS", "soc": "SoC", "kw": "kW", "qr": "QR", "ble": "BLE",
}

// EntityName is the name Home Assistant shows for the entity of a
// protocol field name, such as "DC charging power" for DCChargingPower:
// other parts of fleet2mqtt (the setup page's signal picker) use it so
// that a signal reads the same everywhere.
func EntityName(field string) string { return humanName(field) }

// humanName returns the entity name for a protocol name: its words, the
// first capitalised, the others in lower case, acronyms as they are
// ("DCChargingPower" → "DC charging power").
func humanName(name string) string {
	if n, ok := nameOverrides[name]; ok {
		return n
	}
	var b strings.Builder
	for i, w := range splitWords(name) {
		if i > 0 {
			b.WriteByte(' ')
		}
		lw := strings.ToLower(w)
		switch {
		case wordSpelling[lw] != "":
			b.WriteString(wordSpelling[lw])
		case len(w) > 1 && isUpper(w[0]) && isUpper(w[1]):
			b.WriteString(w) // an acronym
		case i == 0:
			b.WriteString(strings.ToUpper(lw[:1]))
			b.WriteString(lw[1:])
		default:
			b.WriteString(lw)
		}
	}
	return b.String()
}

// snakeName returns a protocol name in snake case, the words of
// splitWords in lower case joined by underscores ("DiHeatsinkTR" →
// "di_heatsink_tr").
func snakeName(name string) string {
	return strings.ToLower(strings.Join(splitWords(name), "_"))
}

// slug makes s usable as the object part of a Home Assistant entity id:
// lower-case ASCII letters and digits, every other run of characters one
// underscore, none at either end. Letters with accents lose them where
// that is simple (é → e); other characters are dropped into the
// underscores; apostrophes are dropped. It returns "" when nothing usable
// remains.
func slug(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for _, r := range s {
		r = foldRune(r)
		switch {
		case r == '\'' || r == '\u2019':
			continue // "Zoë's car" → zoes_car, as Home Assistant does
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		default:
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte('_')
			pending = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// foldRune maps common accented Latin letters to their base letter, so
// that a car called "Zoë" gets entity ids with "zoe".
func foldRune(r rune) rune {
	if r < 0xC0 || r > 0x17F {
		return r
	}
	const from = "ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿ"
	const to = "AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOOooooooUUUUuuuuYyy"
	i := 0
	for _, f := range from {
		if f == r {
			return rune(to[i])
		}
		i++
	}
	return r
}

// nameOverrides are entity names written out for fields whose split name
// reads badly: abbreviations of the drive inverters (Di…, F front, R rear,
// REL/RER rear left/right of three-motor cars), tire positions, and a few
// others.
var nameOverrides = map[string]string{
	"BmsFullchargecomplete":                     "BMS full charge complete",
	"Soc":                                       "State of charge",
	"DCDCEnable":                                "DC-DC converter enabled",
	"Hvil":                                      "HV interlock",
	"IsolationResistance":                       "Isolation resistance",
	"Gear":                                      "Gear",
	"GpsState":                                  "GPS signal",
	"GpsHeading":                                "Heading",
	"NumBrickVoltageMax":                        "Brick with highest voltage",
	"NumBrickVoltageMin":                        "Brick with lowest voltage",
	"NumModuleTempMax":                          "Module with highest temperature",
	"NumModuleTempMin":                          "Module with lowest temperature",
	"BrickVoltageMax":                           "Highest brick voltage",
	"BrickVoltageMin":                           "Lowest brick voltage",
	"ModuleTempMax":                             "Highest module temperature",
	"ModuleTempMin":                             "Lowest module temperature",
	"DCChargingEnergyIn":                        "DC charging energy",
	"ACChargingEnergyIn":                        "AC charging energy",
	"ChargeLimitSoc":                            "Charge limit",
	"EstBatteryRange":                           "Estimated battery range",
	"ChargeCurrentRequest":                      "Requested charge current",
	"ChargeCurrentRequestMax":                   "Maximum charge current",
	"ChargeEnableRequest":                       "Charge requested",
	"SuperchargerSessionTripPlanner":            "Supercharger session from trip planner",
	"FdWindow":                                  "Driver front window",
	"FpWindow":                                  "Passenger front window",
	"RdWindow":                                  "Driver rear window",
	"RpWindow":                                  "Passenger rear window",
	"CurrentLimitMph":                           "Speed limit mode limit",
	"Version":                                   "Software version",
	"TpmsPressureFl":                            "Tire pressure front left",
	"TpmsPressureFr":                            "Tire pressure front right",
	"TpmsPressureRl":                            "Tire pressure rear left",
	"TpmsPressureRr":                            "Tire pressure rear right",
	"SemitruckTpmsPressureRe1L0":                "Tire pressure middle axle left 0",
	"SemitruckTpmsPressureRe1L1":                "Tire pressure middle axle left 1",
	"SemitruckTpmsPressureRe1R0":                "Tire pressure middle axle right 0",
	"SemitruckTpmsPressureRe1R1":                "Tire pressure middle axle right 1",
	"SemitruckTpmsPressureRe2L0":                "Tire pressure rear axle left 0",
	"SemitruckTpmsPressureRe2L1":                "Tire pressure rear axle left 1",
	"SemitruckTpmsPressureRe2R0":                "Tire pressure rear axle right 0",
	"SemitruckTpmsPressureRe2R1":                "Tire pressure rear axle right 1",
	"TpmsLastSeenPressureTimeFl":                "Tire pressure last seen front left",
	"TpmsLastSeenPressureTimeFr":                "Tire pressure last seen front right",
	"TpmsLastSeenPressureTimeRl":                "Tire pressure last seen rear left",
	"TpmsLastSeenPressureTimeRr":                "Tire pressure last seen rear right",
	"InsideTemp":                                "Inside temperature",
	"OutsideTemp":                               "Outside temperature",
	"SeatHeaterLeft":                            "Seat heater front left",
	"SeatHeaterRight":                           "Seat heater front right",
	"SeatHeaterRearLeft":                        "Seat heater rear left",
	"SeatHeaterRearRight":                       "Seat heater rear right",
	"SeatHeaterRearCenter":                      "Seat heater rear center",
	"AutoSeatClimateLeft":                       "Auto seat climate front left",
	"AutoSeatClimateRight":                      "Auto seat climate front right",
	"SemitruckPassengerSeatFoldPosition":        "Passenger seat fold position",
	"SemitruckTractorParkBrakeStatus":           "Tractor park brake",
	"SemitruckTrailerParkBrakeStatus":           "Trailer park brake",
	"BrakePedalPos":                             "Brake pedal position",
	"PedalPosition":                             "Accelerator pedal position",
	"BrakePedal":                                "Brake pedal pressed",
	"OriginLocation":                            "Route origin",
	"DestinationLocation":                       "Route destination",
	"DestinationName":                           "Route destination name",
	"MilesToArrival":                            "Distance to arrival",
	"MinutesToArrival":                          "Time to arrival",
	"RouteTrafficMinutesDelay":                  "Traffic delay",
	"PairedPhoneKeyAndKeyFobQty":                "Paired phone keys and key fobs",
	"AutomaticEmergencyBrakingOff":              "Automatic emergency braking off",
	"EnergyRemaining":                           "Energy remaining",
	"BMSState":                                  "BMS state",
	"GuestModeMobileAccessState":                "Guest mode mobile access",
	"HvacACEnabled":                             "Air conditioning",
	"HvacLeftTemperatureRequest":                "Temperature setting left",
	"HvacRightTemperatureRequest":               "Temperature setting right",
	"HvacSteeringWheelHeatAuto":                 "Steering wheel heat auto",
	"HvacSteeringWheelHeatLevel":                "Steering wheel heat level",
	"PowershareInstantaneousPowerKW":            "Powershare power",
	"SoftwareUpdateDownloadPercentComplete":     "Software update download progress",
	"SoftwareUpdateInstallationPercentComplete": "Software update installation progress",
	"SoftwareUpdateExpectedDurationMinutes":     "Software update expected duration",
	"SoftwareUpdateScheduledStartTime":          "Software update scheduled start",
	"SoftwareUpdateVersion":                     "Software update version",
	"TonneauOpenPercent":                        "Tonneau open",
	"TpmsHardWarnings":                          "Tire pressure hard warning",
	"TpmsSoftWarnings":                          "Tire pressure soft warning",
	"Setting24HourTime":                         "24-hour time setting",
	"SettingDistanceUnit":                       "Distance unit setting",
	"SettingTemperatureUnit":                    "Temperature unit setting",
	"SettingTirePressureUnit":                   "Tire pressure unit setting",
	"SettingChargeUnit":                         "Charge unit setting",
	"ClimateSeatCoolingFrontLeft":               "Seat cooling front left",
	"ClimateSeatCoolingFrontRight":              "Seat cooling front right",
	"LightsHazardsActive":                       "Hazard lights",
	"LightsTurnSignal":                          "Turn signal",
	"LightsHighBeams":                           "High beams",
	"MediaPlaybackStatus":                       "Media playback status",
	"MediaNowPlayingDuration":                   "Media track duration",
	"MediaNowPlayingElapsed":                    "Media track elapsed",
	"MediaNowPlayingArtist":                     "Media artist",
	"MediaNowPlayingTitle":                      "Media title",
	"MediaNowPlayingAlbum":                      "Media album",
	"MediaNowPlayingStation":                    "Media station",
	"MediaAudioVolumeIncrement":                 "Media volume step",
	"MediaAudioVolumeMax":                       "Media volume maximum",
	"MediaAudioVolume":                          "Media volume",
	"ChargeRateMilePerHour":                     "Charge rate",
	"MilesSinceReset":                           "Distance since reset",
	"SelfDrivingMilesSinceReset":                "Self-driving distance since reset",
	"DriveRail":                                 "Drive rail",
	"ChargePortDoorOpen":                        "Charge port door",
	"EstimatedHoursToChargeTermination":         "Time to charge termination",
	"ExpectedEnergyPercentAtTripArrival":        "Expected battery at arrival",
	"DiTorquemotor":                             "Drive torque request",
	"DiSlaveTorqueCmd":                          "Secondary motor torque command",
	"LifetimeEnergyGainedRegen":                 "Lifetime regenerated energy",
	"LifetimeEnergyUsedDrive":                   "Lifetime energy used driving",
	"LocatedAtHome":                             "At home",
	"LocatedAtWork":                             "At work",
	"LocatedAtFavorite":                         "At favorite location",
	"HomelinkNearby":                            "HomeLink nearby",
	"HomelinkDeviceCount":                       "HomeLink devices",
	"ServiceMode":                               "Service mode",
	"Locked":                                    "Lock",
	"PinToDriveEnabled":                         "PIN to drive",
	"BatteryHeaterOn":                           "Battery heater",
	"RightHandDrive":                            "Right-hand drive",
	"ChargeAmps":                                "Charger current",
}

// driveUnitNames names the drive inverter signals Di<Quantity><Position>:
// the quantity words and the motor position suffixes.
var (
	driveUnitQuantity = map[string]string{
		"State": "state", "HeatsinkT": "heatsink temperature", "AxleSpeed": "axle speed",
		"StatorTemp": "stator temperature", "VBat": "battery voltage", "MotorCurrent": "current",
		"TorqueActual": "torque", "InverterT": "inverter temperature",
	}
	driveUnitPosition = map[string]string{
		"F": "Front motor", "R": "Rear motor", "REL": "Rear left motor", "RER": "Rear right motor",
	}
)

// driveUnitName returns the name of a drive inverter signal such as
// DiHeatsinkTREL ("Rear left motor heatsink temperature"), or "" when name
// is not one.
func driveUnitName(name string) string {
	rest, ok := strings.CutPrefix(name, "Di")
	if !ok {
		return ""
	}
	for _, pos := range [...]string{"REL", "RER", "F", "R"} {
		q, ok := strings.CutSuffix(rest, pos)
		if !ok {
			continue
		}
		if words, ok := driveUnitQuantity[q]; ok {
			return driveUnitPosition[pos] + " " + words
		}
	}
	return ""
}

// entityName returns the entity name of a catalog field.
func entityName(field string) string {
	if n := driveUnitName(field); n != "" {
		return n
	}
	return humanName(field)
}
