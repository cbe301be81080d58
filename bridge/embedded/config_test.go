package embedded

import (
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1883" || cfg.AllowAnonymous != AnonymousLoopback || !cfg.Persist || cfg.WebSocket.Listen != "" || cfg.TLS.Listen != "" {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name   string
		modify func(*Config)
		err    string
	}{
		{"disabled", func(c *Config) { c.Listen = "" }, ""},
		{"all interfaces", func(c *Config) { c.Listen = ":1883" }, ""},
		{"ipv6", func(c *Config) { c.Listen = "[::1]:1883" }, ""},
		{"tls", func(c *Config) { c.TLS = TLSConfig{Listen: ":8883", CertFile: cert, KeyFile: cert} }, ""},
		{"users", func(c *Config) { c.Users = []User{{Name: "ha", Password: "x"}, {Name: "nr", Password: "y"}} }, ""},
		{"most queued", func(c *Config) { c.MaxQueued = 65535 }, ""},
		{"nothing queued", func(c *Config) { c.MaxQueued = 0 }, `mqtt.embedded.max_queued: 0 is out of range: use 1 to 65535`},
		{"too much queued", func(c *Config) { c.MaxQueued = 65536 }, `mqtt.embedded.max_queued: 65536 is out of range: use 1 to 65535`},
		{"negative offline budget", func(c *Config) { c.MaxOfflineQueued = -1 }, `mqtt.embedded.max_offline_queued: -1 is negative: use 0 (offline sessions keep nothing) or more (default 32768)`},
		{"no clients", func(c *Config) { c.MaxClients = 0 }, `mqtt.embedded.max_clients: 0 is too small: use 1 or more (default 1000)`},
		{"no subscriptions", func(c *Config) { c.MaxSubscriptions = 0 }, `mqtt.embedded.max_subscriptions: 0 is too small: use 1 or more (default 10000)`},
		{"sessions end at once", func(c *Config) { c.MaxSessionExpiry = 0 }, `mqtt.embedded.max_session_expiry: 0s is out of range: use 1s or more (default 168h), up to about 136 years`},
		{"bad listen", func(c *Config) { c.Listen = "1883" },
			`mqtt.embedded.listen: "1883" is not host:port, e.g. "127.0.0.1:1883" or ":1883"`},
		{"bad port", func(c *Config) { c.Listen = "localhost:mqtt" },
			`mqtt.embedded.listen: "localhost:mqtt": port "mqtt" is not a number from 0 to 65535, e.g. "127.0.0.1:1883" or ":1883"`},
		{"port too large", func(c *Config) { c.WebSocket.Listen = ":70000" },
			`mqtt.embedded.websocket.listen: ":70000": port 70000 is out of range (0 to 65535), e.g. "127.0.0.1:1883" or ":1883"`},
		{"bad host", func(c *Config) { c.TLS.Listen = "bad_host:8883" },
			`mqtt.embedded.tls.listen: "bad_host:8883": "bad_host" is neither an IP address nor a host name, e.g. "127.0.0.1:1883" or ":1883"`},
		{"tls without cert", func(c *Config) { c.TLS.Listen = ":8883" },
			`mqtt.embedded.tls.cert_file: must be set for a TLS listener (tls.listen or websocket.tls)`},
		{"wss without key", func(c *Config) { c.WebSocket = WebSocketConfig{Listen: ":9001", TLS: true}; c.TLS.CertFile = cert },
			`mqtt.embedded.tls.key_file: must be set for a TLS listener (tls.listen or websocket.tls)`},
		{"missing cert file", func(c *Config) { c.TLS = TLSConfig{Listen: ":8883", CertFile: missing, KeyFile: cert} },
			`mqtt.embedded.tls.cert_file: stat ` + missing + `: no such file or directory`},
		{"origin", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"dash.example.com"} },
			`mqtt.embedded.websocket.allowed_origins: "dash.example.com" is not an origin: use scheme://host[:port], e.g. "https://dash.example.com", or "*"`},
		{"user without name", func(c *Config) { c.Users = []User{{Password: "x"}} },
			`mqtt.embedded.users[0].name: must be set`},
		{"user twice", func(c *Config) { c.Users = []User{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}} },
			`mqtt.embedded.users[1].name: "a" appears twice`},
		{"user without password", func(c *Config) { c.Users = []User{{Name: "a"}} },
			`mqtt.embedded.users[0].password: must be set for user "a"`},
		{"broken hash", func(c *Config) { c.Users = []User{{Name: "a", Password: "$2a$10$short"}} },
			`mqtt.embedded.users[0].password: starts like a bcrypt hash but is not one (crypto/bcrypt: hashedSecret too short to be a bcrypted password): give the password in clear text or a complete hash`},
		{"anonymous", func(c *Config) { c.AllowAnonymous = "yes" },
			`mqtt.embedded.allow_anonymous: "yes" is not loopback, always or never`},
		{"persist interval", func(c *Config) { c.PersistInterval = time.Millisecond },
			`mqtt.embedded.persist_interval: 1ms is too short: use at least 1s`},
		{"persist interval unused", func(c *Config) { c.Persist, c.PersistInterval = false, 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			// As the configuration file's owner reports it.
			err := configerr.Prefix("mqtt.embedded", cfg.Validate())
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err != "" && err == nil:
				t.Fatalf("no error, want %q", tt.err)
			case tt.err != "" && err.Error() != tt.err:
				t.Fatalf("error\n got %q\nwant %q", err, tt.err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
listen: ":1883"
websocket:
  listen: "127.0.0.1:9001"
users:
  - name: homeassistant
    password: s3cret
allow_anonymous: never
persist_interval: 30s
`
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":1883" || cfg.WebSocket.Listen != "127.0.0.1:9001" || len(cfg.Users) != 1 ||
		cfg.AllowAnonymous != AnonymousNever || cfg.PersistInterval != 30*time.Second || !cfg.Persist {
		t.Errorf("decoded %+v", cfg)
	}
}
