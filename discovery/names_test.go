package discovery

import (
	"slices"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"Soc", []string{"Soc"}},
		{"DCChargingPower", []string{"DC", "Charging", "Power"}},
		{"DiHeatsinkTREL", []string{"Di", "Heatsink", "TREL"}},
		{"SemitruckTpmsPressureRe1L0", []string{"Semitruck", "Tpms", "Pressure", "Re1", "L0"}},
		{"Setting24HourTime", []string{"Setting24", "Hour", "Time"}},
		{"Experimental_12", []string{"Experimental", "12"}},
		{"HvacACEnabled", []string{"Hvac", "AC", "Enabled"}},
		{"BMSState", []string{"BMS", "State"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := splitWords(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEntityNames(t *testing.T) {
	tests := []struct{ field, name, snake string }{
		{"BatteryLevel", "Battery level", "battery_level"},
		{"DCChargingPower", "DC charging power", "dc_charging_power"},
		{"Soc", "State of charge", "soc"},
		{"HvacAutoMode", "HVAC auto mode", "hvac_auto_mode"},
		{"DiHeatsinkTREL", "Rear left motor heatsink temperature", "di_heatsink_trel"},
		{"DiStateF", "Front motor state", "di_state_f"},
		{"DiVBatR", "Rear motor battery voltage", "di_v_bat_r"},
		{"DiTorquemotor", "Drive torque request", "di_torquemotor"},
		{"TpmsPressureFl", "Tire pressure front left", "tpms_pressure_fl"},
		{"GpsState", "GPS signal", "gps_state"},
	}
	for _, tt := range tests {
		if got := entityName(tt.field); got != tt.name {
			t.Errorf("entityName(%q) = %q, want %q", tt.field, got, tt.name)
		}
		if got := snakeName(tt.field); got != tt.snake {
			t.Errorf("snakeName(%q) = %q, want %q", tt.field, got, tt.snake)
		}
	}
}

// TestEveryNameReadable checks the names of all announced fields: no
// name twice on one car, no leftover protocol abbreviations, every
// override for a real field.
func TestEveryNameReadable(t *testing.T) {
	seen := map[string]string{}
	for _, es := range specs() {
		for _, e := range es {
			name := staticName(t, e)
			if prev, ok := seen[name]; ok {
				t.Errorf("%s and %s are both named %q", prev, e.key, name)
			}
			seen[name] = e.key
		}
	}
	for _, bad := range []string{"Di ", "Tpms", "Semitruck", " fl", " rr", "Qty"} {
		for name, key := range seen {
			if len(name) >= len(bad) && contains(name, bad) {
				t.Errorf("%s is named %q, which holds %q", key, name, bad)
			}
		}
	}
	for field := range nameOverrides {
		if _, ok := telemetry.FieldByName(field); !ok {
			t.Errorf("name override for unknown field %q", field)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// staticName returns the name an entity is announced with.
func staticName(t *testing.T, e entity) string {
	t.Helper()
	c := decode(t, []byte(`{"cmps":{"x":{"p":"x"`+string(e.static)+`}}}`))
	name, _ := c.Cmps["x"]["name"].(string)
	if name == "" {
		t.Fatalf("%s has no name", e.key)
	}
	return name
}

func TestSlug(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Ellie", "ellie"},
		{"Model 3", "model_3"},
		{"Zoë's  Car!", "zoes_car"},
		{"  --Blue__Thunder--  ", "blue_thunder"},
		{"🚗", ""},
		{"Ærø", "ro"},
		{"5YJ3E1EA7KF000001", "5yj3e1ea7kf000001"},
	}
	for _, tt := range tests {
		if got := slug(tt.in); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
