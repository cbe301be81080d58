package bridge

import (
	"bytes"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "tesla" || cfg.QoS != 1 || !cfg.Retain || !cfg.StateTopic || cfg.Compat.Enabled || cfg.Compat.Base != "telemetry" || cfg.Compat.Retain {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	if got := cfg.BridgeStateTopic(); got != "tesla/bridge/state" {
		t.Errorf("BridgeStateTopic = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		err    string // exact message; empty means valid
	}{
		{"several levels", func(c *Config) { c.Prefix = "home/tesla" }, ""},
		{"qos 0", func(c *Config) { c.QoS = 0 }, ""},
		{"compat", func(c *Config) { c.Compat.Enabled = true }, ""},
		{"empty prefix", func(c *Config) { c.Prefix = "" },
			`mqtt.prefix: must be set: use one or more topic levels without wildcards, such as "tesla"`},
		{"plus", func(c *Config) { c.Prefix = "tesla/+" },
			`mqtt.prefix: "tesla/+" holds an MQTT wildcard (+ or #): use one or more topic levels without wildcards, such as "tesla"`},
		{"hash", func(c *Config) { c.Prefix = "#" },
			`mqtt.prefix: "#" holds an MQTT wildcard (+ or #): use one or more topic levels without wildcards, such as "tesla"`},
		{"leading slash", func(c *Config) { c.Prefix = "/tesla" },
			`mqtt.prefix: "/tesla" starts or ends with '/': use one or more topic levels without wildcards, such as "tesla"`},
		{"trailing slash", func(c *Config) { c.Prefix = "tesla/" },
			`mqtt.prefix: "tesla/" starts or ends with '/': use one or more topic levels without wildcards, such as "tesla"`},
		{"dollar", func(c *Config) { c.Prefix = "$SYS" },
			`mqtt.prefix: "$SYS" starts with '$', which brokers reserve for themselves: use one or more topic levels without wildcards, such as "tesla"`},
		{"empty level", func(c *Config) { c.Prefix = "a//b" },
			`mqtt.prefix: "a//b" has an empty topic level: use one or more topic levels without wildcards, such as "tesla"`},
		{"nul", func(c *Config) { c.Prefix = "a\x00" },
			`mqtt.prefix: "a\x00" is not valid UTF-8 text without NUL: use one or more topic levels without wildcards, such as "tesla"`},
		{"qos 2", func(c *Config) { c.QoS = 2 },
			`mqtt.qos: 2 is not supported: use 1 (at least once; a frame is acknowledged to the car only after the broker acknowledged it) or 0`},
		{"qos 7", func(c *Config) { c.QoS = 7 },
			`mqtt.qos: 7 is not a QoS level: use 1 (default) or 0`},
		{"compat base", func(c *Config) { c.Compat.Enabled = true; c.Compat.Base = "telemetry/" },
			`mqtt.compat.base: "telemetry/" starts or ends with '/': use one or more topic levels without wildcards, such as "tesla"`},
		{"compat base unused", func(c *Config) { c.Compat.Base = "" }, ""},
		{"replica", func(c *Config) { c.Replica = "fleet2mqtt-0_A" }, ""},
		{"replica with a slash", func(c *Config) { c.Replica = "a/b" },
			`mqtt.replica: "a/b" may hold only letters, digits, '-' and '_', such as "a" or "fleet2mqtt-0"`},
		{"replica with a wildcard", func(c *Config) { c.Replica = "+" },
			`mqtt.replica: "+" may hold only letters, digits, '-' and '_', such as "a" or "fleet2mqtt-0"`},
		{"replica too long", func(c *Config) { c.Replica = strings.Repeat("r", 65) },
			`mqtt.replica: "` + strings.Repeat("r", 65) + `" is longer than 64 characters`},
		{"exclusive without enabled", func(c *Config) { c.Compat.Exclusive = true },
			`mqtt.compat.exclusive: true needs mqtt.compat.enabled: true`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			// As the configuration file's owner reports it.
			err := configerr.Prefix("mqtt", cfg.Validate())
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err != "" && err == nil:
				t.Fatalf("no error, want %q", tt.err)
			case tt.err != "" && err.Error() != tt.err:
				t.Fatalf("error\n got %q\nwant %q", err, tt.err)
			}
			if _, nerr := New(cfg, discard{}, nil); (nerr == nil) != (err == nil) {
				t.Errorf("New and Validate disagree: %v vs %v", nerr, err)
			}
		})
	}
}

// TestConfigYAML decodes a section over the defaults, strictly, as the
// command does.
func TestConfigYAML(t *testing.T) {
	src := "prefix: home/tesla\nqos: 0\ncompat:\n  enabled: true\n"
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Prefix, want.QoS, want.Compat.Enabled = "home/tesla", 0, true
	if cfg != want {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}

	dec = yaml.NewDecoder(bytes.NewReader([]byte("prefx: x\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil || !strings.Contains(err.Error(), "prefx") {
		t.Errorf("unknown key not reported: %v", err)
	}
}
