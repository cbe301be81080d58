package addon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// testPaths lays out an add-on container in a temporary directory: data
// with options.json, an ssl folder, a config folder and the Tesla CA.
func testPaths(t *testing.T, options string) Paths {
	t.Helper()
	root := t.TempDir()
	p := Paths{
		Options: filepath.Join(root, "data", "options.json"),
		Data:    filepath.Join(root, "data"),
		Config:  filepath.Join(root, "config"),
		SSL:     filepath.Join(root, "ssl"),
		TeslaCA: filepath.Join(root, "etc", "tesla-vehicle-ca.pem"),
	}
	for _, d := range []string{p.Data, p.Config, p.SSL, filepath.Dir(p.TeslaCA)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, p.Options, options)
	writeFile(t, p.TeslaCA, "-----BEGIN CERTIFICATE-----\n")
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDetect(t *testing.T) {
	p := testPaths(t, `{}`)
	missing := p
	missing.Options = filepath.Join(t.TempDir(), "options.json")
	dir := p
	dir.Options = p.Data
	tests := []struct {
		name  string
		paths Paths
		token string
		want  bool
	}{
		{"token and options", p, "t", true},
		{"no token", p, "", false},
		{"no options file", missing, "t", false},
		{"options is a directory", dir, "t", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.paths.Detect(tt.token); got != tt.want {
				t.Errorf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLoadAgainstSupervisor runs the whole add-on start against a fake
// Supervisor on loopback: its MQTT service is used when present, the
// embedded broker otherwise, and a Supervisor that refuses us stops the
// start with a clear message.
func TestLoadAgainstSupervisor(t *testing.T) {
	tests := []struct {
		name      string
		options   string
		status    int
		body      string
		token     string
		wantCalls int32
		check     func(t *testing.T, s Settings)
		errHas    []string
	}{
		{
			name: "mosquitto add-on is used", options: `{}`, status: 200, body: mosquittoAnswer, token: testToken, wantCalls: 1,
			check: func(t *testing.T, s Settings) {
				want := [4]string{"external", "mqtt://core-mosquitto:1883", "addons", "s3cret"}
				if got := [4]string{s.Broker, s.ExternalURL, s.ExternalUsername, s.ExternalPassword}; got != want {
					t.Errorf("broker %v, want %v", got, want)
				}
				if s.EmbeddedListen != "" {
					t.Errorf("embedded listen %q with an external broker", s.EmbeddedListen)
				}
			},
		},
		{
			name: "ssl service is mqtts", options: `{}`, status: 200, token: testToken, wantCalls: 1,
			body: `{"result":"ok","data":{"host":"core-mosquitto","port":8883,"ssl":true,"username":"addons","password":"pw"}}`,
			check: func(t *testing.T, s Settings) {
				if s.Broker != BrokerExternal || s.ExternalURL != "mqtts://core-mosquitto:8883" {
					t.Errorf("broker %s %s, want external mqtts://core-mosquitto:8883", s.Broker, s.ExternalURL)
				}
			},
		},
		{
			name: "no broker add-on: embedded", options: `{"mqtt_users":[{"name":"homeassistant","password":"pw"}]}`,
			status: 400, body: `{"result":"error","message":"Service not enabled"}`, token: testToken, wantCalls: 1,
			check: func(t *testing.T, s Settings) {
				if s.Broker != BrokerEmbedded || s.EmbeddedListen != ":1883" || s.ExternalURL != "" {
					t.Errorf("broker %q listen %q url %q, want embedded on :1883", s.Broker, s.EmbeddedListen, s.ExternalURL)
				}
				if !reflect.DeepEqual(s.EmbeddedUsers, []User{{"homeassistant", "pw"}}) {
					t.Errorf("users %v", s.EmbeddedUsers)
				}
				if !hasNote(s, "Home Assistant has no MQTT broker add-on") {
					t.Errorf("notes %q do not say why the embedded broker runs", s.Notes)
				}
			},
		},
		{
			name: "embedded chosen: supervisor not asked", options: `{"mqtt_broker":"embedded"}`,
			status: 200, body: mosquittoAnswer, token: testToken, wantCalls: 0,
			check: func(t *testing.T, s Settings) {
				if s.Broker != BrokerEmbedded {
					t.Errorf("broker %q, want embedded", s.Broker)
				}
			},
		},
		{
			name: "external chosen: supervisor not asked", options: `{"mqtt_broker":"external","mqtt_url":"mqtt://192.168.1.5:1883","mqtt_username":"me","mqtt_password":"pw"}`,
			status: 200, body: mosquittoAnswer, token: testToken, wantCalls: 0,
			check: func(t *testing.T, s Settings) {
				want := [4]string{"external", "mqtt://192.168.1.5:1883", "me", "pw"}
				if got := [4]string{s.Broker, s.ExternalURL, s.ExternalUsername, s.ExternalPassword}; got != want {
					t.Errorf("broker %v, want %v", got, want)
				}
			},
		},
		{
			name: "bad token", options: `{}`, status: 200, body: mosquittoAnswer, token: "expired", wantCalls: 1,
			errHas: []string{"ask Home Assistant for its MQTT broker", "SUPERVISOR_TOKEN is not valid", "status 401"},
		},
		{
			name: "malformed answer", options: `{}`, status: 200, body: `{"result":"ok","data":`, token: testToken, wantCalls: 1,
			errHas: []string{"ask Home Assistant for its MQTT broker", "not JSON"},
		},
		{
			name: "invalid options", options: `{"mqtt_brokr":"auto"}`, status: 200, body: mosquittoAnswer, token: testToken, wantCalls: 0,
			errHas: []string{"unknown option", "mqtt_brokr"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSupervisor(t, tt.status, tt.body)
			p := testPaths(t, tt.options)
			s, err := load(context.Background(), p, f.URL, tt.token)
			if got := f.calls.Load(); got != tt.wantCalls {
				t.Errorf("supervisor asked %d times, want %d", got, tt.wantCalls)
			}
			if tt.errHas != nil {
				if err == nil {
					t.Fatalf("no error; settings %+v", s)
				}
				for _, w := range tt.errHas {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
			for _, n := range s.Notes {
				if strings.Contains(n, "s3cret") || strings.Contains(n, "pw") {
					t.Errorf("note %q shows a password", n)
				}
			}
		})
	}
}

func hasNote(s Settings, sub string) bool {
	for _, n := range s.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func TestApply(t *testing.T) {
	opts := DefaultOptions()
	opts.Hostname = "tesla.example.com"
	opts.TopicPrefix = "cars"
	opts.DiscoveryPrefix = "ha"
	opts.Discovery = false
	opts.CompatLayout = true
	opts.LogLevel = "debug"

	t.Run("fixed settings", func(t *testing.T) {
		p := testPaths(t, `{}`)
		s, err := Apply(opts, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		want := Settings{
			DataDir: p.Data, LogLevel: "debug", VehicleListen: ":8443", ClientCAFiles: []string{p.TeslaCA},
			Hostname: "tesla.example.com", HTTPListen: ":8099", Ingress: true,
			Prefix: "cars", Compat: true, Discovery: false, DiscoveryPrefix: "ha",
			Broker: "embedded", EmbeddedListen: ":1883", EmbeddedUsers: []User{},
			CommandCategories: command.DefaultSettings().Categories, CommandUsers: []string{},
		}
		s.Notes = nil
		if !reflect.DeepEqual(s, want) {
			t.Errorf("got  %+v\nwant %+v", s, want)
		}
	})

	t.Run("certificate from ssl folder", func(t *testing.T) {
		p := testPaths(t, `{}`)
		writeFile(t, filepath.Join(p.SSL, "fullchain.pem"), "c")
		writeFile(t, filepath.Join(p.SSL, "privkey.pem"), "k")
		s, err := Apply(opts, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if s.CertFile != filepath.Join(p.SSL, "fullchain.pem") || s.KeyFile != filepath.Join(p.SSL, "privkey.pem") {
			t.Errorf("cert %q key %q", s.CertFile, s.KeyFile)
		}
	})

	t.Run("certificate missing: development with a note", func(t *testing.T) {
		p := testPaths(t, `{}`)
		writeFile(t, filepath.Join(p.SSL, "fullchain.pem"), "c") // no key
		s, err := Apply(opts, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if s.CertFile != "" || s.KeyFile != "" {
			t.Errorf("cert %q key %q, want both empty", s.CertFile, s.KeyFile)
		}
		if !hasNote(s, "privkey.pem not found") && !hasNote(s, "not found in Home Assistant's ssl folder") {
			t.Errorf("notes %q do not explain the missing certificate", s.Notes)
		}
	})

	t.Run("development certificate chosen", func(t *testing.T) {
		p := testPaths(t, `{}`)
		writeFile(t, filepath.Join(p.SSL, "fullchain.pem"), "c")
		writeFile(t, filepath.Join(p.SSL, "privkey.pem"), "k")
		o := opts
		o.Certificate = CertificateDevelopment
		s, err := Apply(o, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if s.CertFile != "" || s.KeyFile != "" {
			t.Errorf("cert %q key %q, want the development certificate", s.CertFile, s.KeyFile)
		}
	})

	t.Run("user config file", func(t *testing.T) {
		p := testPaths(t, `{}`)
		f := filepath.Join(p.Config, ConfigFileName)
		writeFile(t, f, "log:\n  format: json\n")
		s, err := Apply(opts, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if s.ConfigFile != f {
			t.Errorf("config file %q, want %q", s.ConfigFile, f)
		}
	})

	t.Run("no tesla ca in image", func(t *testing.T) {
		p := testPaths(t, `{}`)
		p.TeslaCA = filepath.Join(t.TempDir(), "missing.pem")
		s, err := Apply(opts, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if s.ClientCAFiles != nil || !hasNote(s, "vehicle CA bundle is missing") {
			t.Errorf("client CAs %v, notes %q", s.ClientCAFiles, s.Notes)
		}
	})

	t.Run("invalid options", func(t *testing.T) {
		o := opts
		o.MQTTBroker = "nope"
		if _, err := Apply(o, nil, testPaths(t, `{}`)); err == nil {
			t.Error("no error")
		}
	})
}

func TestLoadNotAnAddon(t *testing.T) {
	p := testPaths(t, `{}`)
	_, err := load(context.Background(), p, "http://127.0.0.1:1", "")
	if !errors.Is(err, ErrNoToken) {
		t.Fatalf("error %v, want ErrNoToken", err)
	}
}
