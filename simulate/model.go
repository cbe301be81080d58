package simulate

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Scenario names what a simulated car does.
type Scenario string

// Scenarios a car can play. Each repeats until the simulation ends.
const (
	// ScenarioDrive drives laps of a route: location, heading, speed,
	// gear and odometer change; a short stop in P after every lap.
	ScenarioDrive Scenario = "drive"
	// ScenarioCharge plugs in at home (AC) or at a Supercharger (DC),
	// charges to the limit and stands unplugged for a while: state of
	// charge rises, charger power, voltage and current, the detailed
	// charge state and the time to full change.
	ScenarioCharge Scenario = "charge"
	// ScenarioPark parks and falls asleep: the car disconnects for a
	// while, then wakes up, reconnects and reports again.
	ScenarioPark Scenario = "park"
	// ScenarioAlerts stays parked and raises and clears alerts and
	// reports errors.
	ScenarioAlerts Scenario = "alerts"
	// ScenarioMixed is a day in the life: drive, park with an alert or
	// two, sleep, charge, sleep again.
	ScenarioMixed Scenario = "mixed"
	// ScenarioCommute drives from home to work (Places), parks there,
	// drives home, plugs in and charges to the limit on AC, unplugs and
	// falls asleep: every status, place change, drive and charging session
	// fleet2mqtt derives.
	ScenarioCommute Scenario = "commute"
)

// Scenarios lists every scenario, for help texts.
var Scenarios = []Scenario{ScenarioDrive, ScenarioCharge, ScenarioPark, ScenarioAlerts, ScenarioMixed, ScenarioCommute}

// Place is a named place on the simulated route.
type Place struct {
	Name                string
	Latitude, Longitude float64
}

// workWaypoint is the route's waypoint where ScenarioCommute parks.
const workWaypoint = 6

// Places returns the places of ScenarioCommute: Home, where the route
// starts and the car charges, and Work, where it parks.
func Places() []Place {
	home, work := paloAlto[0], paloAlto[workWaypoint]
	return []Place{
		{Name: "Home", Latitude: home.lat, Longitude: home.lon},
		{Name: "Work", Latitude: work.lat, Longitude: work.lon},
	}
}

// ParseScenario returns the scenario named s.
func ParseScenario(s string) (Scenario, error) {
	for _, sc := range Scenarios {
		if string(sc) == s {
			return sc, nil
		}
	}
	names := make([]string, len(Scenarios))
	for i, sc := range Scenarios {
		names[i] = string(sc)
	}
	return "", fmt.Errorf("unknown scenario %q: choose one of %s", s, strings.Join(names, ", "))
}

// Vehicle constants: a long-range Model 3.
const (
	packKWh        = 75.0  // usable pack energy
	driveKWhPerMi  = 0.25  // consumption while driving
	auxKW          = 0.6   // cabin, electronics while awake
	chargeEff      = 0.92  // wall to pack
	acVolts        = 240.0 // home wall connector
	acAmps         = 32.0
	dcPeakKW       = 150.0 // Supercharger
	acceleration   = 5.0   // mph per second
	deceleration   = 7.0   // mph per second
	startingTime   = 15 * time.Second
	completeTime   = 2 * time.Minute
	refreshTicks   = 30 // a signal unchanged for this many records is sent again
	sleepDrainPerH = 0.05
)

var (
	fVehicleSpeed          = field(schema.Field_VehicleSpeed)
	fOdometer              = field(schema.Field_Odometer)
	fPackVoltage           = field(schema.Field_PackVoltage)
	fPackCurrent           = field(schema.Field_PackCurrent)
	fSoc                   = field(schema.Field_Soc)
	fGear                  = field(schema.Field_Gear)
	fLocation              = field(schema.Field_Location)
	fGpsState              = field(schema.Field_GpsState)
	fGpsHeading            = field(schema.Field_GpsHeading)
	fRatedRange            = field(schema.Field_RatedRange)
	fDCChargingEnergyIn    = field(schema.Field_DCChargingEnergyIn)
	fDCChargingPower       = field(schema.Field_DCChargingPower)
	fACChargingEnergyIn    = field(schema.Field_ACChargingEnergyIn)
	fACChargingPower       = field(schema.Field_ACChargingPower)
	fChargeLimitSoc        = field(schema.Field_ChargeLimitSoc)
	fFastChargerPresent    = field(schema.Field_FastChargerPresent)
	fEstBatteryRange       = field(schema.Field_EstBatteryRange)
	fIdealBatteryRange     = field(schema.Field_IdealBatteryRange)
	fBatteryLevel          = field(schema.Field_BatteryLevel)
	fTimeToFullCharge      = field(schema.Field_TimeToFullCharge)
	fScheduledChargeStart  = field(schema.Field_ScheduledChargingStartTime)
	fChargeAmps            = field(schema.Field_ChargeAmps)
	fChargerPhases         = field(schema.Field_ChargerPhases)
	fChargeCurrentRequest  = field(schema.Field_ChargeCurrentRequest)
	fChargeCurrentMax      = field(schema.Field_ChargeCurrentRequestMax)
	fChargeState           = field(schema.Field_ChargeState)
	fDoorState             = field(schema.Field_DoorState)
	fLocked                = field(schema.Field_Locked)
	fVehicleName           = field(schema.Field_VehicleName)
	fSentryMode            = field(schema.Field_SentryMode)
	fVersion               = field(schema.Field_Version)
	fTpmsPressureFl        = field(schema.Field_TpmsPressureFl)
	fTpmsPressureFr        = field(schema.Field_TpmsPressureFr)
	fTpmsPressureRl        = field(schema.Field_TpmsPressureRl)
	fTpmsPressureRr        = field(schema.Field_TpmsPressureRr)
	fInsideTemp            = field(schema.Field_InsideTemp)
	fOutsideTemp           = field(schema.Field_OutsideTemp)
	fRouteLastUpdated      = field(schema.Field_RouteLastUpdated)
	fMilesToArrival        = field(schema.Field_MilesToArrival)
	fMinutesToArrival      = field(schema.Field_MinutesToArrival)
	fDestinationLocation   = field(schema.Field_DestinationLocation)
	fCarType               = field(schema.Field_CarType)
	fChargePortLatch       = field(schema.Field_ChargePortLatch)
	fEnergyRemaining       = field(schema.Field_EnergyRemaining)
	fDetailedChargeState   = field(schema.Field_DetailedChargeState)
	fCenterDisplay         = field(schema.Field_CenterDisplay)
	fChargePortDoorOpen    = field(schema.Field_ChargePortDoorOpen)
	fChargerVoltage        = field(schema.Field_ChargerVoltage)
	fChargingCableType     = field(schema.Field_ChargingCableType)
	fClimateKeeperMode     = field(schema.Field_ClimateKeeperMode)
	fHoursToChargeEnd      = field(schema.Field_EstimatedHoursToChargeTermination)
	fExpectedEnergyArrival = field(schema.Field_ExpectedEnergyPercentAtTripArrival)
	fFastChargerType       = field(schema.Field_FastChargerType)
	fHvacFanSpeed          = field(schema.Field_HvacFanSpeed)
	fHvacLeftTempRequest   = field(schema.Field_HvacLeftTemperatureRequest)
	fHvacPower             = field(schema.Field_HvacPower)
	fRouteTrafficDelay     = field(schema.Field_RouteTrafficMinutesDelay)
	fTpmsSoftWarnings      = field(schema.Field_TpmsSoftWarnings)
	fLocatedAtHome         = field(schema.Field_LocatedAtHome)
	fLightsTurnSignal      = field(schema.Field_LightsTurnSignal)
	fMediaPlaybackStatus   = field(schema.Field_MediaPlaybackStatus)
	fMediaNowPlayingTitle  = field(schema.Field_MediaNowPlayingTitle)
	fChargeRateMph         = field(schema.Field_ChargeRateMilePerHour)
)

func field(f schema.Field) telemetry.Field { return telemetry.Field(f) }

// enumValue returns the value of enum e with the short name short. The
// names used here are fixed by the protocol; a missing one is a bug caught
// by the tests, and yields the enum's zero value.
func enumValue(e *telemetry.EnumType, short string) telemetry.Value {
	if ev, ok := e.ByName(short); ok {
		return telemetry.EnumOf(e, ev)
	}
	return telemetry.EnumNumber(e, 0)
}

var (
	gearP            = enumValue(telemetry.EnumShiftState, "P")
	gearD            = enumValue(telemetry.EnumShiftState, "D")
	chargeDisconnect = enumValue(telemetry.EnumDetailedChargeStateValue, "Disconnected")
	chargeStarting   = enumValue(telemetry.EnumDetailedChargeStateValue, "Starting")
	chargeCharging   = enumValue(telemetry.EnumDetailedChargeStateValue, "Charging")
	chargeComplete   = enumValue(telemetry.EnumDetailedChargeStateValue, "Complete")
	chargeStopped    = enumValue(telemetry.EnumDetailedChargeStateValue, "Stopped")
	latchEngaged     = enumValue(telemetry.EnumChargePortLatchValue, "Engaged")
	latchDisengaged  = enumValue(telemetry.EnumChargePortLatchValue, "Disengaged")
	cableSAE         = enumValue(telemetry.EnumCableType, "SAE")
	superCharger     = enumValue(telemetry.EnumFastCharger, "Supercharger")
	sentryArmed      = enumValue(telemetry.EnumSentryModeState, "Armed")
	sentryOff        = enumValue(telemetry.EnumSentryModeState, "Off")
	displayDriving   = enumValue(telemetry.EnumDisplayState, "Driving")
	displayCharging  = enumValue(telemetry.EnumDisplayState, "Charging")
	displayLock      = enumValue(telemetry.EnumDisplayState, "Lock")
	hvacOn           = enumValue(telemetry.EnumHvacPowerState, "On")
	hvacOff          = enumValue(telemetry.EnumHvacPowerState, "Off")
	keeperOff        = enumValue(telemetry.EnumClimateKeeperModeState, "Off")
	signalOff        = enumValue(telemetry.EnumTurnSignalState, "Off")
	signalLeft       = enumValue(telemetry.EnumTurnSignalState, "Left")
	signalRight      = enumValue(telemetry.EnumTurnSignalState, "Right")
	mediaPlaying     = enumValue(telemetry.EnumMediaStatus, "Playing")
	mediaStopped     = enumValue(telemetry.EnumMediaStatus, "Stopped")
	carModel3        = enumValue(telemetry.EnumCarTypeValue, "Model3")
	firmwareVersion  = telemetry.StringValue("2025.44.25.5 f3a2b1c0d9e8")
	stationNames     = []string{"Morning Drive", "Bay Area Traffic Report", "Quiet Electric", "Long Range Jazz", "Regen Radio"}
	alertCatalog     = []alertTemplate{
		{"VCFRONT_a192_hvacBlowerSpeedLimited", []telemetry.Audience{telemetry.AudienceService}},
		{"TPMS_a167_tireLowPressureFrontLeft", []telemetry.Audience{telemetry.AudienceCustomer, telemetry.AudienceService}},
		{"UI_a020_chargeCableNotLatched", []telemetry.Audience{telemetry.AudienceCustomer}},
		{"APP_w304_frontCameraBlocked", []telemetry.Audience{telemetry.AudienceCustomer}},
		{"BMS_a079_stoppedChargingLowTemperature", []telemetry.Audience{telemetry.AudienceCustomer, telemetry.AudienceServiceFix}},
		{"VCLEFT_a166_mirrorFoldFault", []telemetry.Audience{telemetry.AudienceServiceFix}},
	}
	errorCatalog = []telemetry.VehicleError{
		{Name: "unsupported_field", Tags: map[string]string{"field": "SelfDrivingMilesSinceReset"}, Body: "field not available on this vehicle"},
		{Name: "config_interval_clamped", Tags: map[string]string{"field": "Location", "interval_seconds": "1"}, Body: "minimum interval for this field is 5 seconds"},
		{Name: "stream_buffer_full", Tags: map[string]string{"topic": "V"}, Body: "records dropped while the connection was down"},
	}
)

type alertTemplate struct {
	name      string
	audiences []telemetry.Audience
}

type phaseKind uint8

const (
	phaseDrive phaseKind = iota
	phaseParked
	phaseAsleep
	phaseCharge
)

// phase is one step of a scenario's plan. Driving lasts one lap and
// charging one session; parked and asleep phases last dur.
type phase struct {
	kind   phaseKind
	dur    time.Duration
	alerts time.Duration // mean time between alerts while in this phase; 0: none
	// to is the waypoint a drive ends at; 0, the route's start, drives
	// a lap.
	to int
	// home makes a charge an AC session at home.
	home bool
}

// planFor returns the phases a scenario repeats.
func planFor(s Scenario) []phase {
	switch s {
	case ScenarioDrive:
		return []phase{{kind: phaseDrive}, {kind: phaseParked, dur: time.Minute}}
	case ScenarioCharge:
		return []phase{{kind: phaseCharge}, {kind: phaseParked, dur: 5 * time.Minute}}
	case ScenarioPark:
		return []phase{{kind: phaseParked, dur: 3 * time.Minute}, {kind: phaseAsleep, dur: 20 * time.Minute}}
	case ScenarioAlerts:
		return []phase{{kind: phaseParked, dur: 10 * time.Minute, alerts: 40 * time.Second}}
	case ScenarioCommute:
		return []phase{
			{kind: phaseParked, dur: time.Minute},
			{kind: phaseDrive, to: workWaypoint},
			{kind: phaseParked, dur: 8 * time.Minute},
			{kind: phaseDrive},
			{kind: phaseParked, dur: time.Minute},
			{kind: phaseCharge, home: true},
			{kind: phaseParked, dur: 3 * time.Minute},
			{kind: phaseAsleep, dur: 10 * time.Minute},
		}
	}
	return []phase{
		{kind: phaseDrive},
		{kind: phaseParked, dur: 3 * time.Minute, alerts: 90 * time.Second},
		{kind: phaseAsleep, dur: 15 * time.Minute},
		{kind: phaseCharge},
		{kind: phaseParked, dur: time.Minute},
		{kind: phaseAsleep, dur: 10 * time.Minute},
	}
}

// tick is what the car has to send after one step of the simulation.
type tick struct {
	data   []telemetry.Datum
	alerts [][]telemetry.Alert
	errors [][]telemetry.VehicleError
	notes  []string      // state changes worth telling a person
	sleep  time.Duration // go to sleep (disconnect) for this simulated time
}

// activeAlert is an alert raised and not yet cleared.
type activeAlert struct {
	alert   telemetry.Alert
	clearIn time.Duration
}

// vehicle is the simulated state of one car. It is driven by step and
// owned by one goroutine.
type vehicle struct {
	rng   *rand.Rand
	plan  []phase
	idx   int
	in    time.Duration // time spent in the current phase
	fresh bool          // the current phase has not started yet
	laps  int

	// Motion.
	route    []waypoint
	next     int // index of the waypoint driven to
	lat, lon float64
	heading  float64
	speed    float64 // mph
	target   float64 // mph
	stopNext bool    // stop at the next waypoint
	stopLeft time.Duration
	odometer float64 // miles
	legLeft  float64 // miles to the end of the lap
	dest     int     // the waypoint the drive ends at (0: the lap's end)
	gear     telemetry.Value

	// Energy.
	soc      float64 // percent
	limit    int
	packKW   float64 // power out of the pack; negative while charging
	dc       bool    // the charging session is at a Supercharger
	charge   telemetry.Value
	chargeIn time.Duration // time in the current charge state
	chargeKW float64
	energyIn float64 // kWh added this session
	amps     float64 // AC current requested from the wall connector

	// Told from outside (remote.go): a charge limit set by the owner
	// (0: none), a charging session started remotely (interrupt, taken
	// before the plan resumes), and overrides of the story.
	userLimit   int
	interrupt   *phase
	remoteStart bool
	remote      remoteOverrides

	// Cabin and body.
	inside, outside float64
	driverDoor      bool
	tpms            [4]float64 // bar
	home            bool

	// Alerts and errors.
	active    []activeAlert
	nextAlert time.Duration
	nextError time.Duration

	rep reporter
}

// newVehicle returns a car that plays s, seeded so that the same seed
// plays the same story.
func newVehicle(s Scenario, seed uint64) *vehicle {
	rng := rand.New(rand.NewPCG(seed, 0x5eed_f1ee7))
	v := &vehicle{
		rng:      rng,
		plan:     planFor(s),
		fresh:    true,
		route:    paloAlto,
		odometer: round(8000+rng.Float64()*30000, 3),
		soc:      40 + rng.Float64()*40,
		limit:    80,
		amps:     acAmps,
		gear:     gearP,
		charge:   chargeDisconnect,
		outside:  12 + rng.Float64()*12,
		tpms:     [4]float64{2.9, 2.9, 2.9, 2.9},
		home:     true,
	}
	v.inside = v.outside + 2
	for i := range v.tpms {
		v.tpms[i] = round(2.85+rng.Float64()*0.1, 2)
	}
	// Start somewhere on the loop so that many cars spread out; a
	// commute starts at home.
	start := rng.IntN(len(v.route))
	if s == ScenarioCommute {
		start = 0
	}
	v.lat, v.lon = v.route[start].lat, v.route[start].lon
	v.next = (start + 1) % len(v.route)
	v.legLeft = v.remainingLap()
	v.rep.last = make(map[telemetry.Field]sent)
	return v
}

// step advances the car by dt of simulated time and returns what to send.
// now stamps alerts and errors.
func (v *vehicle) step(dt time.Duration, now time.Time) tick {
	var t tick
	for dt > 0 && t.sleep == 0 {
		sub := min(dt, time.Second)
		dt -= sub
		ph := v.current()
		if v.fresh {
			v.fresh = false
			v.enter(ph, &t, now)
		}
		var done bool
		switch ph.kind {
		case phaseDrive:
			done = v.drive(sub)
		case phaseCharge:
			done = v.chargeStep(sub, &t)
		case phaseParked:
			v.parked(sub)
			done = v.in+sub >= ph.dur
		}
		if ph.alerts > 0 {
			v.alertStep(sub, ph.alerts, &t, now)
		}
		v.in += sub
		if done {
			// Report the state the phase ended in before the next begins.
			v.advance(&t, now)
			break
		}
	}
	t.data = v.report(now)
	return t
}

// advance moves to the next phase of the plan. A phase of sleep is taken
// at once: the tick says how long to stay away.
func (v *vehicle) advance(t *tick, now time.Time) {
	if v.interrupt != nil {
		// A remote charge ended: the plan's phase starts again.
		v.interrupt = nil
		v.in, v.fresh = 0, true
		return
	}
	v.idx = (v.idx + 1) % len(v.plan)
	v.in, v.fresh = 0, true
	ph := v.plan[v.idx]
	if ph.kind != phaseAsleep {
		return
	}
	t.sleep = ph.dur
	t.notes = append(t.notes, "falling asleep for "+ph.dur.String())
	v.soc = math.Max(0, v.soc-sleepDrainPerH*ph.dur.Hours())
	v.inside += (v.outside - v.inside) * 0.8
	// Whatever was active ended while the car slept.
	if len(v.active) > 0 {
		var ended []telemetry.Alert
		for _, a := range v.active {
			a.alert.EndedAt = now
			ended = append(ended, a.alert)
		}
		v.active = v.active[:0]
		t.alerts = append(t.alerts, ended)
	}
	v.idx = (v.idx + 1) % len(v.plan)
	// A car that wakes up reports everything again.
	v.rep.forceAll = true
}

// enter starts a phase.
func (v *vehicle) enter(ph phase, t *tick, now time.Time) {
	v.remote = remoteOverrides{} // the story takes over again
	if ph.kind == phaseCharge && v.remoteStart {
		v.remoteStart = false
		v.gear, v.speed, v.dc, v.home = gearP, 0, false, true
		v.limit = cmp.Or(v.userLimit, 80)
		v.charge = chargeStarting
		v.chargeIn, v.energyIn, v.chargeKW = 0, 0, 0
		t.notes = append(t.notes, fmt.Sprintf("charging at home on request at %.0f%%, limit %d%%", v.soc, v.limit))
		return
	}
	switch ph.kind {
	case phaseDrive:
		v.gear = gearD
		v.home = false
		v.driverDoor = false
		v.dest = ph.to
		switch {
		case v.legLeft > 0 && v.dest == 0: // a lap goes on
		case v.dest == 0 && v.next == 1: // a lap from its start
			v.legLeft = routeLength(v.route)
		default:
			v.legLeft = v.remainingLap()
		}
		v.nextSegment()
		v.laps++
		to := "3500 Deer Creek Rd"
		if v.dest != 0 {
			to = "work"
		}
		t.notes = append(t.notes, fmt.Sprintf("driving: %.1f mi to %s", v.legLeft, to))
		v.routeUpdated(now)
	case phaseParked:
		v.gear = gearP
		v.speed = 0
		v.driverDoor = true // the driver gets out
		v.home = v.next == 1
		v.nextAlert = v.randomDuration(ph.alerts)
		v.nextError = v.randomDuration(3 * ph.alerts)
		t.notes = append(t.notes, "parked")
	case phaseCharge:
		v.gear = gearP
		v.speed = 0
		v.dc = v.rng.Float64() < 0.4 && !ph.home
		v.limit = 80
		where := "at home (AC, 7.7 kW)"
		if v.userLimit != 0 {
			v.limit = v.userLimit
		}
		if v.dc && v.userLimit == 0 {
			v.limit = 90
			where = "at a Supercharger (DC)"
			v.home = false
		} else {
			v.home = true
		}
		if v.soc > float64(v.limit)-25 {
			// Nothing much to charge: pretend the car was driven
			// off-screen since, so that every session is worth watching.
			soc := 15 + v.rng.Float64()*30
			miles := (v.soc - soc) / 100 * packKWh / driveKWhPerMi
			v.odometer += miles
			v.soc = soc
			t.notes = append(t.notes, fmt.Sprintf("driven %.0f mi off-screen since the last charge", miles))
		}
		v.charge = chargeStarting
		v.chargeIn, v.energyIn, v.chargeKW = 0, 0, 0
		t.notes = append(t.notes, fmt.Sprintf("plugged in %s at %.0f%%, limit %d%%", where, v.soc, v.limit))
	}
}

func (v *vehicle) randomDuration(mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	return time.Duration((0.5 + v.rng.Float64()) * float64(mean))
}

// nextSegment picks the speed and whether to stop for the way to the
// next waypoint.
func (v *vehicle) nextSegment() {
	wp := v.route[v.next]
	v.target = math.Max(15, wp.limit+v.rng.NormFloat64()*3)
	v.stopNext = v.next == v.dest || wp.light && v.rng.Float64() < 0.4
}

// remainingLap is the distance along the route back to the first waypoint.
func (v *vehicle) remainingLap() float64 {
	lat, lon := v.lat, v.lon
	var d float64
	for i := v.next; ; i = (i + 1) % len(v.route) {
		wp := v.route[i]
		d += distanceMiles(lat, lon, wp.lat, wp.lon)
		lat, lon = wp.lat, wp.lon
		if i == v.dest {
			return d
		}
	}
}

// drive moves the car for dt (at most a second) and reports whether the
// lap is done.
func (v *vehicle) drive(dt time.Duration) bool {
	s := dt.Seconds()
	if v.stopLeft > 0 {
		v.stopLeft -= dt
		v.speed = 0
		v.use(auxKW, s)
		return false
	}
	wp := v.route[v.next]
	dist := distanceMiles(v.lat, v.lon, wp.lat, wp.lon)
	target := v.target
	if v.stopNext && dist <= v.speed*v.speed/(2*deceleration)/3600+0.002 {
		target = 0
	}
	if v.speed < target {
		v.speed = math.Min(target, v.speed+acceleration*s)
	} else {
		v.speed = math.Max(target, v.speed-deceleration*s)
	}
	if v.stopNext && v.speed == 0 && dist > 0.002 {
		v.speed = 3 // creep up to the line
	}
	move := v.speed * s / 3600
	if move >= dist || v.stopNext && dist <= 0.002 {
		v.lat, v.lon = wp.lat, wp.lon
		v.odometer += dist
		v.legLeft = math.Max(0, v.legLeft-dist)
		v.use(driveKWhPerMi*v.speed+auxKW, s)
		arrived := v.next == v.dest
		if v.stopNext {
			v.speed = 0
			v.stopLeft = time.Duration(10+v.rng.IntN(35)) * time.Second
		}
		v.next = (v.next + 1) % len(v.route)
		if arrived {
			v.stopLeft = 0
			v.legLeft = 0
			return true
		}
		v.nextSegment()
		nwp := v.route[v.next]
		v.heading = bearing(v.lat, v.lon, nwp.lat, nwp.lon)
		return false
	}
	if dist > 0 {
		f := move / dist
		v.lat += (wp.lat - v.lat) * f
		v.lon += (wp.lon - v.lon) * f
		v.heading = bearing(v.lat, v.lon, wp.lat, wp.lon)
	}
	v.odometer += move
	v.legLeft = math.Max(0, v.legLeft-move)
	v.use(driveKWhPerMi*v.speed+auxKW, s)
	return false
}

// use draws kw from the pack for s seconds.
func (v *vehicle) use(kw, s float64) {
	v.packKW = kw
	v.soc = math.Max(0, v.soc-kw*s/3600/packKWh*100)
}

// parked lets the cabin settle towards the outside temperature.
func (v *vehicle) parked(dt time.Duration) {
	s := dt.Seconds()
	v.packKW = 0.2
	v.soc = math.Max(0, v.soc-0.2*s/3600/packKWh*100)
	v.inside += (v.outside - v.inside) * math.Min(1, s/1800)
	if v.in > 5*time.Second {
		v.driverDoor = false
	}
}

// chargeStep charges for dt and reports whether the session is over.
func (v *vehicle) chargeStep(dt time.Duration, t *tick) bool {
	s := dt.Seconds()
	v.chargeIn += dt
	switch v.charge {
	case chargeStarting:
		v.chargeKW = 0
		if v.chargeIn >= startingTime {
			v.charge, v.chargeIn = chargeCharging, 0
			t.notes = append(t.notes, "charging")
		}
	case chargeCharging:
		v.chargeKW = v.chargePower()
		v.energyIn += v.chargeKW * s / 3600
		v.soc = math.Min(100, v.soc+v.chargeKW*chargeEff*s/3600/packKWh*100)
		if v.soc >= float64(v.limit) {
			v.charge, v.chargeIn, v.chargeKW = chargeComplete, 0, 0
			t.notes = append(t.notes, fmt.Sprintf("charge complete at %.0f%%: %.1f kWh added", v.soc, v.energyIn))
		}
	case chargeComplete, chargeStopped:
		v.chargeKW = 0
		if v.chargeIn >= completeTime {
			v.charge, v.chargeIn = chargeDisconnect, 0
			t.notes = append(t.notes, "unplugged")
			return true
		}
	}
	v.packKW = -v.chargeKW * chargeEff
	return false
}

// chargePower is the charger's power now: constant on AC until the last
// few percent, tapering with state of charge on DC.
func (v *vehicle) chargePower() float64 {
	if !v.dc {
		p := acVolts * v.amps / 1000
		if v.soc > float64(v.limit)-2 {
			p *= 0.6
		}
		return p
	}
	if v.soc < 50 {
		return dcPeakKW
	}
	return math.Max(30, dcPeakKW*(1-(v.soc-50)/60))
}

// alertStep raises and clears alerts and reports errors now and then.
func (v *vehicle) alertStep(dt, mean time.Duration, t *tick, now time.Time) {
	var ended []telemetry.Alert
	kept := v.active[:0]
	for _, a := range v.active {
		a.clearIn -= dt
		if a.clearIn <= 0 {
			a.alert.EndedAt = now
			ended = append(ended, a.alert)
			continue
		}
		kept = append(kept, a)
	}
	v.active = kept
	if len(ended) > 0 {
		t.alerts = append(t.alerts, ended)
		t.notes = append(t.notes, "alert cleared: "+ended[0].Name)
	}
	if v.nextAlert -= dt; v.nextAlert <= 0 {
		v.nextAlert = v.randomDuration(mean)
		tmpl := alertCatalog[v.rng.IntN(len(alertCatalog))]
		a := telemetry.Alert{Name: tmpl.name, Audiences: tmpl.audiences, StartedAt: now}
		v.active = append(v.active, activeAlert{alert: a, clearIn: v.randomDuration(time.Minute)})
		t.alerts = append(t.alerts, []telemetry.Alert{a})
		t.notes = append(t.notes, "alert raised: "+a.Name)
	}
	if v.nextError -= dt; v.nextError <= 0 {
		v.nextError = v.randomDuration(3 * mean)
		e := errorCatalog[v.rng.IntN(len(errorCatalog))]
		e.CreatedAt = now
		t.errors = append(t.errors, []telemetry.VehicleError{e})
		t.notes = append(t.notes, "error reported: "+e.Name)
	}
}

// routeUpdated notes when the navigation route was computed.
func (v *vehicle) routeUpdated(now time.Time) {
	h, m, s := now.Clock()
	v.rep.add(fRouteLastUpdated, telemetry.TimeValue(int32(h), int32(m), int32(s)))
	v.rep.add(fDestinationLocation, telemetry.LocationValue(v.route[v.dest].lat, v.route[v.dest].lon))
}

// report returns the signals to send now: what changed, and what has not
// been sent for a while, like a car configured with a one-second interval.
func (v *vehicle) report(now time.Time) []telemetry.Datum {
	ph := v.current()
	r := &v.rep
	r.add(fGear, v.gear)
	r.add(fLocation, telemetry.LocationValue(round6(v.lat), round6(v.lon)))
	r.add(fGpsState, telemetry.BoolValue(true))
	r.add(fOdometer, telemetry.FloatValue(round(v.odometer, 3)))
	r.add(fVehicleSpeed, telemetry.FloatValue(round(v.speed, 1)))
	v.reportBattery()
	r.add(fInsideTemp, telemetry.FloatValue(round(v.inside, 1)))
	r.add(fOutsideTemp, telemetry.FloatValue(round(v.outside, 1)))
	r.add(fLocked, telemetry.BoolValue(!v.driverDoor))
	var doors telemetry.Doors
	if v.driverDoor {
		doors = telemetry.DriverFront
	}
	r.add(fDoorState, telemetry.DoorsValue(doors))
	r.add(fVehicleName, telemetry.StringValue("Simulated Model 3"))
	r.add(fCarType, carModel3)
	r.add(fVersion, firmwareVersion)

	v.reportPlug()
	activity := ph.kind
	if v.fresh {
		activity = phaseParked // between phases the car stands still
	}
	switch activity {
	case phaseDrive:
		r.add(fGpsHeading, telemetry.FloatValue(round(v.heading, 1)))
		r.add(fCenterDisplay, displayDriving)
		r.add(fHvacPower, hvacOn)
		r.add(fHvacFanSpeed, telemetry.IntValue(3))
		r.add(fHvacLeftTempRequest, telemetry.FloatValue(21))
		r.add(fMilesToArrival, telemetry.FloatValue(round(v.legLeft, 2)))
		r.add(fMinutesToArrival, telemetry.FloatValue(round(v.legLeft/28*60, 1)))
		r.add(fRouteTrafficDelay, telemetry.FloatValue(0))
		r.add(fExpectedEnergyArrival, telemetry.IntValue(int64(math.Max(0, v.soc-v.legLeft*driveKWhPerMi/packKWh*100))))
		r.add(fLightsTurnSignal, v.turnSignal())
		r.add(fMediaPlaybackStatus, mediaPlaying)
		r.add(fMediaNowPlayingTitle, telemetry.StringValue(stationNames[(v.laps+int(v.odometer/2))%len(stationNames)]))
		r.add(fSentryMode, sentryOff)
	case phaseCharge:
		v.reportCharger(now)
	default:
		r.add(fCenterDisplay, displayLock)
		r.add(fHvacPower, hvacOff)
		r.add(fClimateKeeperMode, keeperOff)
		r.add(fLightsTurnSignal, signalOff)
		r.add(fMediaPlaybackStatus, mediaStopped)
		if v.home {
			r.add(fSentryMode, sentryOff)
		} else {
			r.add(fSentryMode, sentryArmed)
		}
		r.add(fLocatedAtHome, telemetry.BoolValue(v.home))
		v.reportTires(ph)
	}
	v.reportRemote()
	return r.flush()
}

func (v *vehicle) reportBattery() {
	r := &v.rep
	soc := v.soc
	volts := 330 + soc*0.7 - v.packKW*0.2
	r.add(fSoc, telemetry.FloatValue(round(soc, 2)))
	r.add(fBatteryLevel, telemetry.FloatValue(round(math.Max(0, soc-0.5), 1)))
	r.add(fEstBatteryRange, telemetry.FloatValue(round(soc*2.7, 2)))
	r.add(fRatedRange, telemetry.FloatValue(round(soc*3.1, 2)))
	r.add(fIdealBatteryRange, telemetry.FloatValue(round(soc*3.2, 2)))
	r.add(fEnergyRemaining, telemetry.FloatValue(round(soc/100*packKWh, 2)))
	r.add(fPackVoltage, telemetry.FloatValue(round(volts, 2)))
	r.add(fPackCurrent, telemetry.FloatValue(round(v.packKW*1000/volts, 1)))
	r.add(fChargeLimitSoc, telemetry.IntValue(int64(v.limit)))
}

// reportPlug reports the charge port and charge state, which matter in
// every phase: unplugging ends a charging phase.
func (v *vehicle) reportPlug() {
	r := &v.rep
	plugged := !v.charge.Equal(chargeDisconnect)
	r.add(fDetailedChargeState, v.charge)
	r.add(fChargePortDoorOpen, telemetry.BoolValue(plugged))
	if plugged {
		r.add(fChargePortLatch, latchEngaged)
	} else {
		r.add(fChargePortLatch, latchDisengaged)
	}
	r.add(fFastChargerPresent, telemetry.BoolValue(v.dc && plugged))
	var legacyState string
	switch v.charge {
	case chargeStarting:
		legacyState = "Startup"
	case chargeCharging:
		legacyState = "Enable"
	default:
		legacyState = "Idle"
	}
	r.add(fChargeState, telemetry.StringValue(legacyState))
}

// reportCharger reports the charger's side of a charging session.
func (v *vehicle) reportCharger(now time.Time) {
	r := &v.rep
	r.add(fCenterDisplay, displayCharging)
	kw := v.chargeKW
	var volts, amps float64
	if kw > 0 && v.dc {
		volts = round(330+v.soc*0.8, 1)
		amps = round(kw*1000/volts, 1)
	} else if kw > 0 {
		volts = round(acVolts+v.rng.NormFloat64(), 1)
		amps = round(kw*1000/acVolts, 1)
	}
	r.add(fChargerVoltage, telemetry.FloatValue(volts))
	r.add(fChargeAmps, telemetry.FloatValue(amps))
	if v.dc {
		r.add(fDCChargingPower, telemetry.FloatValue(round(kw, 2)))
		r.add(fDCChargingEnergyIn, telemetry.FloatValue(round(v.energyIn, 3)))
		r.add(fFastChargerType, superCharger)
	} else {
		r.add(fACChargingPower, telemetry.FloatValue(round(kw, 2)))
		r.add(fACChargingEnergyIn, telemetry.FloatValue(round(v.energyIn, 3)))
		// The energy into the pack, which the car counts on AC too.
		r.add(fDCChargingEnergyIn, telemetry.FloatValue(round(v.energyIn*chargeEff, 3)))
		r.add(fChargingCableType, cableSAE)
		r.add(fChargerPhases, telemetry.IntValue(1))
		r.add(fChargeCurrentRequest, telemetry.IntValue(int64(v.amps)))
		r.add(fChargeCurrentMax, telemetry.IntValue(48))
		next := now.Truncate(time.Hour).Add(8 * time.Hour)
		r.add(fScheduledChargeStart, telemetry.IntValue(next.Unix()))
	}
	var hours, rate float64
	if kw > 0 {
		hours = round(math.Max(0, float64(v.limit)-v.soc)/100*packKWh/(kw*chargeEff), 2)
		rate = round(kw*chargeEff/driveKWhPerMi, 1)
	}
	r.add(fTimeToFullCharge, telemetry.FloatValue(hours))
	r.add(fHoursToChargeEnd, telemetry.FloatValue(hours))
	r.add(fChargeRateMph, telemetry.FloatValue(rate))
}

func (v *vehicle) reportTires(ph phase) {
	r := &v.rep
	// With alerts on, the front left tyre loses a little air.
	if ph.alerts > 0 && v.tpms[0] > 2.5 {
		v.tpms[0] = round(v.tpms[0]-0.01, 2)
	}
	r.add(fTpmsPressureFl, telemetry.FloatValue(v.tpms[0]))
	r.add(fTpmsPressureFr, telemetry.FloatValue(v.tpms[1]))
	r.add(fTpmsPressureRl, telemetry.FloatValue(v.tpms[2]))
	r.add(fTpmsPressureRr, telemetry.FloatValue(v.tpms[3]))
	var warn telemetry.Tires
	if v.tpms[0] < 2.6 {
		warn |= telemetry.FrontLeft
	}
	r.add(fTpmsSoftWarnings, telemetry.TiresValue(warn))
}

// turnSignal blinks towards the next turn when the car is close to a
// waypoint.
func (v *vehicle) turnSignal() telemetry.Value {
	wp := v.route[v.next]
	if distanceMiles(v.lat, v.lon, wp.lat, wp.lon) > 0.03 {
		return signalOff
	}
	after := v.route[(v.next+1)%len(v.route)]
	turn := math.Mod(bearing(wp.lat, wp.lon, after.lat, after.lon)-v.heading+540, 360) - 180
	switch {
	case turn > 20:
		return signalRight
	case turn < -20:
		return signalLeft
	}
	return signalOff
}

// sent is the last value reported for a field.
type sent struct {
	v    telemetry.Value
	tick int
}

// reporter collects the signals of one record, leaving out those that
// have not changed since they were last sent (unless that was long ago).
type reporter struct {
	last     map[telemetry.Field]sent
	tick     int
	forceAll bool
	out      []telemetry.Datum
}

func (r *reporter) add(f telemetry.Field, v telemetry.Value) {
	if prev, ok := r.last[f]; ok && !r.forceAll && prev.v.Equal(v) && r.tick-prev.tick < refreshTicks {
		return
	}
	for i := range r.out {
		if r.out[i].Field == f {
			r.out[i].Value = v
			r.last[f] = sent{v, r.tick}
			return
		}
	}
	r.last[f] = sent{v, r.tick}
	r.out = append(r.out, telemetry.Datum{Field: f, Value: v})
}

// flush returns the record collected since the last flush, in a slice of
// its own.
func (r *reporter) flush() []telemetry.Datum {
	out := r.out
	r.out = nil
	r.tick++
	r.forceAll = false
	return out
}
