package discovery

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// sampleCar is the car of the golden discovery payload: a Model 3 with
// signals of every kind.
func sampleCar(t testing.TB) Vehicle {
	return Vehicle{
		VIN:             "5YJ3E1EA7KF000001",
		DisplayName:     "Ellie",
		SoftwareVersion: "2024.44.25.2",
		Streaming: fieldsNamed(t,
			"Soc", "BatteryLevel", "VehicleSpeed", "Odometer", "Gear", "DetailedChargeState",
			"ChargeState", "DoorState", "Locked", "Location", "DestinationLocation",
			"TpmsHardWarnings", "TpmsPressureFl", "ScheduledChargingStartTime",
			"DCChargingEnergyIn", "ACChargingPower", "InsideTemp", "GpsHeading", "SentryMode",
			"FastChargerPresent", "ChargePortDoorOpen", "MediaNowPlayingTitle", "Version",
			"DiHeatsinkTR", "BrickVoltageMax", "EnergyRemaining", "TimeToFullCharge",
			"ChargeAmps", "SeatHeaterLeft", "PackCurrent"),
		Seen: fieldsNamed(t, "Soc", "VehicleName", "TpmsSoftWarnings"),
	}
}

// semiCar is a Semi known only by its VIN, on an instance.
func semiCar(t testing.TB) Vehicle {
	return Vehicle{
		VIN:  "7G2T1AAA0PA000001",
		Seen: fieldsNamed(t, "TpmsSoftWarnings", "SemitruckTpmsPressureRe1L0", "Soc"),
	}
}

func TestGolden(t *testing.T) {
	semiCfg := DefaultConfig()
	semiCfg.Instance = "test"
	obscure := DefaultConfig()
	obscure.EnableObscure = true
	tests := []struct {
		name string
		cfg  Config
		v    Vehicle
	}{
		{"model3", DefaultConfig(), sampleCar(t)},
		{"semi-instance", semiCfg, semiCar(t)},
		{"obscure-enabled", obscure, Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Seen: fieldsNamed(t, "DiHeatsinkTR", "Trim")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, Messages(tt.cfg, testBridge, tt.v))
		})
	}
}

func TestMessagesShape(t *testing.T) {
	v := sampleCar(t)
	msgs := Messages(DefaultConfig(), testBridge, v)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Topic != "homeassistant/device/fleet2mqtt_5YJ3E1EA7KF000001/config" || !m.Retain {
		t.Errorf("topic %q retain %v", m.Topic, m.Retain)
	}
	c := decode(t, m.Payload)
	if c.Dev["name"] != "Ellie" || c.Dev["mf"] != "Tesla" || c.Dev["mdl"] != "Model 3 (2019)" ||
		c.Dev["sw"] != "2024.44.25.2" || c.Dev["sn"] != v.VIN {
		t.Errorf("device %v", c.Dev)
	}
	if c.O["name"] != "fleet2mqtt" || c.O["sw"] != "1.2.3" || c.O["url"] == nil {
		t.Errorf("origin %v", c.O)
	}
	if len(c.Availability) != 1 || c.Availability[0]["topic"] != "tesla/bridge/state" ||
		c.Availability[0]["payload_available"] != "online" || c.Availability[0]["payload_not_available"] != "offline" {
		t.Errorf("availability %v", c.Availability)
	}
	// Every streamed field is announced, plus the fan-outs and the two
	// extra entities; VehicleName only seen is there too.
	for _, key := range []string{"Soc", "VehicleName", "DoorState_TrunkFront", "TpmsSoftWarnings_rear_right", "streaming", "alerts", "Location"} {
		if c.Cmps[key] == nil {
			t.Errorf("component %s missing", key)
		}
	}
	if c.Cmps["TpmsHardWarnings_semi_rear_axle_left"] != nil {
		t.Error("a Model 3 got the Semi's tire positions")
	}
	lock := c.Cmps["Locked"]
	if lock["device_class"] != "lock" || lock["payload_on"] != "false" || lock["payload_off"] != "true" {
		t.Errorf("Locked: %v", lock)
	}
	if c.Cmps["DiHeatsinkTR"]["enabled_by_default"] != false || c.Cmps["Soc"]["enabled_by_default"] != nil {
		t.Error("obscure signal not disabled, or a primary one disabled")
	}
	if got := c.Cmps["Soc"]["default_entity_id"]; got != "sensor.ellie_soc" {
		t.Errorf("Soc default_entity_id %v", got)
	}
	if got := c.Cmps["Location"]["json_attributes_topic"]; got != "tesla/5YJ3E1EA7KF000001/Location" {
		t.Errorf("Location topic %v", got)
	}
}

func TestMessagesDisabledOrNoVIN(t *testing.T) {
	off := DefaultConfig()
	off.Enabled = false
	if m := Messages(off, testBridge, sampleCar(t)); m != nil {
		t.Errorf("disabled discovery published %d messages", len(m))
	}
	if m := Messages(DefaultConfig(), testBridge, Vehicle{}); m != nil {
		t.Errorf("a car without VIN published %d messages", len(m))
	}
}

var (
	idPattern       = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	entityIDPattern = regexp.MustCompile(`^(?:[a-z0-9]+_)*[a-z0-9]+\.(?:[a-z0-9]+_)*[a-z0-9]+$`)
)

// TestIDs checks, for cars with every field, that unique ids are unique
// across cars and instances, and that every id and entity id is well
// formed.
func TestIDs(t *testing.T) {
	inst := DefaultConfig()
	inst.Instance = "second-site"
	cars := []struct {
		cfg Config
		v   Vehicle
	}{
		{DefaultConfig(), Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Streaming: allFields()}},
		{DefaultConfig(), Vehicle{VIN: "5YJ3E1EA7KF000002", Streaming: allFields()}},
		{inst, Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Streaming: allFields()}},
		{DefaultConfig(), Vehicle{VIN: "7G2T1AAA0PA000001", DisplayName: "Zoë's 🚚 Semi!", Streaming: allFields()}},
		{DefaultConfig(), Vehicle{VIN: "odd vin/+#_-é", DisplayName: "🚗", Streaming: allFields()}},
	}
	unique := map[string]string{}
	topics := map[string]bool{}
	for _, car := range cars {
		msgs := Messages(car.cfg, testBridge, car.v)
		topic := msgs[0].Topic
		if topics[topic] {
			t.Errorf("two cars share the discovery topic %s", topic)
		}
		topics[topic] = true
		level := strings.TrimSuffix(strings.TrimPrefix(topic, "homeassistant/device/"), "/config")
		if !idPattern.MatchString(level) {
			t.Errorf("discovery topic id %q has characters outside [a-zA-Z0-9_-]", level)
		}
		c := decode(t, msgs[0].Payload)
		for key, comp := range c.Cmps {
			if !idPattern.MatchString(key) {
				t.Errorf("component key %q has characters outside [a-zA-Z0-9_-]", key)
			}
			id, _ := comp["unique_id"].(string)
			if !idPattern.MatchString(id) {
				t.Errorf("unique_id %q has characters outside [a-zA-Z0-9_-]", id)
			}
			if prev, ok := unique[id]; ok {
				t.Errorf("unique_id %s twice: %s and %s/%s", id, prev, topic, key)
			}
			unique[id] = topic + "/" + key
			eid, _ := comp["default_entity_id"].(string)
			if !entityIDPattern.MatchString(eid) || !strings.HasPrefix(eid, comp["p"].(string)+".") {
				t.Errorf("default_entity_id %q is not a valid entity id of platform %v", eid, comp["p"])
			}
		}
	}
	// A Semi streaming every field announces every entity of the catalog
	// (DoorState as 6 doors, the tire warnings as 10 tires each), plus
	// streaming and alerts.
	semi := decode(t, Messages(DefaultConfig(), testBridge, cars[3].v)[0].Payload)
	want := 2
	for _, es := range specs() {
		want += len(es)
	}
	if len(semi.Cmps) != want {
		t.Errorf("Semi with every field has %d components, want %d", len(semi.Cmps), want)
	}
}

func TestDeviceID(t *testing.T) {
	inst := DefaultConfig()
	inst.Instance = "lab-2"
	tests := []struct {
		cfg  Config
		vin  string
		want string
	}{
		{DefaultConfig(), "5YJ3E1EA7KF000001", "fleet2mqtt_5YJ3E1EA7KF000001"},
		{inst, "5YJ3E1EA7KF000001", "fleet2mqtt_lab-2_5YJ3E1EA7KF000001"},
		{DefaultConfig(), "a_b-c d", "fleet2mqtt_a-5Fb-2Dc-20d"},
		{DefaultConfig(), "é", "fleet2mqtt_-C3-A9"},
	}
	for _, tt := range tests {
		if got := DeviceID(tt.cfg, tt.vin); got != tt.want {
			t.Errorf("DeviceID(%q, %q) = %q, want %q", tt.cfg.Instance, tt.vin, got, tt.want)
		}
	}
}

func TestIncludeExclude(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", Streaming: fieldsNamed(t, "Soc", "Gear", "DoorState", "Odometer"), Seen: fieldsNamed(t, "Locked")}
	tests := []struct {
		name             string
		include, exclude []string
		want             []string
	}{
		{"all", nil, nil, []string{"Soc", "Gear", "DoorState_DriverFront", "Odometer", "Locked"}},
		{"exclude", nil, []string{"Gear", "DoorState"}, []string{"Soc", "Odometer", "Locked"}},
		{"include", []string{"Soc", "Locked", "BatteryLevel"}, nil, []string{"Soc", "Locked"}},
		{"both", []string{"Soc", "Gear"}, []string{"Odometer"}, []string{"Soc", "Gear"}},
	}
	every := []string{"Soc", "Gear", "DoorState_DriverFront", "Odometer", "Locked", "BatteryLevel"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Include, cfg.Exclude = tt.include, tt.exclude
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			c := decode(t, Messages(cfg, testBridge, v)[0].Payload)
			for _, key := range every {
				if got, want := c.Cmps[key] != nil, slices.Contains(tt.want, key); got != want {
					t.Errorf("component %s announced %v, want %v", key, got, want)
				}
			}
			if c.Cmps["streaming"] == nil || c.Cmps["alerts"] == nil {
				t.Error("streaming or alerts missing")
			}
		})
	}
}

func TestUnknownFieldsAreSkipped(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", Streaming: []telemetry.Field{-1, 300, 1 << 20}, Seen: []telemetry.Field{telemetry.FieldSoc, telemetry.FieldExperimental_1}}
	c := decode(t, Messages(DefaultConfig(), testBridge, v)[0].Payload)
	if len(c.Cmps) != 3 || c.Cmps["Soc"] == nil {
		keys := make([]string, 0, len(c.Cmps))
		for k := range c.Cmps {
			keys = append(keys, k)
		}
		t.Errorf("components %v, want streaming, alerts and Soc", keys)
	}
}

func TestRemoveMessages(t *testing.T) {
	before := Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Streaming: fieldsNamed(t, "Soc", "Gear", "DoorState", "Location")}
	announced, err := ParseAnnounced(Messages(DefaultConfig(), testBridge, before)[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if announced["Soc"] != "sensor" || announced["DoorState_TrunkRear"] != "binary_sensor" || announced["Location"] != "device_tracker" {
		t.Fatalf("ParseAnnounced = %v", announced)
	}

	// Nothing changed: nothing to remove.
	if m := RemoveMessages(DefaultConfig(), testBridge, before, announced); m != nil {
		t.Errorf("unchanged car: %d removal messages", len(m))
	}

	// Gear leaves the streaming config, doors are excluded.
	after := before
	after.Streaming = fieldsNamed(t, "Soc", "DoorState", "Location", "Odometer")
	cfg := DefaultConfig()
	cfg.Exclude = []string{"DoorState"}
	msgs := RemoveMessages(cfg, testBridge, after, announced)
	if len(msgs) != 2 {
		t.Fatalf("%d removal messages, want 2", len(msgs))
	}
	golden(t, "remove-components", msgs)
	first := decode(t, msgs[0].Payload)
	for _, key := range []string{"Gear", "DoorState_DriverFront", "DoorState_TrunkRear"} {
		if c := first.Cmps[key]; len(c) != 1 || c["p"] == nil {
			t.Errorf("removed component %s is %v, want only p", key, c)
		}
	}
	if first.Cmps["Odometer"]["unique_id"] == nil || first.Cmps["Soc"]["unique_id"] == nil {
		t.Error("the removal message lost the current components")
	}
	second := decode(t, msgs[1].Payload)
	if second.Cmps["Gear"] != nil || second.Cmps["Odometer"] == nil {
		t.Error("the clean config still has removed components or lacks new ones")
	}
	if string(msgs[1].Payload) != string(Messages(cfg, testBridge, after)[0].Payload) {
		t.Error("the second removal message is not the current config")
	}
	for _, m := range msgs {
		if !m.Retain || m.Topic != Topic(cfg, after.VIN) {
			t.Errorf("removal message topic %q retain %v", m.Topic, m.Retain)
		}
	}
}

func TestRemoveDevice(t *testing.T) {
	m := RemoveDevice(DefaultConfig(), "5YJ3E1EA7KF000001")
	if m.Topic != "homeassistant/device/fleet2mqtt_5YJ3E1EA7KF000001/config" || len(m.Payload) != 0 || !m.Retain {
		t.Errorf("RemoveDevice = %+v", m)
	}
}

func TestParseAnnounced(t *testing.T) {
	tests := []struct {
		payload string
		want    map[string]string
		err     error
	}{
		{"", map[string]string{}, nil},
		{`{"dev":{},"o":{},"cmps":{"a":{"p":"sensor"},"b":{"platform":"binary_sensor"}}}`, map[string]string{"a": "sensor", "b": "binary_sensor"}, nil},
		{`{"device":{},"components":{"a":{"p":"sensor"}}}`, map[string]string{"a": "sensor"}, nil},
		{`{"state_topic":"x"}`, nil, ErrNoComponents},
	}
	for _, tt := range tests {
		got, err := ParseAnnounced([]byte(tt.payload))
		if !errors.Is(err, tt.err) || len(got) != len(tt.want) {
			t.Errorf("ParseAnnounced(%s) = %v, %v", tt.payload, got, err)
			continue
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("ParseAnnounced(%s)[%s] = %q, want %q", tt.payload, k, got[k], v)
			}
		}
	}
	if _, err := ParseAnnounced([]byte("{")); err == nil {
		t.Error("broken JSON parsed")
	}
}

// TestParseAnnouncedShares checks that the components ParseAnnounced
// returns hold this package's strings, not copies per config: the
// announcer keeps them for every car.
func TestParseAnnouncedShares(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", Seen: []telemetry.Field{telemetry.FieldSoc, telemetry.FieldLocked}}
	got, err := ParseAnnounced(Messages(DefaultConfig(), testBridge, v)[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	known := knownNames()
	for k, p := range got {
		if unsafe.StringData(k) != unsafe.StringData(known[k]) || unsafe.StringData(p) != unsafe.StringData(known[p]) {
			t.Errorf("component %q: %q is a copy", k, p)
		}
	}
	if len(got) != 4 {
		t.Errorf("ParseAnnounced = %v, want streaming, alerts, Soc and Locked", got)
	}
}

func TestJSONEscaping(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "\"Quote\" \\ back\nline", SoftwareVersion: "v\"1", Seen: []telemetry.Field{telemetry.FieldSoc}}
	c := decode(t, Messages(DefaultConfig(), Bridge{Prefix: "home/\"car\"", Availability: "home/\"car\"/bridge/state", Version: "x\\y"}, v)[0].Payload)
	if c.Dev["name"] != v.DisplayName || c.Dev["sw"] != "v\"1" || c.O["sw"] != "x\\y" {
		t.Errorf("escaped strings came back as %v %v", c.Dev, c.O)
	}
	if got := c.Cmps["Soc"]["state_topic"]; got != "home/\"car\"/5YJ3E1EA7KF000001/Soc" {
		t.Errorf("state_topic %v", got)
	}
	if got := c.Cmps["Soc"]["default_entity_id"]; got != "sensor.quote_back_line_soc" {
		t.Errorf("default_entity_id %v", got)
	}
}

// TestUnknownFieldsBounded: a car that sends field numbers the catalog
// does not know (any number of them) gets no entity for them, so its
// config stays the size of the catalog's: well under the embedded broker's
// 1 MiB packet limit, the largest message an MQTT client there accepts.
func TestUnknownFieldsBounded(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", Streaming: allFields(), Seen: allFields()}
	catalogOnly := Messages(DefaultConfig(), testBridge, v)[0].Payload
	for f := telemetry.MaxField + 1; f < telemetry.MaxField+60000; f++ {
		v.Seen = append(v.Seen, f)
	}
	v.Seen = append(v.Seen, -1, 1<<31-1)
	withUnknown := Messages(DefaultConfig(), testBridge, v)[0].Payload
	if !bytes.Equal(catalogOnly, withUnknown) {
		t.Errorf("unknown field numbers changed the config: %d bytes, %d with only the catalog", len(withUnknown), len(catalogOnly))
	}
	if bytes.Contains(withUnknown, []byte("Field(")) {
		t.Error("the config announces a field the catalog does not know")
	}
	const limit = 512 << 10 // half the embedded broker's packet limit
	if len(withUnknown) > limit {
		t.Errorf("a car's config is %d bytes, over %d", len(withUnknown), limit)
	}
	t.Logf("a car with every catalog signal and 60,000 unknown field numbers: config %d bytes", len(withUnknown))
}

func TestOwns(t *testing.T) {
	cfg := DefaultConfig()
	inst := DefaultConfig()
	inst.Instance = "garage"
	vin := "5YJ3E1EA7KF000001"
	for _, tc := range []struct {
		cfg   Config
		topic string
		want  bool
	}{
		{cfg, Topic(cfg, vin), true},
		{cfg, Topic(cfg, "a/b+c"), true}, // escaped VIN characters
		{inst, Topic(inst, vin), true},
		{cfg, "homeassistant/status", false},
		{cfg, "homeassistant/device/zigbee_1/config", false},
		{cfg, Topic(inst, vin), false}, // another installation's
		{inst, Topic(cfg, vin), false},
		{cfg, "homeassistant/device/fleet2mqtt_/config", false},
		{cfg, "homeassistant/device/fleet2mqtt_" + vin + "/config/x", false},
		{cfg, "homeassistant/sensor/fleet2mqtt_" + vin + "/config", false},
	} {
		if got := Owns(tc.cfg, tc.topic); got != tc.want {
			t.Errorf("Owns(instance %q, %q) = %v, want %v", tc.cfg.Instance, tc.topic, got, tc.want)
		}
	}
}
