package hatest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/fleet2mqtt/fleet2mqtt/internal/hatest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// The test car: a Model 3 whose name is Ellie.
const (
	vin            = "5YJ3E1EA7KF000001"
	carName        = "Ellie"
	discoveryTopic = "homeassistant/device/fleet2mqtt_" + vin + "/config"
)

// The user Home Assistant connects to fleet2mqtt's embedded broker as, the
// way docs/home-assistant.md tells people to set it up.
const (
	mqttUser     = "homeassistant"
	mqttPassword = "secret-for-the-test"
)

// haLimit bounds how long Home Assistant may take to show what fleet2mqtt
// published.
const haLimit = time.Minute

// birthDelayMax is the longest fleet2mqtt waits after Home Assistant's
// birth message before it announces the cars again (docs/home-assistant.md).
const birthDelayMax = 5 * time.Second

// TestEmbeddedBroker runs fleet2mqtt with its embedded broker and a real
// Home Assistant whose MQTT integration connects to it with a user: the
// car's device and every entity as announced, the states Home Assistant
// shows, a Home Assistant restart, and removing the car.
func TestEmbeddedBroker(t *testing.T) {
	needHomeAssistant(t)
	bin := buildFleet2mqtt(t)
	mqttPort := testenv.FreePort(t)
	f := startFleet(t, bin, fmt.Sprintf(`  broker: embedded
  embedded:
    listen: 127.0.0.1:%d
    users:
      - name: %s
        password: %s
`, mqttPort, mqttUser, mqttPassword))
	ha := hatest.Start(t)
	ha.AddMQTT(hatest.Broker{Host: "127.0.0.1", Port: mqttPort, Username: mqttUser, Password: mqttPassword})

	c := f.connectCar(t, vin)
	c.send(t, fullRecord(t, carValues(t)))
	mqttAddr := "127.0.0.1:" + strconv.Itoa(mqttPort)
	cfg := announced(t, mqttAddr, mqttUser, mqttPassword)
	ws := ha.WebSocket()
	dev := waitDevice(t, ha, ws, cfg)

	t.Run("entities", func(t *testing.T) { checkEntities(t, ha, ws, dev, cfg) })
	t.Run("no controls with commands off", func(t *testing.T) {
		for key, e := range componentsOf(t, ws, dev) {
			if strings.HasPrefix(key, "control_") {
				t.Errorf("commands are off (the default), yet Home Assistant has the control %s (%s)", e.EntityID, key)
			}
		}
	})
	t.Run("states", func(t *testing.T) {
		checkStates(t, ha, ws, dev, cfg, func(topic string) string { return retained(t, mqttAddr, topic, mqttUser, mqttPassword) })
	})

	t.Run("sleeping car stays available", func(t *testing.T) {
		c.stop()
		ids := entityIDs(t, ws, dev)
		waitState(t, ha, ids["streaming"], "off")
		if got := ha.States()[ids["Soc"]]; got.State != "80.6" {
			t.Errorf("state of charge of the sleeping car: %q, want its last value 80.6", got.State)
		}
	})

	t.Run("Home Assistant restarts", func(t *testing.T) {
		// A live subscription sees the retained config first, then only
		// what fleet2mqtt publishes again.
		configs, stop := subscribe(t, mqttAddr, discoveryTopic, mqttUser, mqttPassword)
		defer stop()
		select {
		case <-configs:
		case <-time.After(deliveryLimit):
			t.Fatal("no retained discovery config")
		}
		ha.Stop()
		ha.Restart()
		// Home Assistant's birth message makes fleet2mqtt announce again
		// (after one to five seconds).
		select {
		case <-configs:
		case <-time.After(haLimit):
			t.Errorf("fleet2mqtt did not announce the car again after Home Assistant's birth message")
		}
		ws := ha.WebSocket()
		// The entities come back from the registry at once, unavailable
		// until MQTT delivers; their states must come back too.
		ids := entityIDs(t, ws, dev)
		waitState(t, ha, ids["Soc"], "80.6")
		waitState(t, ha, ids["Gear"], "D")
		waitState(t, ha, ids["streaming"], "off")
		if n := len(componentsOf(t, ws, dev)); n != len(cfg.Components) {
			t.Errorf("after the restart the device has %d entities, want %d", n, len(cfg.Components))
		}
	})

	t.Run("discovery remove", func(t *testing.T) {
		ws := ha.WebSocket()
		f.removeDevice(vin)
		deadline := time.Now().Add(haLimit)
		for {
			devs, err := ws.Devices()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(devs, func(d hatest.Device) bool { return d.ID == dev.ID }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the device is still in Home Assistant %v after `fleet2mqtt discovery remove`", haLimit)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if left := entityIDs(t, ws, dev); len(left) != 0 {
			t.Errorf("entities left after removing the device: %v", left)
		}

		// fleet2mqtt forgot the car: Home Assistant's next birth message
		// does not bring it back. fleet2mqtt answers a birth within five
		// seconds; twice that without an announcement is enough.
		configs, stop := subscribe(t, mqttAddr, discoveryTopic, mqttUser, mqttPassword)
		defer stop()
		ha.Stop()
		ha.Restart()
		quiet := time.After(2 * birthDelayMax)
		for {
			select {
			case p := <-configs:
				if p != "" {
					t.Fatalf("the removed car was announced again after Home Assistant restarted: %.200s", p)
				}
				continue
			case <-quiet:
			}
			break
		}
		devs, err := ws.Devices()
		if err != nil {
			ws = ha.WebSocket()
			devs, err = ws.Devices()
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(devs, func(d hatest.Device) bool { return d.ID == dev.ID || d.Name == carName }) {
			t.Errorf("the removed car is back in Home Assistant after its restart")
		}
	})

	checkMQTTLog(t, ha)
}

// TestExternalBroker runs fleet2mqtt on mosquitto, with Home Assistant's
// MQTT integration on the same mosquitto and every entity enabled: every
// entity as announced, and every entity unavailable once fleet2mqtt stops
// (its offline message on the availability topic).
func TestExternalBroker(t *testing.T) {
	needHomeAssistant(t)
	bin := buildFleet2mqtt(t)
	broker := testenv.Mosquitto(t)
	// Every entity enabled, so that Home Assistant shows the unit of each
	// (TestEmbeddedBroker checks which are disabled by default).
	f := startFleet(t, bin, fmt.Sprintf(`  broker: external
  external:
    url: mqtt://%s
homeassistant:
  enable_obscure: true
`, broker.Addr))
	host, portStr, _ := strings.Cut(broker.Addr, ":")
	port, _ := strconv.Atoi(portStr)
	ha := hatest.Start(t)
	ha.AddMQTT(hatest.Broker{Host: host, Port: port})

	c := f.connectCar(t, vin)
	c.send(t, fullRecord(t, carValues(t)))
	cfg := announced(t, broker.Addr, "", "")
	ws := ha.WebSocket()
	dev := waitDevice(t, ha, ws, cfg)

	t.Run("entities", func(t *testing.T) { checkEntities(t, ha, ws, dev, cfg) })
	t.Run("states", func(t *testing.T) {
		checkStates(t, ha, ws, dev, cfg, func(topic string) string { return retained(t, broker.Addr, topic, "", "") })
	})

	t.Run("active alerts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), deliveryLimit)
		defer cancel()
		started := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		alerts := []telemetry.Alert{{Name: "ChargePortFault", Audiences: []telemetry.Audience{telemetry.AudienceCustomer}, StartedAt: started}}
		if _, err := c.sim.SendAlerts(ctx, alerts); err != nil {
			t.Fatal(err)
		}
		if err := c.sim.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		id := entityIDs(t, ws, dev)["alerts"]
		waitState(t, ha, id, "1")
		list, _ := ha.States()[id].Attributes["alerts"].([]any)
		if len(list) != 1 || fmt.Sprint(list[0].(map[string]any)["name"]) != "ChargePortFault" {
			t.Errorf("%s attributes: %v, want the alert in alerts", id, ha.States()[id].Attributes)
		}
	})

	t.Run("every enum value", func(t *testing.T) {
		// Each enum sensor through all its options; Home Assistant
		// logs an error for a state outside them (checkMQTTLog).
		longest := 0
		for _, e := range telemetry.Enums() {
			longest = max(longest, len(e.Values))
		}
		var last map[string]telemetry.Value
		for i := range longest {
			last = map[string]telemetry.Value{}
			for _, info := range telemetry.Catalog() {
				if info.Component != "none" && info.Enum != nil {
					last[info.Name] = telemetry.EnumOf(info.Enum, info.Enum.Values[i%len(info.Enum.Values)])
				}
			}
			c.send(t, fullRecord(t, last))
		}
		// Home Assistant has handled them all once it shows the last.
		ids := entityIDs(t, ws, dev)
		for name := range last {
			info, _ := telemetry.Lookup(mustField(t, name))
			if id, ok := ids[name]; ok && info.DeviceClass == "enum" {
				waitState(t, ha, id, info.Enum.Values[(longest-1)%len(info.Enum.Values)].Short)
			}
		}
	})

	t.Run("no valid values", func(t *testing.T) {
		// Every signal without a valid value (None on MQTT): every
		// entity of a signal shows unknown, and Home Assistant logs no
		// complaint about the payload (checkMQTTLog).
		none := map[string]telemetry.Value{}
		for _, info := range telemetry.Catalog() {
			if info.Component != "none" {
				none[info.Name] = telemetry.InvalidValue()
			}
		}
		c.send(t, fullRecord(t, none))
		ids := entityIDs(t, ws, dev)
		deadline := time.Now().Add(haLimit)
		for {
			var known []string
			states := ha.States()
			for key, id := range ids {
				// Signals only: the other entities' keys are lower
				// case (streaming, alerts, what fleet2mqtt derives:
				// status, sessions, streaming cost).
				if key == "" || unicode.IsLower(rune(key[0])) {
					continue
				}
				if s := states[id]; s.State != "unknown" {
					known = append(known, fmt.Sprintf("%s=%q", id, s.State))
				}
			}
			if len(known) == 0 {
				t.Logf("every signal's entity unknown")
				break
			}
			if time.Now().After(deadline) {
				sort.Strings(known)
				t.Errorf("%d entities are not unknown with every signal None: %v", len(known), known)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	t.Run("bridge offline", func(t *testing.T) {
		c.stop()
		f.stop()
		ids := entityIDs(t, ws, dev)
		deadline := time.Now().Add(haLimit)
		for {
			var available []string
			states := ha.States()
			for _, id := range ids {
				if s, ok := states[id]; ok && s.State != "unavailable" {
					available = append(available, id+"="+s.State)
				}
			}
			if len(available) == 0 {
				break
			}
			if time.Now().After(deadline) {
				sort.Strings(available)
				t.Fatalf("with fleet2mqtt stopped, still available: %v", available)
			}
			time.Sleep(250 * time.Millisecond)
		}
		// And back when it runs again.
		f.start()
		deadline = time.Now().Add(haLimit)
		for ha.States()[ids["Soc"]].State == "unavailable" {
			if time.Now().After(deadline) {
				t.Fatalf("%s still unavailable %v after fleet2mqtt started again", ids["Soc"], haLimit)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	checkMQTTLog(t, ha)
}

// departure is the car's scheduled departure.
var departure = time.Date(2026, 1, 2, 7, 30, 0, 0, time.UTC)

// needHomeAssistant skips the test in -short mode and, outside CI, when
// Home Assistant is not installed, before anything is built.
func needHomeAssistant(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Home Assistant: not in -short mode")
	}
	hatest.Find(t)
}

// carValues are the values the state checks look for; every other signal
// gets a generic value (fullRecord).
func carValues(t *testing.T) map[string]telemetry.Value {
	return map[string]telemetry.Value{
		"VehicleName":         telemetry.StringValue(carName),
		"Version":             telemetry.StringValue("2025.14.3 abcdef"),
		"Soc":                 telemetry.FloatValue(80.6),
		"Odometer":            telemetry.FloatValue(12345.6),
		"RatedRange":          telemetry.FloatValue(250),
		"VehicleSpeed":        telemetry.FloatValue(60),
		"OutsideTemp":         telemetry.FloatValue(21.5),
		"InsideTemp":          telemetry.InvalidValue(),
		"Gear":                enumValue(t, "Gear", "D"),
		"DetailedChargeState": enumValue(t, "DetailedChargeState", "Charging"),
		"Location":            telemetry.LocationValue(52.520008, 13.404954),
		"DoorState":           telemetry.DoorsValue(telemetry.DriverFront | telemetry.TrunkRear),
		"Locked":              telemetry.BoolValue(true),
		"TpmsHardWarnings":    telemetry.TiresValue(telemetry.RearLeft),
		"ChargePortDoorOpen":  telemetry.BoolValue(true),
		// Points in time: epoch seconds, 0 when not set.
		"ScheduledDepartureTime":     telemetry.IntValue(departure.Unix()),
		"ScheduledChargingStartTime": telemetry.IntValue(0),
	}
}

// discoveryConfig is the car's device-based discovery config as
// fleet2mqtt publishes it.
type discoveryConfig struct {
	Device struct {
		IDs          []string `json:"ids"`
		Name         string   `json:"name"`
		Manufacturer string   `json:"mf"`
		Model        string   `json:"mdl"`
		SWVersion    string   `json:"sw"`
		SerialNumber string   `json:"sn"`
	} `json:"dev"`
	Components map[string]map[string]any `json:"cmps"`
}

// announced waits for the car's discovery config to announce every signal
// of fullRecord, and returns it.
func announced(t *testing.T, addr, user, password string) discoveryConfig {
	t.Helper()
	topic := discoveryTopic
	var want int
	for _, info := range telemetry.Catalog() {
		if info.Component != "none" {
			want++
		}
	}
	deadline := time.Now().Add(deliveryLimit)
	for {
		var cfg discoveryConfig
		raw := retained(t, addr, topic, user, password)
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			// A signal is one or more components (doors, tires); two more:
			// streaming and alerts.
			if len(cfg.Components) >= want+2 && cfg.Device.Name == carName {
				return cfg
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never announced every signal (%d components for %d signals):\n%s", topic, len(cfg.Components), want, raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitDevice waits until Home Assistant has the car's device with as many
// entities as the config has components (or gives up after haLimit and
// lets the entity check say which are missing), and checks the device.
func waitDevice(t *testing.T, ha *hatest.HomeAssistant, ws *hatest.WS, cfg discoveryConfig) hatest.Device {
	t.Helper()
	deadline := time.Now().Add(haLimit)
	for {
		devs, err := ws.Devices()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if !slices.Contains(d.Identifiers, [2]string{"mqtt", cfg.Device.IDs[0]}) {
				continue
			}
			if n := len(componentsOf(t, ws, d)); n >= len(cfg.Components) || time.Now().After(deadline) {
				want := hatest.Device{ID: d.ID, Name: cfg.Device.Name, Manufacturer: cfg.Device.Manufacturer,
					Model: cfg.Device.Model, SWVersion: cfg.Device.SWVersion, SerialNumber: cfg.Device.SerialNumber, Identifiers: d.Identifiers}
				if !reflect.DeepEqual(d, want) {
					t.Errorf("device in Home Assistant:\n%+v\nwant\n%+v", d, want)
				}
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Home Assistant has no device %s after %v:\n%s", cfg.Device.IDs[0], haLimit, ha.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// componentsOf maps the device's entities by discovery component key
// (the unique id after the device id).
func componentsOf(t *testing.T, ws *hatest.WS, dev hatest.Device) map[string]hatest.Entity {
	t.Helper()
	ents, err := ws.Entities(dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]hatest.Entity, len(ents))
	for _, e := range ents {
		out[strings.TrimPrefix(e.UniqueID, "fleet2mqtt_"+vin+"_")] = e
	}
	return out
}

// entityIDs maps component keys to entity ids.
func entityIDs(t *testing.T, ws *hatest.WS, dev hatest.Device) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, e := range componentsOf(t, ws, dev) {
		out[k] = e.EntityID
	}
	return out
}

// checkEntities compares Home Assistant's entity registry with the
// discovery config, component by component.
func checkEntities(t *testing.T, ha *hatest.HomeAssistant, ws *hatest.WS, dev hatest.Device, cfg discoveryConfig) {
	ents := componentsOf(t, ws, dev)
	states := ha.States()
	keys := make([]string, 0, len(cfg.Components))
	for k := range cfg.Components {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var dropped, otherIDs []string
	var disabled, units int // for the summary
	for _, key := range keys {
		c := cfg.Components[key]
		e, ok := ents[key]
		if !ok {
			dropped = append(dropped, key)
			continue
		}
		var problems []string
		check := func(what string, got, want any) {
			if !reflect.DeepEqual(got, want) {
				problems = append(problems, fmt.Sprintf("%s %v, announced %v", what, got, want))
			}
		}
		platform, _, _ := strings.Cut(e.EntityID, ".")
		check("component", platform, c["p"])
		check("name", deref(e.OriginalName), c["name"])
		check("device class", deref(e.OriginalDeviceClass), str(c["device_class"]))
		check("entity category", deref(e.EntityCategory), str(c["entity_category"]))
		enabled := c["enabled_by_default"] != false
		check("enabled", e.DisabledBy == nil, enabled)
		if e.DisabledBy != nil && *e.DisabledBy != "integration" {
			problems = append(problems, "disabled by "+*e.DisabledBy)
		}
		check("state class", str(e.Capabilities["state_class"]), str(c["state_class"]))
		check("icon", deref(e.OriginalIcon), str(c["icon"]))
		// Home Assistant records the display precision when it adds the
		// entity, which it does not for disabled ones.
		if _, shown := states[e.EntityID]; shown && c["suggested_display_precision"] != nil {
			p := c["suggested_display_precision"]
			sensorOpts, _ := e.Options["sensor"].(map[string]any)
			check("display precision", sensorOpts["suggested_display_precision"], p)
		}
		if opts, ok := c["options"]; ok {
			check("options", e.Capabilities["options"], opts)
		}
		if !enabled {
			disabled++
		}
		if s, ok := states[e.EntityID]; ok && c["unit_of_measurement"] != nil {
			units++
			check("unit", s.Attributes["unit_of_measurement"], shownUnit(fmt.Sprint(c["unit_of_measurement"])))
		} else if enabled && c["p"] == "sensor" && c["unit_of_measurement"] != nil {
			problems = append(problems, "no state")
		}
		if want, _ := c["default_entity_id"].(string); want != "" && e.EntityID != want {
			otherIDs = append(otherIDs, e.EntityID+" (suggested "+want+")")
		}
		if len(problems) > 0 {
			t.Errorf("%s (%s): %s", key, e.EntityID, strings.Join(problems, "; "))
		}
	}
	t.Logf("compared %d entities with their components (%d disabled by default, %d units as shown)", len(keys)-len(dropped), disabled, units)
	if len(otherIDs) > 0 {
		// Not a failure: Home Assistant only knows default_entity_id from
		// 2025.10 on, and older releases make the id from the names.
		t.Logf("%d of %d entity ids differ from the suggested ones, e.g. %s", len(otherIDs), len(keys), otherIDs[0])
	}
	if len(dropped) > 0 {
		t.Errorf("Home Assistant has no entity for %d of %d components: %v", len(dropped), len(keys), dropped)
	}
	for key, e := range ents {
		if _, ok := cfg.Components[key]; !ok {
			t.Errorf("entity %s (%s) was not announced", e.EntityID, e.UniqueID)
		}
	}
}

// shownUnit is the unit Home Assistant shows a value announced in unit in,
// with the metric unit system of the test's configuration.
func shownUnit(unit string) string {
	switch unit {
	case "mi":
		return "km"
	case "mph":
		return "km/h"
	}
	return unit
}

// checkStates checks the states Home Assistant shows for carValues.
func checkStates(t *testing.T, ha *hatest.HomeAssistant, ws *hatest.WS, dev hatest.Device, cfg discoveryConfig, topic func(string) string) {
	ids := entityIDs(t, ws, dev)
	id := func(key string) string {
		t.Helper()
		e, ok := ids[key]
		if !ok {
			t.Fatalf("no entity for %s", key)
		}
		return e
	}
	// Home Assistant subscribes to each entity's topic as it adds the
	// entity, so the retained values arrive one by one: wait for each.
	deadline := time.Now().Add(haLimit)
	states := ha.States()
	waitFor := func(key string, ok func(hatest.State) bool) hatest.State {
		t.Helper()
		for !ok(states[id(key)]) && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			states = ha.States()
		}
		return states[id(key)]
	}
	number := func(key string, want float64, unit string) {
		t.Helper()
		matches := func(s hatest.State) bool {
			got, err := strconv.ParseFloat(s.State, 64)
			return err == nil && math.Abs(got-want) <= math.Abs(want)*0.001 && s.Attributes["unit_of_measurement"] == unit
		}
		if s := waitFor(key, matches); !matches(s) {
			st := fmt.Sprint(cfg.Components[key]["state_topic"])
			t.Errorf("%s: %q %v, want %.2f %s (%s: %q)", s.EntityID, s.State, s.Attributes["unit_of_measurement"], want, unit, st, topic(st))
		}
	}
	const kmPerMile = 1.609344
	number("Soc", 80.6, "%")
	number("Odometer", 12345.6*kmPerMile, "km")
	number("RatedRange", 250*kmPerMile, "km")
	number("VehicleSpeed", 60*kmPerMile, "km/h")
	number("OutsideTemp", 21.5, "°C")

	want := map[string]string{
		"InsideTemp":                  "unknown",
		"Gear":                        "D",
		"DetailedChargeState":         "Charging",
		"DoorState_DriverFront":       "on",
		"DoorState_PassengerFront":    "off",
		"DoorState_TrunkRear":         "on",
		"DoorState_TrunkFront":        "off",
		"Locked":                      "off", // lock class: off is locked
		"ChargePortDoorOpen":          "on",
		"TpmsHardWarnings_rear_left":  "on",
		"TpmsHardWarnings_front_left": "off",
		"streaming":                   "on",
		"Location":                    "not_home",
		"ScheduledDepartureTime":      departure.Format("2006-01-02T15:04:05+00:00"),
		"ScheduledChargingStartTime":  "unknown",
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		if got := waitFor(key, func(s hatest.State) bool { return s.State == want[key] }).State; got != want[key] {
			st := fmt.Sprint(cfg.Components[key]["state_topic"])
			t.Errorf("%s: %q, want %q (%s: %q)", id(key), got, want[key], st, topic(st))
		}
	}
	for _, key := range []string{"Gear", "DetailedChargeState"} {
		s := states[id(key)]
		if opts, _ := s.Attributes["options"].([]any); !slices.Contains(opts, any(s.State)) {
			t.Errorf("%s: %q is not among its options %v", s.EntityID, s.State, s.Attributes["options"])
		}
	}
	loc := states[id("Location")].Attributes
	if lat, lon, src := loc["latitude"], loc["longitude"], loc["source_type"]; lat != 52.520008 || lon != 13.404954 || src != "gps" {
		t.Errorf("%s: latitude %v, longitude %v, source %v, want 52.520008, 13.404954, gps (attributes %v)", id("Location"), lat, lon, src, loc)
	}
	// Every entity Home Assistant shows has a state: none is unavailable
	// while fleet2mqtt runs, whatever its value.
	for key, e := range ids {
		if s, ok := states[e]; ok && s.State == "unavailable" {
			t.Errorf("%s (%s) is unavailable", e, key)
		}
	}
}

// waitState waits until Home Assistant shows entity in state want.
func waitState(t *testing.T, ha *hatest.HomeAssistant, entity, want string) {
	t.Helper()
	if entity == "" {
		t.Fatal("no such entity")
	}
	deadline := time.Now().Add(haLimit)
	for {
		s, ok := ha.States()[entity]
		if ok && s.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q after %v, want %q", entity, s.State, haLimit, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkMQTTLog stops Home Assistant, so that it has handled every message,
// and fails the test for every warning or error it logged about MQTT
// entities, our payloads or the MQTT integration, except records whose
// first line ends with one of expected (what the test made happen, such
// as the broker going away).
func checkMQTTLog(t *testing.T, ha *hatest.HomeAssistant, expected ...string) {
	t.Helper()
	ha.Stop()
	// When Home Assistant removes a device announced by device-based
	// discovery, it clears the retained config once per entity itself
	// (an empty retained message on the device's topic), and then warns
	// about each of its own messages as it receives them back.
	ownEcho := "No device components to cleanup for fleet2mqtt_" + vin + ","
	problems := ha.Problems(func(logger, record string) bool {
		first, _, _ := strings.Cut(record, "\n")
		if strings.Contains(first, ownEcho) {
			return false
		}
		for _, e := range expected {
			if strings.HasSuffix(first, e) {
				return false
			}
		}
		return strings.HasPrefix(logger, "homeassistant.components.mqtt") ||
			strings.Contains(strings.ToLower(first), "mqtt") || strings.Contains(first, vin)
	})
	for _, p := range problems {
		t.Errorf("Home Assistant logged:\n%s", p)
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func str(v any) any {
	if v == nil {
		return nil
	}
	return v
}
