package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExampleConfigIsTheDefault keeps config.example.yaml honest: every key
// it shows exists, and its values are the defaults.
func TestExampleConfigIsTheDefault(t *testing.T) {
	raw, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := Default()
	if err := Decode(raw, &got); err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	want := Default()
	if !reflect.DeepEqual(normalized(got), normalized(want)) {
		t.Errorf("config.example.yaml differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}

// normalized treats empty and nil lists alike.
func normalized(c Config) Config {
	if len(c.Vehicle.TLS.ClientCAFiles) == 0 {
		c.Vehicle.TLS.ClientCAFiles = nil
	}
	if len(c.MQTT.Embedded.Users) == 0 {
		c.MQTT.Embedded.Users = nil
	}
	if len(c.Vehicle.ACME.Hostnames) == 0 {
		c.Vehicle.ACME.Hostnames = nil
	}
	if len(c.HomeAssistant.Include) == 0 {
		c.HomeAssistant.Include = nil
	}
	if len(c.HomeAssistant.Exclude) == 0 {
		c.HomeAssistant.Exclude = nil
	}
	if len(c.MQTT.Embedded.WebSocket.AllowedOrigins) == 0 {
		c.MQTT.Embedded.WebSocket.AllowedOrigins = nil
	}
	return c
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "vehicle:\n  listn: :443\n", `line 2: unknown key "listn"`},
		{"bad type", "mqtt:\n  qos: high\n", "cannot unmarshal"},
		{"bad qos", "mqtt:\n  qos: 2\n", "mqtt.qos: 2 is not supported"},
		{"bad broker", "mqtt:\n  broker: cloud\n", `mqtt.broker: "cloud" is not embedded or external`},
		{"external without url", "mqtt:\n  broker: external\n", "mqtt.external.url: missing"},
		{"bad level", "log:\n  level: loud\n", `log.level: "loud" is not debug, info, warn or error`},
		{"bad listen", "vehicle:\n  listen: nowhere\n", `vehicle.listen: "nowhere" is not host:port`},
		// Every listen key: what a listener would refuse at start.
		{"http port out of range", "http:\n  listen: 127.0.0.1:99999\n", `http.listen: "127.0.0.1:99999": port 99999 is out of range (0 to 65535)`},
		{"http bad host", "http:\n  listen: 'no host!:8080'\n", `http.listen: "no host!:8080": "no host!" is neither an IP address nor a host name`},
		{"vehicle port out of range", "vehicle:\n  listen: ':65536'\n", `vehicle.listen: ":65536": port 65536 is out of range (0 to 65535)`},
		{"vehicle bad IPv6", "vehicle:\n  listen: '[::g]:443'\n", `vehicle.listen: "[::g]:443": "::g" is not an IPv6 address`},
		{"mqtt port out of range", "mqtt:\n  embedded:\n    listen: 127.0.0.1:99999\n", `mqtt.embedded.listen: "127.0.0.1:99999": port 99999 is out of range`},
		{"mqtt tls bad host", "mqtt:\n  embedded:\n    tls:\n      listen: 'a_b:8883'\n", `mqtt.embedded.tls.listen: "a_b:8883": "a_b" is neither an IP address nor a host name`},
		{"mqtt websocket port out of range", "mqtt:\n  embedded:\n    websocket:\n      listen: ':70000'\n", `mqtt.embedded.websocket.listen: ":70000": port 70000 is out of range`},
		{"bad anonymous", "mqtt:\n  embedded:\n    allow_anonymous: sometimes\n", `mqtt.embedded.allow_anonymous: "sometimes"`},
		{"replica with the embedded broker", "mqtt:\n  replica: a\n", `mqtt.replica: "a" needs mqtt.broker: external`},
		{"bad replica", "mqtt:\n  broker: external\n  replica: a/b\n  external:\n    url: mqtt://127.0.0.1\n", `mqtt.replica: "a/b" may hold only letters, digits, '-' and '_'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadConfig: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
