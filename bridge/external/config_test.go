package external

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"mqtt://broker", "mqtt://broker:1883"},
		{"tcp://broker:1884", "mqtt://broker:1884"},
		{"MQTT://broker/", "mqtt://broker:1883"},
		{"mqtts://broker", "mqtts://broker:8883"},
		{"ssl://broker", "mqtts://broker:8883"},
		{"tls://broker:9000", "mqtts://broker:9000"},
		{"ws://broker", "ws://broker:80/mqtt"},
		{"ws://broker:9001/", "ws://broker:9001/"},
		{"wss://broker/custom/path", "wss://broker:443/custom/path"},
		{"mqtt://[::1]:1883", "mqtt://[::1]:1883"},
	}
	for _, tt := range tests {
		u, err := parseURL(tt.in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.in, err)
			continue
		}
		if got := u.String(); got != tt.want {
			t.Errorf("parseURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	valid := func(mod func(*Config)) Config {
		c := Config{URL: "mqtt://broker"}.WithDefaults()
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string // error text; "" for valid
	}{
		{"defaults", valid(func(*Config) {}), ""},
		{"tls with CA", valid(func(c *Config) { c.URL, c.CAFile = "mqtts://broker", ca }), ""},
		{"missing url", valid(func(c *Config) { c.URL = "" }), "url: missing; set it to the broker, e.g. mqtt://192.168.1.10:1883 (schemes: mqtt, mqtts, ws, wss (aliases: tcp, ssl, tls))"},
		{"bad scheme", valid(func(c *Config) { c.URL = "http://broker" }), `url "http://broker": scheme "http" is not one of mqtt, mqtts, ws, wss (aliases: tcp, ssl, tls)`},
		{"no host", valid(func(c *Config) { c.URL = "mqtt://:1883" }), `url "mqtt://:1883": missing host, e.g. mqtt://192.168.1.10`},
		{"bad port", valid(func(c *Config) { c.URL = "mqtt://broker:70000" }), `url "mqtt://broker:70000": port "70000" must be from 1 to 65535`},
		{"credentials in url", valid(func(c *Config) { c.URL = "mqtt://u:secret@broker" }), `url "mqtt://u:xxxxx@broker": credentials in the URL are not allowed; use username and password`},
		{"path on mqtt", valid(func(c *Config) { c.URL = "mqtt://broker/x" }), `url "mqtt://broker/x": a path is only allowed for ws:// and wss://`},
		{"query", valid(func(c *Config) { c.URL = "ws://broker/mqtt?x=1" }), `url "ws://broker/mqtt?x=1": query and fragment are not allowed`},
		{"CA without TLS", valid(func(c *Config) { c.CAFile = ca }), fmt.Sprintf("ca_file %q: only used with mqtts:// or wss:// URLs, but url is mqtt://", ca)},
		{"keep alive too short", valid(func(c *Config) { c.KeepAlive = 500 * time.Millisecond }), "keep_alive 500ms: must be whole seconds from 1s to 18h12m15s"},
		{"keep alive too long", valid(func(c *Config) { c.KeepAlive = 24 * time.Hour }), "keep_alive 24h0m0s: must be whole seconds from 1s to 18h12m15s"},
		{"negative connect timeout", valid(func(c *Config) { c.ConnectTimeout = -time.Second }), "connect_timeout -1s: must be positive, e.g. 10s"},
		{"negative queue", valid(func(c *Config) { c.QueueSize = -1 }), "queue_size -1: must be from 1 to 1048576"},
		{"fractional session expiry", valid(func(c *Config) { c.SessionExpiry = 1500 * time.Millisecond }), "session_expiry 1.5s: must be whole seconds from 1s to 1193046h28m15s"},
		{"client id with NUL", valid(func(c *Config) { c.ClientID = "a\x00b" }), `client_id "a\x00b": must be 1 to 65535 bytes of UTF-8 text without NUL`},
		{"username with NUL", valid(func(c *Config) { c.Username = "a\x00" }), `username "a\x00": must be UTF-8 text without NUL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate() = %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{URL: "mqtt://broker"}.WithDefaults()
	if c.KeepAlive != DefaultKeepAlive || c.ConnectTimeout != DefaultConnectTimeout ||
		c.QueueSize != DefaultQueueSize || c.SessionExpiry != DefaultSessionExpiry {
		t.Errorf("defaults not applied: %+v", c)
	}
	if !strings.HasPrefix(c.ClientID, "fleet2mqtt-") || len(c.ClientID) <= len("fleet2mqtt-") {
		t.Errorf("default client id %q", c.ClientID)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	in := `
url: mqtts://broker.lan
username: bridge
password: "s3cret"
ca_file: /etc/ca.pem
client_id: garage
keep_alive: 45s
connect_timeout: 5s
queue_size: 500
session_expiry: 2h
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := Config{URL: "mqtts://broker.lan", Username: "bridge", Password: "s3cret", CAFile: "/etc/ca.pem",
		ClientID: "garage", KeepAlive: 45 * time.Second, ConnectTimeout: 5 * time.Second, QueueSize: 500, SessionExpiry: 2 * time.Hour}
	if c != want {
		t.Errorf("decoded %+v\nwant    %+v", c, want)
	}
	if c.Password.Reveal() != "s3cret" {
		t.Errorf("Reveal() = %q", c.Password.Reveal())
	}
}

func TestSecretRedacted(t *testing.T) {
	c := Config{URL: "mqtt://broker", Username: "bridge", Password: "s3cret"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "password", c.Password, "config", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", c),
		"%+v":  fmt.Sprintf("%+v", c),
		"%#v":  fmt.Sprintf("%#v", c),
		"%s":   fmt.Sprintf("%s", c.Password),
		"slog": logged.String(),
		"json": string(js),
		"yaml": string(ym),
	} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("%s shows the password: %s", name, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s does not show [redacted] for the password: %s", name, out)
		}
	}
	if Secret("").String() != "" {
		t.Error("an empty secret should print as empty")
	}
}

func TestNewLoadsCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, want string
	}{
		{filepath.Join(dir, "missing.pem"), "ca_file: open "},
		{bad, fmt.Sprintf("ca_file %q: no PEM certificate in it", bad)},
	}
	for _, tt := range tests {
		_, err := New(Config{URL: "mqtts://broker", CAFile: tt.file}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("New with ca_file %s = %v, want %q...", tt.file, err, tt.want)
		}
	}
}
