package discovery

import (
	"strconv"
	"strings"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// entity is one Home Assistant entity made from a catalog field. Most
// fields make one; DoorState makes one per door and the tire warning
// fields one per tire. Everything that does not depend on the car is
// rendered once, into static.
type entity struct {
	field telemetry.Field
	// key names the entity among the car's components and ends its
	// unique_id: the field name, with the door or tire for fanned-out
	// entities ("DoorState_DriverFront").
	key string
	// objectID ends the suggested entity id: the field name in snake case
	// ("battery_level" in sensor.<car>_battery_level), or a name of its
	// own for fanned-out entities ("door_driver_front", "frunk").
	objectID string
	platform string
	// topicKey is the key the field's topic goes under: state_topic, or
	// json_attributes_topic for device trackers.
	topicKey string
	// static holds the component's other members as JSON, each preceded
	// by a comma: `,"name":"Battery level","device_class":"battery",…`.
	static []byte
	// obscure entities are announced disabled (see isObscure).
	obscure bool
	// semi entities exist on the Semi only (its extra tire positions).
	semi bool
}

// component is the Home Assistant representation of a field after the
// corrections below: what the catalog suggests, fixed where Home Assistant
// would reject it.
type component struct {
	platform    string
	deviceClass string
	stateClass  string
	unit        string
}

// corrections are fields whose catalog hints Home Assistant does not
// accept, with what is announced instead and why. TestCatalogCombinations
// fails for an invalid catalog entry missing here, and for an entry here
// that the catalog no longer needs.
var corrections = map[string]struct {
	component
	why string
}{
	// The catalog marks the legacy string ChargeState as an enum, but the
	// car sends free strings (Idle, Enable, QualifyLineConfig, …) whose
	// full set is not known; Home Assistant requires the options of an
	// enum sensor. It is announced as a plain text sensor.
	"ChargeState": {component{platform: "sensor"}, "enum sensor without a known list of options"},
}

// componentOf returns the corrected Home Assistant representation of a
// catalog field.
func componentOf(info telemetry.FieldInfo) component {
	if c, ok := corrections[info.Name]; ok {
		return c.component
	}
	return component{
		platform:    info.Component,
		deviceClass: info.DeviceClass,
		stateClass:  info.StateClass,
		unit:        displayUnit(info.Unit),
	}
}

// displayUnit is the unit as Home Assistant spells it. The catalog's
// units are the car's; only their spelling changes, never the unit.
func displayUnit(u string) string {
	if u == "deg" {
		return "°"
	}
	return u
}

// Display precision: the number of decimals Home Assistant shows by
// default, for numeric sensors with a unit. Integers show none; floats by
// unit, with a few fields that need more (cell voltages).
var (
	unitPrecision = map[string]int{
		"%": 0, "mi": 1, "km": 1, "mph": 0, "km/h": 0, "V": 0, "A": 1, "°C": 1,
		"kWh": 2, "kW": 1, "bar": 2, "psi": 1, "h": 1, "min": 0, "s": 0, "ms": 0,
		"°": 0, "m/s²": 2, "rad/s": 0, "Nm": 0, "Ω": 0,
	}
	fieldPrecision = map[string]int{"BrickVoltageMax": 3, "BrickVoltageMin": 3}
)

// precision returns the suggested display precision of a field, and false
// when none is suggested (not numeric, or no unit).
func precision(info telemetry.FieldInfo, c component) (int, bool) {
	if c.platform != "sensor" || !info.Kind.Numeric() || c.unit == "" || c.deviceClass == "timestamp" {
		return 0, false
	}
	if p, ok := fieldPrecision[info.Name]; ok {
		return p, true
	}
	if info.Kind != telemetry.KindDouble {
		return 0, true
	}
	p, ok := unitPrecision[c.unit]
	return p, ok
}

// obscureCategories are the catalog categories whose diagnostic signals
// are announced disabled: drive-unit and driving internals, vehicle
// diagnostics, static configuration (other), Semi and sensor-timing tire
// data, and media limits.
var obscureCategories = map[string]bool{
	"drive": true, "diagnostic": true, "other": true, "tires": true, "media": true,
}

// isObscure reports whether a field is announced disabled by default: it
// is marked diagnostic in the catalog and belongs to one of
// obscureCategories. Diagnostic signals of other categories (battery,
// charging, climate, location, security, software) are enabled and shown
// in the diagnostic section.
func isObscure(info telemetry.FieldInfo) bool {
	return info.Diagnostic && obscureCategories[info.Category]
}

// icons for entities whose device class gives none.
var icons = map[string]string{
	"Gear":                  "mdi:car-shift-pattern",
	"DetailedChargeState":   "mdi:ev-station",
	"ChargeState":           "mdi:ev-station",
	"SentryMode":            "mdi:cctv",
	"GpsHeading":            "mdi:compass-outline",
	"Odometer":              "mdi:counter",
	"Version":               "mdi:tag-outline",
	"SoftwareUpdateVersion": "mdi:update",
	"CenterDisplay":         "mdi:monitor",
	"DestinationName":       "mdi:map-marker-path",
}

// Templates. Home Assistant renders a value template first and then
// compares its output: the bridge's payload None (the car has no valid
// value) must come out as None, which Home Assistant shows as unknown.
const (
	// timestampTemplate turns the car's epoch seconds into the ISO 8601
	// time a timestamp sensor needs; 0 means "not set".
	timestampTemplate = "{{ 'None' if value in ('None', '0', '') else value | int | timestamp_utc }}"
	// trackerAttributes passes a location object through and turns None
	// into an empty object, so that a tracker without a position is
	// unknown rather than stuck at its last position.
	trackerAttributes = "{% if value_json is defined %}{{ value }}{% else %}{}{% endif %}"
)

// memberTemplate returns the value template of one member of a JSON
// object of booleans (a door, a tire): ON or OFF, or None when the payload
// is None.
func memberTemplate(member string) string {
	return "{% if value_json is defined %}{{ 'ON' if value_json." + member + " else 'OFF' }}{% else %}None{% endif %}"
}

// doorNames name the entities of the DoorState bits, in telemetry.DoorNames
// order.
var doorNames = [len(telemetry.DoorNames)]struct{ name, objectID string }{
	{"Driver front door", "door_driver_front"},
	{"Driver rear door", "door_driver_rear"},
	{"Passenger front door", "door_passenger_front"},
	{"Passenger rear door", "door_passenger_rear"},
	{"Frunk", "frunk"},
	{"Trunk", "trunk"},
}

// standardTires is the number of tire positions every car has; the others
// belong to the Semi.
const standardTires = 4

// specs holds the entities of every catalog field, made once.
var specs = sync.OnceValue(buildSpecs)

// buildSpecs makes the entities of every announced catalog field, indexed
// by field number.
func buildSpecs() [][]entity {
	cat := telemetry.Catalog()
	out := make([][]entity, len(cat))
	for _, info := range cat {
		out[info.Field] = fieldEntities(info)
	}
	return out
}

// fieldEntities returns the entities of one catalog field, none for fields
// the catalog does not announce.
func fieldEntities(info telemetry.FieldInfo) []entity {
	c := componentOf(info)
	if c.platform == "" || c.platform == "none" {
		return nil
	}
	base := entity{
		field:    info.Field,
		key:      info.Name,
		objectID: snakeName(info.Name),
		platform: c.platform,
		topicKey: "state_topic",
		obscure:  isObscure(info),
	}
	category := ""
	if info.Diagnostic {
		category = "diagnostic"
	}
	switch info.Kind {
	case telemetry.KindDoors:
		out := make([]entity, 0, len(doorNames))
		for i, member := range telemetry.DoorNames {
			e := base
			e.key = info.Name + "_" + member
			e.objectID = doorNames[i].objectID
			e.static = fields{
				str("name", doorNames[i].name),
				str("device_class", c.deviceClass),
				str("value_template", memberTemplate(member)),
				str("entity_category", category),
			}.append(nil)
			out = append(out, e)
		}
		return out
	case telemetry.KindTireLocation:
		out := make([]entity, 0, len(telemetry.TireNames))
		for i, member := range telemetry.TireNames {
			words := strings.ReplaceAll(strings.TrimPrefix(member, "semi_"), "_", " ")
			e := base
			e.key = info.Name + "_" + member
			e.objectID = snakeName(strings.TrimSuffix(info.Name, "s")) + "_" + strings.TrimPrefix(member, "semi_")
			e.semi = i >= standardTires
			e.static = fields{
				str("name", entityName(info.Name)+" "+words),
				str("device_class", c.deviceClass),
				str("value_template", memberTemplate(member)),
				str("entity_category", category),
			}.append(nil)
			out = append(out, e)
		}
		return out
	}

	fs := fields{str("name", entityName(info.Name))}
	switch c.platform {
	case "device_tracker":
		base.topicKey = "json_attributes_topic"
		fs = append(fs,
			str("json_attributes_template", trackerAttributes),
			str("source_type", "gps"))
	case "binary_sensor":
		on, off := "true", "false"
		if c.deviceClass == "lock" {
			// Home Assistant's lock class means on = unlocked; the car
			// says Locked = true.
			on, off = "false", "true"
		}
		fs = append(fs,
			str("device_class", c.deviceClass),
			str("payload_on", on),
			str("payload_off", off))
	case "sensor":
		fs = append(fs,
			str("device_class", c.deviceClass),
			str("state_class", c.stateClass),
			str("unit_of_measurement", c.unit))
		if p, ok := precision(info, c); ok {
			fs = append(fs, field{key: "suggested_display_precision", value: strconv.Itoa(p), raw: true})
		}
		if c.deviceClass == "enum" && info.Enum != nil {
			opts := make([]string, len(info.Enum.Values))
			for i, v := range info.Enum.Values {
				opts[i] = v.Short
			}
			fs = append(fs, field{key: "options", list: opts})
		}
		if c.deviceClass == "timestamp" {
			fs = append(fs, str("value_template", timestampTemplate))
		}
	}
	fs = append(fs, str("entity_category", category), str("icon", icons[info.Name]))
	base.static = fs.append(nil)
	return []entity{base}
}

// field is one member of a JSON object; empty values are left out.
type field struct {
	key, value string
	// raw values are written as they are (numbers, booleans).
	raw bool
	// list, when set, is written as an array of strings.
	list []string
}

type fields []field

// str returns a string member.
func str(key, value string) field { return field{key: key, value: value} }

// append appends every member that has a value, each preceded by a comma.
func (fs fields) append(dst []byte) []byte {
	for _, f := range fs {
		switch {
		case f.list != nil:
			dst = appendKey(dst, f.key)
			dst = appendStrings(dst, f.list)
		case f.value == "":
			continue
		case f.raw:
			dst = appendKey(dst, f.key)
			dst = append(dst, f.value...)
		default:
			dst = appendKey(dst, f.key)
			dst = telemetry.AppendJSONString(dst, f.value)
		}
	}
	return dst
}

// appendKey appends `,"key":`.
func appendKey(dst []byte, key string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

// appendStrings appends a JSON array of strings.
func appendStrings(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = telemetry.AppendJSONString(dst, s)
	}
	return append(dst, ']')
}
