package discovery

import (
	"bytes"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// loadConfig decodes a configuration section over the defaults, strictly,
// as the command does.
func loadConfig(t *testing.T, src string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, err
	}
	// As the configuration file's owner reports it.
	return cfg, configerr.Prefix("homeassistant", cfg.Validate())
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(t, "{}")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled || cfg.Prefix != "homeassistant" || cfg.Instance != "" || cfg.EnableObscure ||
		cfg.StatusTopicOrDefault() != "homeassistant/status" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestConfigDecode(t *testing.T) {
	cfg, err := loadConfig(t, `
enabled: false
prefix: ha/discovery
status_topic: ha/status
instance: lab-2
include: [Soc, DoorState]
exclude: [Gear]
enable_obscure: true
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled || cfg.Prefix != "ha/discovery" || cfg.StatusTopicOrDefault() != "ha/status" ||
		cfg.Instance != "lab-2" || !slices.Equal(cfg.Include, []string{"Soc", "DoorState"}) ||
		!slices.Equal(cfg.Exclude, []string{"Gear"}) || !cfg.EnableObscure {
		t.Errorf("decoded %+v", cfg)
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct{ src, err string }{
		{`prefix: ""`, `homeassistant.prefix: must be set: use one or more topic levels without wildcards, such as "homeassistant"`},
		{`prefix: home/#`, `homeassistant.prefix: "home/#" holds an MQTT wildcard (+ or #): use one or more topic levels without wildcards, such as "homeassistant"`},
		{`prefix: /ha`, `homeassistant.prefix: "/ha" starts or ends with '/': use one or more topic levels without wildcards, such as "homeassistant"`},
		{`prefix: $SYS`, `homeassistant.prefix: "$SYS" starts with '$', which brokers reserve for themselves: use one or more topic levels without wildcards, such as "homeassistant"`},
		{`status_topic: ha//status`, `homeassistant.status_topic: "ha//status" has an empty topic level: use one or more topic levels without wildcards, such as "homeassistant"`},
		{`instance: my_site`, `homeassistant.instance: "my_site" may hold only letters, digits and '-', such as "test"`},
		{`instance: abcdefghijabcdefghijabcdefghijabc`, `homeassistant.instance: "abcdefghijabcdefghijabcdefghijabc" is longer than 32 characters`},
		{`include: [Soc, battery_level]`, `homeassistant.include[1]: "battery_level" is not a signal name; did you mean "BatteryLevel"?`},
		{`exclude: [Nonsense]`, `homeassistant.exclude[0]: "Nonsense" is not a signal name: use protocol names such as "Soc" or "DetailedChargeState"`},
		{`exclude: [Experimental_1]`, `homeassistant.exclude[0]: "Experimental_1" is never announced to Home Assistant, so listing it has no effect`},
		{"include: [Soc]\nexclude: [Soc]", `homeassistant.include and homeassistant.exclude: "Soc" is in both; keep it in one`},
		{`enable: true`, "yaml: unmarshal errors:\n  line 1: field enable not found in type discovery.Config"},
	}
	for _, tt := range tests {
		_, err := loadConfig(t, tt.src)
		if err == nil || err.Error() != tt.err {
			t.Errorf("%s:\n got  %v\n want %s", tt.src, err, tt.err)
		}
	}
}
