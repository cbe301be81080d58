// Package teslamate publishes what fleet2mqtt knows about a car in the
// layout of TeslaMate's MQTT integration (teslamate/cars/<id>/<name>), so
// that tools built on it (evcc's TeslaMate vehicle, TeslaMate's Home
// Assistant package, dashboards, Node-RED flows) work unchanged.
//
// Names, units and formats are TeslaMate's: distances in km with two
// decimals, speed in km/h as a whole number, temperatures in °C, power in
// kW (positive while driving, negative while charging), energy in kWh,
// booleans true and false, timestamps ISO 8601 in UTC, location and
// active_route as JSON. Like TeslaMate, a topic is published when its
// payload changes, retained, and some topics publish an empty payload when
// the value is gone (see Topics); a topic without a value is otherwise left
// alone. docs/teslamate.md lists every topic with the signals behind it and
// those that cannot be derived from the stream.
package teslamate

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// View is what the layout is made from: the tracker's status and place and
// the latest values of the kept signals.
type View struct {
	Status activity.Status
	Since  time.Time
	Place  string
	Values *activity.Values
}

// ViewOf returns the view of a tracker, which must keep every value
// (activity.Tracker.KeepEveryValue).
func ViewOf(t *activity.Tracker) View {
	s, since := t.Status()
	return View{Status: s, Since: since, Place: t.Place(), Values: t.Values()}
}

func (v *View) get(f telemetry.Field) telemetry.Value {
	if v.Values == nil {
		return telemetry.Value{}
	}
	return v.Values.Get(f)
}

// Message is one MQTT message of the layout.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// topic is one TeslaMate topic: how its payload is made from a view.
type topic struct {
	name string
	// emptyWhenNil publishes an empty payload when there is no value
	// (TeslaMate's list of topics it publishes even when nil).
	emptyWhenNil bool
	// notRetained: TeslaMate does not retain healthy.
	notRetained bool
	// appendTo appends the payload; false when there is no value.
	appendTo func(dst []byte, v *View) ([]byte, bool)
}

// Topics returns the names of the topics the layout publishes, in order.
func Topics() []string {
	names := make([]string, len(topics))
	for i := range topics {
		names[i] = topics[i].name
	}
	return names
}

// Payload returns the payload of the named topic for v, and false when the
// topic has no value (or is not one of Topics). It is the layout as a pure
// function; Car publishes only what changed.
func Payload(name string, v View) (string, bool) {
	for i := range topics {
		if topics[i].name == name {
			b, ok := topics[i].appendTo(nil, &v)
			return string(b), ok
		}
	}
	return "", false
}

// Car is the layout of one car: it remembers what it published, so that
// Changed returns only the topics whose payload changed. Not safe for
// concurrent use.
type Car struct {
	prefix string
	topics []string // full topic names, made once
	last   [][]byte
	sent   []bool
	buf    []byte
	msgs   []Message
	// view holds Changed's argument, so that the topics' functions take a
	// pointer into the Car rather than making the view escape per call.
	view View
}

// NewCar returns the layout of the car TeslaMate would number id, under
// "teslamate/cars/<id>/" or, with a namespace, "teslamate/<namespace>/cars/<id>/".
func NewCar(id int, namespace string) *Car {
	prefix := "teslamate/"
	if namespace != "" {
		prefix += namespace + "/"
	}
	prefix += "cars/" + strconv.Itoa(id) + "/"
	c := &Car{prefix: prefix, topics: make([]string, len(topics)), last: make([][]byte, len(topics)), sent: make([]bool, len(topics))}
	for i := range topics {
		c.topics[i] = prefix + topics[i].name
	}
	return c
}

// Prefix returns the car's topic prefix, such as "teslamate/cars/1/".
func (c *Car) Prefix() string { return c.prefix }

// Changed returns the messages of the topics whose payload differs from
// what the car published before (all of them the first time). The
// messages and their payloads are valid until the next call.
func (c *Car) Changed(v View) []Message {
	c.msgs = c.msgs[:0]
	c.view = v
	defer func() { c.view = View{} }()
	for i := range topics {
		tp := &topics[i]
		c.buf = c.buf[:0]
		b, ok := tp.appendTo(c.buf, &c.view)
		c.buf = b
		if !ok {
			if !tp.emptyWhenNil {
				continue
			}
			b = b[:0]
		}
		if c.sent[i] && string(c.last[i]) == string(b) && !tp.notRetained {
			continue
		}
		if c.sent[i] && tp.notRetained {
			continue // healthy: once per start is enough to announce it
		}
		c.last[i] = append(c.last[i][:0], b...)
		c.sent[i] = true
		c.msgs = append(c.msgs, Message{Topic: c.topics[i], Payload: c.last[i], Retain: !tp.notRetained})
	}
	return c.msgs
}

// Forget makes the next Changed publish every topic again (after the
// broker lost its retained messages, or on a Home Assistant birth).
func (c *Car) Forget() {
	for i := range c.sent {
		c.sent[i] = false
	}
}

const kmPerMile = 1.609344

// appendNum appends x rounded to digits decimals, without trailing zeros.
func appendNum(dst []byte, x float64, digits int) []byte {
	p := math.Pow10(digits)
	x = math.Round(x*p) / p
	if x == 0 {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, x, 'f', -1, 64)
}

func number(v telemetry.Value) (float64, bool) {
	switch v.Kind() {
	case telemetry.KindFloatValue, telemetry.KindIntValue:
		f := v.Float()
		return f, !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}

// num publishes field f scaled and rounded.
func num(f telemetry.Field, scale float64, digits int) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		x, ok := number(v.get(f))
		if !ok {
			return dst, false
		}
		return appendNum(dst, x*scale, digits), true
	}
}

func boolean(f telemetry.Field) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(f)
		if val.Kind() != telemetry.KindBoolValue {
			return dst, false
		}
		return strconv.AppendBool(dst, val.Bool()), true
	}
}

func text(f telemetry.Field) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		s := v.get(f).Str()
		if s == "" {
			return dst, false
		}
		return append(dst, s...), true
	}
}

// firstWord publishes a version string up to its first space
// ("2025.44.25.5 abcdef" → "2025.44.25.5"), as TeslaMate does.
func firstWord(f telemetry.Field) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		s, _, _ := strings.Cut(v.get(f).Str(), " ")
		if s == "" {
			return dst, false
		}
		return append(dst, s...), true
	}
}

// enumIn publishes false when an enum field's short name is one of off and
// true for any other known value; a boolean value (older firmware)
// publishes as it is.
func enumIn(f telemetry.Field, off ...string) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(f)
		switch val.Kind() {
		case telemetry.KindBoolValue:
			return strconv.AppendBool(dst, val.Bool()), true
		case telemetry.KindEnumValue:
			s := val.EnumShort()
			if s == "Unknown" || s == "SNA" {
				return dst, false
			}
			for _, o := range off {
				if s == o {
					return append(dst, "false"...), true
				}
			}
			return append(dst, "true"...), true
		}
		return dst, false
	}
}

func doorBit(bit telemetry.Doors) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldDoorState)
		if val.Kind() != telemetry.KindDoorsValue {
			return dst, false
		}
		return strconv.AppendBool(dst, val.Doors()&bit != 0), true
	}
}

func tireBit(bit telemetry.Tires) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldTpmsSoftWarnings)
		if val.Kind() != telemetry.KindTiresValue {
			return dst, false
		}
		return strconv.AppendBool(dst, val.Tires()&bit != 0), true
	}
}

var windowFields = [...]telemetry.Field{telemetry.FieldFdWindow, telemetry.FieldFpWindow, telemetry.FieldRdWindow, telemetry.FieldRpWindow}

// windowOpen reports whether the window's state is known and open.
func windowOpen(v *View, f telemetry.Field) (open, ok bool) {
	val := v.get(f)
	if val.Kind() != telemetry.KindEnumValue {
		return false, false
	}
	switch val.EnumShort() {
	case "Closed":
		return false, true
	case "PartiallyOpen", "Opened":
		return true, true
	}
	return false, false
}

func window(f telemetry.Field) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		open, ok := windowOpen(v, f)
		if !ok {
			return dst, false
		}
		return strconv.AppendBool(dst, open), true
	}
}

func chargeState(v *View) string {
	val := v.get(telemetry.FieldDetailedChargeState)
	if val.Kind() != telemetry.KindEnumValue {
		return ""
	}
	switch s := val.EnumShort(); s {
	case "Unknown":
		return ""
	default:
		return s
	}
}

func charging(v *View) bool {
	s := chargeState(v)
	return s == "Charging" || s == "Starting"
}

// stateNames maps a status to TeslaMate's state: TeslaMate says online
// where fleet2mqtt says parked.
var stateNames = [...]string{
	activity.StatusDriving:  "driving",
	activity.StatusCharging: "charging",
	activity.StatusParked:   "online",
	activity.StatusAsleep:   "asleep",
	activity.StatusOffline:  "offline",
	activity.StatusUpdating: "updating",
}

func appendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, time.RFC3339Nano)
}

var models = map[string]string{"ModelS": "S", "Model3": "3", "ModelX": "X", "ModelY": "Y"}

// topics is the layout, in TeslaMate's documented order. It is only read.
var topics = []topic{
	{name: "display_name", appendTo: text(telemetry.FieldVehicleName)},
	{name: "state", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		if int(v.Status) >= len(stateNames) || stateNames[v.Status] == "" {
			return dst, false
		}
		return append(dst, stateNames[v.Status]...), true
	}},
	{name: "since", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		if v.Since.IsZero() || v.Status == activity.StatusUnknown {
			return dst, false
		}
		return appendTime(dst, v.Since), true
	}},
	{name: "healthy", notRetained: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		return append(dst, "true"...), v.Status != activity.StatusUnknown
	}},
	{name: "version", appendTo: firstWord(telemetry.FieldVersion)},
	{name: "update_available", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldSoftwareUpdateVersion)
		if val.Kind() == telemetry.KindInvalid {
			return strconv.AppendBool(dst, false), true
		}
		if val.Kind() != telemetry.KindStringValue {
			return dst, false
		}
		up, _, _ := strings.Cut(val.Str(), " ")
		cur, _, _ := strings.Cut(v.get(telemetry.FieldVersion).Str(), " ")
		return strconv.AppendBool(dst, up != "" && up != cur), true
	}},
	{name: "update_version", appendTo: firstWord(telemetry.FieldSoftwareUpdateVersion)},
	{name: "download_perc", appendTo: num(telemetry.FieldSoftwareUpdateDownloadPercentComplete, 1, 0)},
	{name: "install_perc", appendTo: num(telemetry.FieldSoftwareUpdateInstallationPercentComplete, 1, 0)},
	{name: "software_update", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		cur, _, _ := strings.Cut(v.get(telemetry.FieldVersion).Str(), " ")
		if cur == "" {
			return dst, false
		}
		latest, _, _ := strings.Cut(v.get(telemetry.FieldSoftwareUpdateVersion).Str(), " ")
		if latest == "" {
			latest = cur
		}
		dst = append(dst, `{"installed_version":`...)
		dst = telemetry.AppendJSONString(dst, cur)
		dst = append(dst, `,"latest_version":`...)
		dst = telemetry.AppendJSONString(dst, latest)
		return append(dst, '}'), true
	}},

	{name: "model", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		s := v.get(telemetry.FieldCarType).EnumShort()
		if m, ok := models[s]; ok {
			return append(dst, m...), true
		}
		if s == "" || s == "Unknown" {
			return dst, false
		}
		return append(dst, s...), true
	}},
	{name: "trim_badging", emptyWhenNil: true, appendTo: text(telemetry.FieldTrim)},
	{name: "exterior_color", appendTo: text(telemetry.FieldExteriorColor)},
	{name: "wheel_type", appendTo: text(telemetry.FieldWheelType)},

	{name: "geofence", emptyWhenNil: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		return append(dst, v.Place...), v.Place != ""
	}},

	{name: "latitude", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldLocation)
		lat, _ := val.Location()
		return strconv.AppendFloat(dst, lat, 'f', -1, 64), val.Kind() == telemetry.KindLocationValue
	}},
	{name: "longitude", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldLocation)
		_, lon := val.Location()
		return strconv.AppendFloat(dst, lon, 'f', -1, 64), val.Kind() == telemetry.KindLocationValue
	}},
	{name: "location", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldLocation)
		if val.Kind() != telemetry.KindLocationValue {
			return dst, false
		}
		return val.AppendJSON(dst), true
	}},
	{name: "shift_state", emptyWhenNil: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		switch s := v.get(telemetry.FieldGear).EnumShort(); s {
		case "P", "R", "N", "D":
			return append(dst, s...), true
		}
		return dst, false
	}},
	{name: "power", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		volts, ok1 := number(v.get(telemetry.FieldPackVoltage))
		amps, ok2 := number(v.get(telemetry.FieldPackCurrent))
		if !ok1 || !ok2 {
			return dst, false
		}
		return appendNum(dst, volts*amps/1000, 0), true
	}},
	{name: "speed", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		mph, ok := number(v.get(telemetry.FieldVehicleSpeed))
		if !ok {
			return dst, false
		}
		return appendNum(dst, mph*kmPerMile, 0), true
	}},
	{name: "heading", appendTo: num(telemetry.FieldGpsHeading, 1, 0)},

	{name: "locked", appendTo: boolean(telemetry.FieldLocked)},
	{name: "sentry_mode", appendTo: enumIn(telemetry.FieldSentryMode, "Off")},
	{name: "windows_open", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		anyOpen := false
		for _, f := range windowFields {
			open, ok := windowOpen(v, f)
			if !ok {
				return dst, false
			}
			anyOpen = anyOpen || open
		}
		return strconv.AppendBool(dst, anyOpen), true
	}},
	{name: "driver_front_window_open", appendTo: window(telemetry.FieldFdWindow)},
	{name: "driver_rear_window_open", appendTo: window(telemetry.FieldRdWindow)},
	{name: "passenger_front_window_open", appendTo: window(telemetry.FieldFpWindow)},
	{name: "passenger_rear_window_open", appendTo: window(telemetry.FieldRpWindow)},
	{name: "doors_open", appendTo: doorBit(telemetry.DriverFront | telemetry.DriverRear | telemetry.PassengerFront | telemetry.PassengerRear)},
	{name: "driver_front_door_open", appendTo: doorBit(telemetry.DriverFront)},
	{name: "driver_rear_door_open", appendTo: doorBit(telemetry.DriverRear)},
	{name: "passenger_front_door_open", appendTo: doorBit(telemetry.PassengerFront)},
	{name: "passenger_rear_door_open", appendTo: doorBit(telemetry.PassengerRear)},
	{name: "trunk_open", appendTo: doorBit(telemetry.TrunkRear)},
	{name: "frunk_open", appendTo: doorBit(telemetry.TrunkFront)},
	{name: "is_user_present", appendTo: boolean(telemetry.FieldDriverSeatOccupied)},

	{name: "is_climate_on", appendTo: enumIn(telemetry.FieldHvacPower, "Off")},
	{name: "inside_temp", appendTo: num(telemetry.FieldInsideTemp, 1, 1)},
	{name: "outside_temp", appendTo: num(telemetry.FieldOutsideTemp, 1, 1)},
	{name: "is_preconditioning", appendTo: boolean(telemetry.FieldPreconditioningEnabled)},
	{name: "climate_keeper_mode", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		switch v.get(telemetry.FieldClimateKeeperMode).EnumShort() {
		case "Off":
			return append(dst, "off"...), true
		case "On":
			return append(dst, "on"...), true
		case "Dog":
			return append(dst, "dog"...), true
		case "Party":
			return append(dst, "camp"...), true
		}
		return dst, false
	}},

	{name: "odometer", appendTo: num(telemetry.FieldOdometer, kmPerMile, 2)},
	{name: "est_battery_range_km", appendTo: num(telemetry.FieldEstBatteryRange, kmPerMile, 2)},
	{name: "rated_battery_range_km", appendTo: num(telemetry.FieldRatedRange, kmPerMile, 2)},
	{name: "ideal_battery_range_km", appendTo: num(telemetry.FieldIdealBatteryRange, kmPerMile, 2)},

	{name: "battery_level", appendTo: num(telemetry.FieldBatteryLevel, 1, 0)},
	{name: "usable_battery_level", appendTo: num(telemetry.FieldSoc, 1, 0)},
	{name: "plugged_in", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		s := chargeState(v)
		return strconv.AppendBool(dst, s != "Disconnected"), s != ""
	}},
	{name: "charging_state", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		s := chargeState(v)
		return append(dst, s...), s != ""
	}},
	{name: "charge_energy_added", emptyWhenNil: true, appendTo: num(telemetry.FieldDCChargingEnergyIn, 1, 2)},
	{name: "charge_limit_soc", appendTo: num(telemetry.FieldChargeLimitSoc, 1, 0)},
	{name: "charge_port_door_open", appendTo: boolean(telemetry.FieldChargePortDoorOpen)},
	// The car streams the line current it senses even when idle; TeslaMate
	// (and evcc, which reads "> 0" as charging) see 0 unless it charges.
	{name: "charger_actual_current", emptyWhenNil: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		if chargeState(v) == "" {
			return dst, false
		}
		a, ok := number(v.get(telemetry.FieldChargeAmps))
		if !charging(v) || !ok {
			a = 0
		}
		return appendNum(dst, a, 2), true
	}},
	{name: "charger_phases", emptyWhenNil: true, appendTo: num(telemetry.FieldChargerPhases, 1, 0)},
	{name: "charger_power", emptyWhenNil: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		if chargeState(v) == "" {
			return dst, false
		}
		if !charging(v) {
			return append(dst, '0'), true
		}
		ac, okAC := number(v.get(telemetry.FieldACChargingPower))
		dc, okDC := number(v.get(telemetry.FieldDCChargingPower))
		if !okAC && !okDC {
			return dst, false
		}
		return appendNum(dst, max(ac, dc), 1), true
	}},
	{name: "charger_voltage", emptyWhenNil: true, appendTo: num(telemetry.FieldChargerVoltage, 1, 0)},
	{name: "charge_current_request", appendTo: num(telemetry.FieldChargeCurrentRequest, 1, 0)},
	{name: "charge_current_request_max", appendTo: num(telemetry.FieldChargeCurrentRequestMax, 1, 0)},
	{name: "scheduled_charging_start_time", emptyWhenNil: true, appendTo: func(dst []byte, v *View) ([]byte, bool) {
		s, ok := number(v.get(telemetry.FieldScheduledChargingStartTime))
		if !ok || s <= 0 {
			return dst, false
		}
		return appendTime(dst, time.Unix(int64(s), 0)), true
	}},
	{name: "time_to_full_charge", emptyWhenNil: true, appendTo: num(telemetry.FieldTimeToFullCharge, 1, 2)},
	{name: "tpms_pressure_fl", appendTo: num(telemetry.FieldTpmsPressureFl, 1, 2)},
	{name: "tpms_pressure_fr", appendTo: num(telemetry.FieldTpmsPressureFr, 1, 2)},
	{name: "tpms_pressure_rl", appendTo: num(telemetry.FieldTpmsPressureRl, 1, 2)},
	{name: "tpms_pressure_rr", appendTo: num(telemetry.FieldTpmsPressureRr, 1, 2)},
	{name: "tpms_soft_warning_fl", appendTo: tireBit(telemetry.FrontLeft)},
	{name: "tpms_soft_warning_fr", appendTo: tireBit(telemetry.FrontRight)},
	{name: "tpms_soft_warning_rl", appendTo: tireBit(telemetry.RearLeft)},
	{name: "tpms_soft_warning_rr", appendTo: tireBit(telemetry.RearRight)},

	{name: "active_route_destination", appendTo: func(dst []byte, v *View) ([]byte, bool) {
		if d := v.get(telemetry.FieldDestinationName).Str(); d != "" {
			return append(dst, d...), true
		}
		return append(dst, "nil"...), true
	}},
	{name: "active_route_latitude", appendTo: routeCoordinate(true)},
	{name: "active_route_longitude", appendTo: routeCoordinate(false)},
	{name: "active_route", appendTo: activeRoute},
	{name: "service_mode", appendTo: boolean(telemetry.FieldServiceMode)},
}

func routeCoordinate(lat bool) func([]byte, *View) ([]byte, bool) {
	return func(dst []byte, v *View) ([]byte, bool) {
		val := v.get(telemetry.FieldDestinationLocation)
		if v.get(telemetry.FieldDestinationName).Str() == "" || val.Kind() != telemetry.KindLocationValue {
			return append(dst, "nil"...), true
		}
		a, b := val.Location()
		if !lat {
			a = b
		}
		return strconv.AppendFloat(dst, a, 'f', -1, 64), true
	}
}

// activeRoute is TeslaMate's active_route JSON: the destination and what
// the car predicts for it, or an error when there is no route.
func activeRoute(dst []byte, v *View) ([]byte, bool) {
	dest := v.get(telemetry.FieldDestinationName).Str()
	if dest == "" {
		return append(dst, `{"error":"No active route available"}`...), true
	}
	field := func(dst []byte, name string, f telemetry.Field) []byte {
		dst = append(dst, ',', '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
		if x, ok := number(v.get(f)); ok {
			return strconv.AppendFloat(dst, x, 'f', -1, 64)
		}
		return append(dst, "null"...)
	}
	dst = append(dst, `{"destination":`...)
	dst = telemetry.AppendJSONString(dst, dest)
	dst = field(dst, "energy_at_arrival", telemetry.FieldExpectedEnergyPercentAtTripArrival)
	dst = field(dst, "miles_to_arrival", telemetry.FieldMilesToArrival)
	dst = field(dst, "minutes_to_arrival", telemetry.FieldMinutesToArrival)
	dst = field(dst, "traffic_minutes_delay", telemetry.FieldRouteTrafficMinutesDelay)
	dst = append(dst, `,"location":`...)
	if l := v.get(telemetry.FieldDestinationLocation); l.Kind() == telemetry.KindLocationValue {
		dst = l.AppendJSON(dst)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, `,"error":null}`...), true
}
