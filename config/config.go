// Package config owns fleet2mqtt's configuration file: its shape, its
// defaults, how it is read, and every rule it must follow.
//
// Each section is the configuration type of the package that uses it
// (ingest.Config, bridge.Config, embedded.Config, ...). Those packages
// know their own keys only relative to their section; where a section
// sits in the file (vehicle, mqtt.embedded, homeassistant, ...) is known
// here alone, and Validate qualifies their errors with it (see
// internal/configerr). The rules that span sections are in validate.go,
// together, and nowhere else.
package config

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/teslamate"
	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/secret"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
)

// Config is the whole configuration file. Each section belongs to the
// package that uses it; this type only composes them.
type Config struct {
	// DataDir holds what fleet2mqtt keeps between runs: certificates it
	// made, retained MQTT state, the setup page's secrets (mode 0600).
	DataDir string `yaml:"data_dir"`
	// Log sets how fleet2mqtt logs.
	Log LogConfig `yaml:"log"`
	// Vehicle is the listener cars connect to.
	Vehicle VehicleConfig `yaml:"vehicle"`
	// MQTT is where and how signals are published.
	MQTT MQTTConfig `yaml:"mqtt"`
	// HTTP is the local web listener: the setup page, health and metrics.
	HTTP HTTPConfig `yaml:"http"`
	// Setup is the setup page that walks the owner through Tesla's steps.
	Setup setup.Config `yaml:"setup"`
	// HomeAssistant is how cars are announced to Home Assistant (MQTT
	// discovery). It is off with mqtt.compat.exclusive, which publishes
	// none of the topics it announces.
	HomeAssistant discovery.Config `yaml:"homeassistant"`
	// Commands is whether and how fleet2mqtt sends the cars commands
	// (MQTT, Home Assistant controls, the proxy API). Off by default.
	Commands command.Settings `yaml:"commands"`
	// Places are named places (Home, Work): the car's place, the places
	// of drives and charges, the price of charging there, and the
	// TeslaMate layout's geofence.
	Places []activity.Place `yaml:"places"`
	// Activity derives what each car is doing: status, place, drives and
	// charging sessions with their history.
	Activity activity.Config `yaml:"activity"`
}

// VehicleConfig is the vehicle section: how the listener treats
// connections (ingest), where its certificate and the vehicle CAs come
// from (certs), and under acme how it obtains its certificate by itself.
type VehicleConfig struct {
	ingest.Config `yaml:",inline"`
	// TLS is cert_file, key_file and client_ca_files.
	TLS certs.Config `yaml:",inline"`
	// ACME obtains and renews the listener's certificate from Let's
	// Encrypt (or another ACME server) by TLS-ALPN-01 on the listener's
	// port, instead of cert_file and key_file.
	ACME acme.Config `yaml:"acme"`
}

// MQTTConfig is the topic layout plus the broker the messages go to.
type MQTTConfig struct {
	bridge.Config `yaml:",inline"`
	// Broker is "embedded" (default: fleet2mqtt runs its own broker) or
	// "external" (publish to the broker in the external section).
	Broker string `yaml:"broker"`
	// Embedded configures the built-in broker.
	Embedded embedded.Config `yaml:"embedded"`
	// External is the user's own broker, used when broker is "external".
	External external.Config `yaml:"external"`
	// TeslaMate publishes TeslaMate's MQTT topics too
	// (teslamate/cars/<id>/…), for tools built on them.
	TeslaMate teslamate.Config `yaml:"teslamate"`
}

// Broker choices.
const (
	BrokerEmbedded = "embedded"
	BrokerExternal = "external"
)

// HTTPConfig is the local web listener.
type HTTPConfig struct {
	// Listen is the host:port of the web listener; empty disables it.
	Listen string `yaml:"listen"`
	// MetricsToken lets clients that are not on this machine read
	// /metrics with "Authorization: Bearer <token>" (Prometheus:
	// authorization.credentials). Empty: /metrics answers only clients on
	// this machine.
	MetricsToken secret.Secret `yaml:"metrics_token"`
	// MetricsVINs labels the per-car metrics with the VIN. Off: the label
	// is a pseudonym, the first 8 hexadecimal digits of the VIN's SHA-256,
	// so that what /metrics shows (and what a metrics store keeps) does
	// not name the car.
	MetricsVINs bool `yaml:"metrics_vins"`
}

// LogConfig sets the logger.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Default returns the configuration fleet2mqtt runs with when no file is
// given: every section's DefaultConfig.
func Default() Config {
	return Config{
		DataDir: defaultDataDir(),
		Log:     LogConfig{Level: "info", Format: "text"},
		Vehicle: VehicleConfig{Config: ingest.DefaultConfig()},
		MQTT: MQTTConfig{
			Config:    bridge.DefaultConfig(),
			Broker:    BrokerEmbedded,
			Embedded:  embedded.DefaultConfig(),
			External:  external.DefaultConfig(),
			TeslaMate: teslamate.Config{CarIDs: map[string]int{}},
		},
		HTTP:          HTTPConfig{Listen: "127.0.0.1:8080"},
		Setup:         setup.DefaultConfig(),
		HomeAssistant: discovery.DefaultConfig(),
		Commands:      command.DefaultSettings(),
		Places:        []activity.Place{},
		Activity:      activity.DefaultConfig(),
	}
}

// ActivityConfig returns the activity section with the places, validated
// (defaults filled), for the trackers.
func (c *Config) ActivityConfig() (activity.Config, error) {
	a := c.Activity
	places := append([]activity.Place(nil), c.Places...)
	if err := activity.ValidatePlaces(places); err != nil {
		return a, err // its keys are at the top level: places[1].radius
	}
	a.Places = places
	if err := a.Validate(); err != nil {
		return a, configerr.Prefix("activity", err)
	}
	return a, nil
}

// defaultDataDir is $FLEET2MQTT_DATA_DIR, else the user's data directory
// ($XDG_DATA_HOME or ~/.local/share) with fleet2mqtt appended, else ./data.
func defaultDataDir() string {
	if d := os.Getenv("FLEET2MQTT_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "fleet2mqtt")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "fleet2mqtt")
	}
	return "data"
}

// DevPKIDir is where fleet2mqtt keeps the development certificates it
// makes when no server certificate or vehicle CA is configured.
func (c *Config) DevPKIDir() string { return filepath.Join(c.DataDir, "dev-pki") }

// VehicleCerts is where the vehicle listener's certificate and the cars'
// authorities come from: the files, ACME or the development PKI.
func (c *Config) VehicleCerts() certs.Vehicle {
	v := certs.Vehicle{Files: c.Vehicle.TLS, DevDir: c.DevPKIDir(), Section: "vehicle"}
	if c.Vehicle.ACME.Enabled {
		ac := c.ACME()
		v.ACME = &ac
	}
	return v
}

// Logger returns the logger the log section asks for, writing to w.
func (l LogConfig) Logger(w io.Writer) *slog.Logger {
	level, _ := l.level()
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
