package discovery

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func allControls() Controls {
	return Controls{Enabled: true, Charging: true, Climate: true, Security: true, Access: true, Alerts: true}
}

func controlComponents(t *testing.T, cfg Config, v Vehicle) map[string]haComponent {
	t.Helper()
	c := decode(t, Messages(cfg, testBridge, v)[0].Payload)
	out := map[string]haComponent{}
	for key, raw := range c.Cmps {
		if strings.HasPrefix(key, controlPrefix) {
			out[key] = haComponent(raw)
		}
	}
	return out
}

func TestControlsGolden(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Controls = allControls()
	golden(t, "controls", Messages(cfg, testBridge, sampleCar(t)))
}

// TestControlsFollowTheCommandsSection: nothing without commands on;
// each category announces its own controls; wake with any.
func TestControlsFollowTheCommandsSection(t *testing.T) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", Streaming: allFields()}
	keys := func(c Controls) []string {
		cfg := DefaultConfig()
		cfg.Controls = c
		var out []string
		for k := range controlComponents(t, cfg, v) {
			out = append(out, strings.TrimPrefix(k, controlPrefix))
		}
		slices.Sort(out)
		return out
	}
	if got := keys(Controls{Charging: true, Climate: true, Security: true, Access: true, Alerts: true}); len(got) != 0 {
		t.Errorf("commands off: announced %v", got)
	}
	for _, tc := range []struct {
		c    Controls
		want []string
	}{
		{Controls{Enabled: true}, []string{"wake"}},
		{Controls{Enabled: true, Charging: true}, []string{"charge_limit", "charge_port", "charging", "charging_amps", "wake"}},
		{Controls{Enabled: true, Security: true}, []string{"lock", "sentry", "wake"}},
		{Controls{Enabled: true, Access: true}, []string{"frunk", "trunk", "wake"}},
		{Controls{Enabled: true, Alerts: true}, []string{"flash", "honk", "wake"}},
		{Controls{Enabled: true, Climate: true}, []string{"climate", "seat_heater_front_left", "seat_heater_front_right",
			"seat_heater_rear_center", "seat_heater_rear_left", "seat_heater_rear_right", "steering_wheel_heater", "wake"}},
	} {
		if got := keys(tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: announced %v, want %v", tc.c, got, tc.want)
		}
	}
	// Seat heaters only where the car has the seat's signal.
	cfg := DefaultConfig()
	cfg.Controls = allControls()
	got := controlComponents(t, cfg, sampleCar(t))
	if _, ok := got[controlPrefix+"seat_heater_front_left"]; !ok {
		t.Error("the front left seat heater is missing though the car streams SeatHeaterLeft")
	}
	if _, ok := got[controlPrefix+"seat_heater_rear_left"]; ok {
		t.Error("a rear seat heater is announced for a car that does not stream it")
	}
}

// TestControlsAreValid checks every control against what Home
// Assistant's MQTT platforms require (their documentation): a command
// topic, a state from a signal topic of the catalog (never optimistic),
// the platform's own members, and templates that let None through and
// name only values the signal has.
func TestControlsAreValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Controls = allControls()
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Streaming: allFields()}
	comps := controlComponents(t, cfg, v)
	if len(comps) != len(controls) {
		t.Fatalf("%d controls announced, want all %d", len(comps), len(controls))
	}
	carPrefix := testBridge.Prefix + "/" + v.VIN + "/"
	signalOf := func(key, topic string) (telemetry.FieldInfo, bool) {
		name, ok := strings.CutPrefix(topic, carPrefix)
		f, known := telemetry.FieldByName(name)
		if !ok || !known {
			t.Errorf("%s: %q is not a signal topic of the car", key, topic)
			return telemetry.FieldInfo{}, false
		}
		info, _ := telemetry.Lookup(f)
		return info, true
	}
	for key, c := range comps {
		p := c.str("p")
		if !strings.HasPrefix(c.str("unique_id"), "fleet2mqtt_"+v.VIN+"_"+controlPrefix) || c.str("name") == "" {
			t.Errorf("%s: unique_id %q or name missing", key, c.str("unique_id"))
		}
		if want := p + ".ellie_" + strings.TrimPrefix(key, controlPrefix); c.str("default_entity_id") != want {
			t.Errorf("%s: default_entity_id %q, want %q", key, c.str("default_entity_id"), want)
		}
		if _, ok := c["optimistic"]; ok {
			t.Errorf("%s: optimistic is set", key)
		}
		commandTopics := []string{c.str("command_topic")}
		stateTopics := []string{c.str("state_topic")}
		switch p {
		case "switch":
			need(t, key, c, "payload_on", "payload_off", "state_on", "state_off")
		case "number":
			min, _ := c["min"].(float64)
			max, _ := c["max"].(float64)
			step, _ := c["step"].(float64)
			if !(min < max) || step <= 0 || !slices.Contains([]string{"auto", "box", "slider"}, c.str("mode")) {
				t.Errorf("%s: min %v max %v step %v mode %q", key, c["min"], c["max"], c["step"], c.str("mode"))
			}
		case "select":
			opts, _ := c["options"].([]any)
			if len(opts) != len(SeatHeatOptions) {
				t.Errorf("%s: options %v", key, c["options"])
			}
		case "lock":
			need(t, key, c, "payload_lock", "payload_unlock", "state_locked", "state_unlocked")
		case "cover":
			need(t, key, c, "payload_open", "payload_close", "state_open", "state_closed")
			if dc := c.str("device_class"); !slices.Contains([]string{"awning", "blind", "curtain", "damper", "door", "garage", "gate", "shade", "shutter", "window"}, dc) {
				t.Errorf("%s: cover device_class %q", key, dc)
			}
		case "button":
			need(t, key, c, "payload_press")
			stateTopics = nil
		case "climate":
			commandTopics = []string{c.str("mode_command_topic"), c.str("temperature_command_topic")}
			// Without mode_state_topic Home Assistant ignores the
			// template and shows the last mode it commanded.
			stateTopics = []string{c.str("mode_state_topic"), c.str("current_temperature_topic"), c.str("temperature_state_topic")}
			if c.str("mode_state_topic") != carPrefix+"HvacPower" {
				t.Errorf("%s: mode_state_topic %q, want the car's HvacPower topic", key, c.str("mode_state_topic"))
			}
			modes, _ := c["modes"].([]any)
			for _, m := range modes {
				if !slices.Contains([]any{"auto", "off", "cool", "heat", "dry", "fan_only", "heat_cool"}, m) {
					t.Errorf("%s: mode %v", key, m)
				}
			}
			if c.str("temperature_unit") != "C" || c.str("mode_state_template") == "" {
				t.Errorf("%s: temperature_unit %q, mode_state_template %q", key, c.str("temperature_unit"), c.str("mode_state_template"))
			}
		default:
			t.Errorf("%s: platform %q", key, p)
		}
		for _, ct := range commandTopics {
			if !strings.HasPrefix(ct, carPrefix+"set/") {
				t.Errorf("%s: command topic %q is not under %sset/", key, ct, carPrefix)
			}
		}
		for _, st := range stateTopics {
			signalOf(key, st)
		}
		for _, member := range []string{"value_template", "mode_state_template"} {
			tpl := c.str(member)
			if tpl == "" {
				continue
			}
			if !strings.Contains(tpl, "'None'") {
				t.Errorf("%s: %s %q does not let None through", key, member, tpl)
			}
			topic := c.str("state_topic")
			if member == "mode_state_template" {
				topic = c.str("mode_state_topic")
			}
			if info, ok := signalOf(key, topic); ok && info.Enum != nil {
				for _, word := range quotedWords(tpl) {
					if !slices.ContainsFunc(info.Enum.Values, func(e telemetry.EnumValue) bool { return e.Short == word }) {
						t.Errorf("%s: %s names %q, which %s never is", key, member, word, info.Name)
					}
				}
			}
		}
	}
}

func need(t *testing.T, key string, c haComponent, members ...string) {
	t.Helper()
	for _, m := range members {
		if c.str(m) == "" {
			t.Errorf("%s: %s missing", key, m)
		}
	}
}

var quoted = regexp.MustCompile(`'([A-Za-z]+)'`)

// quotedWords are the capitalized words a template compares the signal
// with (not its own outputs ON, OFF, None).
func quotedWords(tpl string) []string {
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(tpl, -1) {
		w := m[1]
		if w == "ON" || w == "OFF" || w == "None" || w[0] < 'A' || w[0] > 'Z' {
			continue
		}
		out = append(out, w)
	}
	return out
}

func TestRemoveMessagesKeepsControls(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Controls = allControls()
	v := sampleCar(t)
	announced, err := ParseAnnounced(Messages(cfg, testBridge, v)[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := RemoveMessages(cfg, testBridge, v, announced); msgs != nil {
		t.Errorf("controls still selected are removed: %d messages", len(msgs))
	}
	// Commands turned off: the controls go.
	msgs := RemoveMessages(DefaultConfig(), testBridge, v, announced)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	removed := decode(t, msgs[0].Payload)
	if len(removed.Cmps[controlPrefix+"charging"]) != 1 {
		t.Errorf("control_charging not removed: %v", removed.Cmps[controlPrefix+"charging"])
	}
}
