package discovery

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// haTable is testdata/ha_sensor_units.json: the combinations Home
// Assistant accepts, written from its documentation.
type haTable struct {
	Sensor struct {
		StateClasses    []string                       `json:"state_classes"`
		NonNumeric      []string                       `json:"non_numeric_device_classes"`
		StateClassUnits map[string][]string            `json:"state_class_units"`
		DeviceClasses   map[string]haSensorDeviceClass `json:"device_classes"`
	} `json:"sensor"`
	BinarySensor struct {
		DeviceClasses []string `json:"device_classes"`
	} `json:"binary_sensor"`
	DeviceTracker struct {
		SourceTypes []string `json:"source_types"`
	} `json:"device_tracker"`
	EntityCategories []string `json:"entity_categories"`
}

type haSensorDeviceClass struct {
	// Units is a list of units (null for none) or "any".
	Units        json.RawMessage `json:"units"`
	StateClasses []string        `json:"state_classes"`
}

// allows reports whether the device class takes unit ("" for none).
func (d haSensorDeviceClass) allows(unit string) bool {
	var word string
	if json.Unmarshal(d.Units, &word) == nil {
		return word == "any"
	}
	var units []*string
	if err := json.Unmarshal(d.Units, &units); err != nil {
		return false
	}
	for _, u := range units {
		if (u == nil && unit == "") || (u != nil && *u == unit) {
			return true
		}
	}
	return false
}

func loadHATable(t *testing.T) haTable {
	t.Helper()
	raw, err := os.ReadFile("testdata/ha_sensor_units.json")
	if err != nil {
		t.Fatal(err)
	}
	var tab haTable
	if err := json.Unmarshal(raw, &tab); err != nil {
		t.Fatalf("ha_sensor_units.json: %v", err)
	}
	if len(tab.Sensor.DeviceClasses) < 50 || len(tab.BinarySensor.DeviceClasses) < 20 {
		t.Fatal("ha_sensor_units.json looks truncated")
	}
	return tab
}

// haComponent is what is checked of one component: its config keys, and
// the kind of value its topic carries.
type haComponent map[string]any

func (c haComponent) str(k string) string { s, _ := c[k].(string); return s }

// check returns what Home Assistant would reject or mishandle in a
// component whose topic carries values of kind.
func (tab haTable) check(c haComponent, kind telemetry.Kind) []string {
	var bad []string
	fail := func(format string, args ...any) {
		bad = append(bad, fmt.Sprintf(format, args...))
	}
	if cat := c.str("entity_category"); cat != "" && !slices.Contains(tab.EntityCategories, cat) {
		fail("entity_category %q", cat)
	}
	if _, ok := c["enabled_by_default"]; ok && c["enabled_by_default"] != false {
		fail("enabled_by_default %v", c["enabled_by_default"])
	}
	templated := c.str("value_template") != ""
	switch p := c.str("p"); p {
	case "sensor":
		dc, sc, unit := c.str("device_class"), c.str("state_class"), c.str("unit_of_measurement")
		_, hasOptions := c["options"]
		_, hasPrecision := c["suggested_display_precision"]
		if sc != "" && !slices.Contains(tab.Sensor.StateClasses, sc) {
			fail("state_class %q unknown", sc)
		}
		if units, ok := tab.Sensor.StateClassUnits[sc]; ok && !slices.Contains(units, unit) {
			fail("state_class %s with unit %q", sc, unit)
		}
		if dc != "" {
			d, ok := tab.Sensor.DeviceClasses[dc]
			switch {
			case !ok:
				fail("sensor device_class %q unknown", dc)
			default:
				if !d.allows(unit) {
					fail("unit %q not valid with device_class %s", unit, dc)
				}
				if sc != "" && !slices.Contains(d.StateClasses, sc) {
					fail("state_class %s not valid with device_class %s", sc, dc)
				}
			}
		}
		nonNumeric := slices.Contains(tab.Sensor.NonNumeric, dc)
		if nonNumeric && (unit != "" || sc != "") {
			fail("non-numeric device_class %s with unit %q or state_class %q", dc, unit, sc)
		}
		if hasOptions {
			opts, _ := c["options"].([]any)
			if dc != "enum" || sc != "" || unit != "" || len(opts) == 0 {
				fail("options %v need device_class enum, no unit and no state class", c["options"])
			}
		}
		if dc == "enum" && !hasOptions {
			fail("enum sensor without options")
		}
		numeric := !nonNumeric && (sc != "" || unit != "" || hasPrecision || dc != "")
		switch {
		case numeric && !kind.Numeric():
			fail("numeric sensor on a %s signal", kind)
		case dc == "timestamp" && !(templated && (kind == telemetry.KindLong || kind == telemetry.KindInt)):
			fail("timestamp sensor on a %s signal without a template", kind)
		case dc == "enum" && kind != telemetry.KindEnum:
			fail("enum sensor on a %s signal", kind)
		}
	case "binary_sensor":
		if dc := c.str("device_class"); dc != "" && !slices.Contains(tab.BinarySensor.DeviceClasses, dc) {
			fail("binary_sensor device_class %q unknown", dc)
		}
		switch {
		case kind == telemetry.KindBool && !templated:
			if on, off := c.str("payload_on"), c.str("payload_off"); !(on == "true" && off == "false" || on == "false" && off == "true") {
				fail("payload_on %q payload_off %q do not match true/false", on, off)
			}
		case (kind == telemetry.KindDoors || kind == telemetry.KindTireLocation) && templated:
		default:
			fail("binary_sensor on a %s signal", kind)
		}
	case "device_tracker":
		if kind != telemetry.KindLocation {
			fail("device_tracker on a %s signal", kind)
		}
		if st := c.str("source_type"); st != "" && !slices.Contains(tab.DeviceTracker.SourceTypes, st) {
			fail("source_type %q", st)
		}
	default:
		fail("platform %q", p)
	}
	return bad
}

// TestCatalogCombinations checks every catalog entry's Home Assistant
// hints against Home Assistant's table: an invalid entry must be in the
// corrections table (and is then announced differently), and every
// correction must still be needed.
func TestCatalogCombinations(t *testing.T) {
	tab := loadHATable(t)
	invalid := map[string][]string{}
	for _, info := range telemetry.Catalog() {
		if info.Component == "none" {
			continue
		}
		c := haComponent{"p": info.Component}
		for k, v := range map[string]string{"device_class": info.DeviceClass, "state_class": info.StateClass, "unit_of_measurement": displayUnit(info.Unit)} {
			if v != "" {
				c[k] = v
			}
		}
		// What the catalog does not speak about is filled in as this
		// package always does: options of enums, payloads of booleans.
		if info.Enum != nil && info.DeviceClass == "enum" {
			c["options"] = []any{"x"}
		}
		if info.Component == "binary_sensor" {
			c["payload_on"], c["payload_off"] = "true", "false"
		}
		switch info.Kind {
		case telemetry.KindDoors, telemetry.KindTireLocation:
			c["value_template"] = "fan-out"
		}
		if info.DeviceClass == "timestamp" {
			c["value_template"] = timestampTemplate
		}
		if bad := tab.check(c, info.Kind); len(bad) > 0 {
			invalid[info.Name] = bad
		}
	}
	for name, bad := range invalid {
		if _, ok := corrections[name]; !ok {
			t.Errorf("catalog entry %s is invalid for Home Assistant and has no correction: %s", name, strings.Join(bad, "; "))
		} else {
			t.Logf("catalog entry %s corrected (%s): %s", name, corrections[name].why, strings.Join(bad, "; "))
		}
	}
	for name := range corrections {
		if _, ok := invalid[name]; !ok {
			t.Errorf("correction for %s is not needed any more: remove it", name)
		}
	}
}

// TestAnnouncedCombinations renders cars with every field and checks each
// announced component against Home Assistant's table.
func TestAnnouncedCombinations(t *testing.T) {
	tab := loadHATable(t)
	for _, vin := range []string{"5YJ3E1EA7KF000001", "7G2T1AAA0PA000001"} {
		v := Vehicle{VIN: vin, Streaming: allFields()}
		c := decode(t, Messages(DefaultConfig(), testBridge, v)[0].Payload)
		keys := make([]string, 0, len(c.Cmps))
		for k := range c.Cmps {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			comp := haComponent(c.Cmps[key])
			kind := componentKind(t, vin, comp)
			for _, bad := range tab.check(comp, kind) {
				t.Errorf("%s %s: %s", vin, key, bad)
			}
			if comp.str("unique_id") == "" || comp.str("name") == "" {
				t.Errorf("%s %s: unique_id or name missing", vin, key)
			}
		}
	}
}

// componentKind returns the kind of value on a component's topic: the
// catalog kind of the field whose topic it is, bool for the connected
// topic, int for the alert count.
func componentKind(t *testing.T, vin string, c haComponent) telemetry.Kind {
	topic := c.str("state_topic")
	if topic == "" {
		topic = c.str("json_attributes_topic")
	}
	level, ok := strings.CutPrefix(topic, testBridge.Prefix+"/"+vin+"/")
	if !ok {
		t.Fatalf("topic %q is not under the car", topic)
	}
	switch level {
	case ConnectedLevel:
		return telemetry.KindBool
	case ActiveAlertsLevel:
		return telemetry.KindInt
	}
	f, ok := telemetry.FieldByName(level)
	if !ok {
		t.Fatalf("topic %q names no field", topic)
	}
	info, _ := telemetry.Lookup(f)
	return info.Kind
}

// samples returns values of a field as the car may send them, every enum
// value for enums.
func samples(info telemetry.FieldInfo) []telemetry.Value {
	switch info.Kind {
	case telemetry.KindDouble:
		return []telemetry.Value{telemetry.FloatValue(12.5), telemetry.Float32Value(-0.1), telemetry.FloatValue(0), telemetry.FloatValue(123456.789)}
	case telemetry.KindInt, telemetry.KindLong:
		return []telemetry.Value{telemetry.IntValue(0), telemetry.IntValue(42), telemetry.IntValue(1735689600)}
	case telemetry.KindBool:
		return []telemetry.Value{telemetry.BoolValue(true), telemetry.BoolValue(false)}
	case telemetry.KindEnum:
		var out []telemetry.Value
		for _, ev := range info.Enum.Values {
			out = append(out, telemetry.EnumOf(info.Enum, ev))
		}
		return out
	case telemetry.KindString:
		return []telemetry.Value{telemetry.StringValue("Home"), telemetry.StringValue("")}
	case telemetry.KindLocation:
		return []telemetry.Value{telemetry.LocationValue(37.4, -122.1)}
	case telemetry.KindDoors:
		return []telemetry.Value{telemetry.DoorsValue(0), telemetry.DoorsValue(telemetry.DriverFront | telemetry.TrunkRear)}
	case telemetry.KindTireLocation:
		return []telemetry.Value{telemetry.TiresValue(0), telemetry.TiresValue(telemetry.FrontLeft | telemetry.SemiRearAxleRight2)}
	case telemetry.KindTime:
		return []telemetry.Value{telemetry.TimeValue(7, 5, 0)}
	}
	return nil
}

var memberPattern = regexp.MustCompile(`value_json\.([A-Za-z_0-9]+)`)

// TestPayloadsSatisfyConfigs plays Home Assistant's part for every
// announced component: each value the bridge can publish on its topic
// (telemetry.Value.AppendText, as the bridge formats it) must be one the
// component's config takes: numbers for numeric sensors, an option for
// enum sensors, payload_on or payload_off for binary sensors, a JSON
// object with the templated member for fanned-out binary sensors,
// latitude and longitude for trackers.
func TestPayloadsSatisfyConfigs(t *testing.T) {
	c := decode(t, Messages(DefaultConfig(), testBridge, Vehicle{VIN: "7G2T1AAA0PA000001", Streaming: allFields()})[0].Payload)
	checked := 0
	collisions := map[string]bool{}
	for key, raw := range c.Cmps {
		comp := haComponent(raw)
		topic := comp.str("state_topic") + comp.str("json_attributes_topic")
		f, ok := telemetry.FieldByName(topic[strings.LastIndexByte(topic, '/')+1:])
		if !ok {
			continue // connected and active_alerts
		}
		info, _ := telemetry.Lookup(f)
		for _, v := range samples(info) {
			payload := string(v.AppendText(nil))
			if payload == "None" && v.Kind() == telemetry.KindEnumValue {
				// A valid value that reads as the bridge's "no valid
				// value": Home Assistant shows it as unknown.
				collisions[info.Name] = true
			}
			if msg := accepts(comp, payload); msg != "" {
				t.Errorf("%s: payload %q: %s", key, payload, msg)
			}
			checked++
		}
	}
	if checked < 500 {
		t.Errorf("only %d payloads checked", checked)
	}
	for name := range collisions {
		if !noneCollisions[name] {
			t.Errorf("%s has an enum value published as None, which Home Assistant reads as unknown", name)
		}
	}
	for name := range noneCollisions {
		if !collisions[name] {
			t.Errorf("%s no longer publishes a valid value as None: remove it from noneCollisions", name)
		}
	}
}

// noneCollisions are the fields with an enum value whose short name is
// None, the bridge's payload for "no valid value": Home Assistant would
// show that value as unknown. The catalog names such values "none", so
// there are none left.
var noneCollisions = map[string]bool{}

// accepts returns why a component's config does not take payload, or "".
func accepts(c haComponent, payload string) string {
	tpl := c.str("value_template")
	switch c.str("p") {
	case "sensor":
		dc := c.str("device_class")
		switch {
		case dc == "timestamp":
			if _, err := strconv.ParseInt(payload, 10, 64); err != nil || !strings.Contains(tpl, "timestamp_utc") {
				return "timestamp template needs integer seconds"
			}
		case dc == "enum":
			opts, _ := c["options"].([]any)
			if !slices.Contains(opts, any(payload)) {
				return "not among the options"
			}
		case c.str("state_class") != "" || c.str("unit_of_measurement") != "" || c["suggested_display_precision"] != nil || dc != "":
			if _, err := strconv.ParseFloat(payload, 64); err != nil {
				return "numeric sensor gets a non-number"
			}
		}
	case "binary_sensor":
		if tpl == "" {
			if payload != c.str("payload_on") && payload != c.str("payload_off") {
				return "neither payload_on nor payload_off"
			}
			return ""
		}
		m := memberPattern.FindStringSubmatch(tpl)
		var obj map[string]any
		if m == nil || json.Unmarshal([]byte(payload), &obj) != nil {
			return "template member or JSON object missing"
		}
		if _, ok := obj[m[1]].(bool); !ok {
			return "member " + m[1] + " is not a boolean"
		}
	case "device_tracker":
		var obj map[string]any
		if json.Unmarshal([]byte(payload), &obj) != nil {
			return "not a JSON object"
		}
		if _, ok := obj["latitude"].(float64); !ok {
			return "no latitude"
		}
		if _, ok := obj["longitude"].(float64); !ok {
			return "no longitude"
		}
	}
	return ""
}

// TestTemplatesPassNone checks that every template lets the bridge's None
// through, which Home Assistant shows as unknown.
func TestTemplatesPassNone(t *testing.T) {
	c := decode(t, Messages(DefaultConfig(), testBridge, Vehicle{VIN: "7G2T1AAA0PA000001", Streaming: allFields()})[0].Payload)
	for key, raw := range c.Cmps {
		comp := haComponent(raw)
		if key == alertsKey {
			continue // its topic is always JSON
		}
		for _, k := range []string{"value_template", "json_attributes_template"} {
			tpl := comp.str(k)
			if tpl != "" && !strings.Contains(tpl, "None") && !strings.Contains(tpl, "value_json is defined") {
				t.Errorf("%s: %s %q does not handle None", key, k, tpl)
			}
		}
	}
}

// TestEveryUnitHasPrecision checks that every numeric sensor with a unit
// suggests a display precision, so that a unit new to the catalog is not
// left out of unitPrecision unnoticed.
func TestEveryUnitHasPrecision(t *testing.T) {
	for _, info := range telemetry.Catalog() {
		c := componentOf(info)
		if c.platform != "sensor" || !info.Kind.Numeric() || c.unit == "" || c.deviceClass == "timestamp" {
			continue
		}
		if _, ok := precision(info, c); !ok {
			t.Errorf("%s: no display precision for unit %q", info.Name, c.unit)
		}
	}
}
