package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
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
	// Vehicle is the listener cars connect to (VehicleConfig: ingest's
	// settings plus acme).
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
}

// Broker choices.
const (
	brokerEmbedded = "embedded"
	brokerExternal = "external"
)

// HTTPConfig is the local web listener.
type HTTPConfig struct {
	// Listen is the host:port of the web listener; empty disables it.
	Listen string `yaml:"listen"`
}

// LogConfig sets the logger.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// defaultConfig returns the configuration fleet2mqtt runs with when no file
// is given.
func defaultConfig() Config {
	ext := external.Config{}
	ext.Defaults()
	ext.ClientID = "" // chosen when the external broker is used (host name based)
	return Config{
		DataDir: defaultDataDir(),
		Log:     LogConfig{Level: "info", Format: "text"},
		Vehicle: VehicleConfig{Config: ingest.DefaultConfig()},
		MQTT: MQTTConfig{
			Config:   bridge.DefaultConfig(),
			Broker:   brokerEmbedded,
			Embedded: embedded.DefaultConfig(),
			External: ext,
		},
		HTTP:  HTTPConfig{Listen: "127.0.0.1:8080"},
		Setup: setup.DefaultConfig(),

		HomeAssistant: discovery.DefaultConfig(),
	}
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

// loadConfig reads path (if not empty) over the defaults. Unknown keys are
// errors, so that a misspelt option never silently does nothing.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, cfg.Validate()
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func decodeConfig(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return cleanYAMLError(err)
	}
	return nil
}

// cleanYAMLError makes yaml.v3's messages read like ours: "line 3: field
// listn not found in type ingest.Config" becomes "line 3: unknown key
// \"listn\"".
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if before, after, ok := strings.Cut(m, "field "); ok {
			if key, _, ok := strings.Cut(after, " not found in type"); ok {
				m = before + fmt.Sprintf("unknown key %q", key)
			}
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Validate checks every section.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data_dir: must be set")
	}
	if _, err := c.Log.level(); err != nil {
		return err
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	if err := c.Vehicle.Validate(); err != nil {
		return err
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %q is not host:port, e.g. \"127.0.0.1:8080\"", c.HTTP.Listen)
		}
	}
	if err := c.Setup.Validate(); err != nil {
		return err
	}
	if err := c.validateACME(); err != nil {
		return err
	}
	if err := c.HomeAssistant.Validate(); err != nil {
		return err
	}
	if st := c.HomeAssistant.StatusTopicOrDefault(); st == c.MQTT.Prefix || strings.HasPrefix(st, c.MQTT.Prefix+"/") {
		return fmt.Errorf("homeassistant.status_topic: %q is under mqtt.prefix %q, where only fleet2mqtt publishes: use Home Assistant's birth topic, such as \"homeassistant/status\"", st, c.MQTT.Prefix)
	}
	return c.MQTT.Validate()
}

// discoveryEnabled reports whether cars are announced to Home Assistant:
// homeassistant.enabled, unless mqtt.compat.exclusive leaves out the
// native topics that discovery announces.
func (c *Config) discoveryEnabled() bool {
	return c.HomeAssistant.Enabled && !c.MQTT.Compat.Exclusive
}

// Validate checks the layout and the chosen broker's section.
func (m *MQTTConfig) Validate() error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	switch m.Broker {
	case brokerEmbedded:
		if m.Replica != "" {
			return fmt.Errorf("mqtt.replica: %q needs mqtt.broker: external: replicas share one external broker, and the embedded broker serves one instance", m.Replica)
		}
		return m.Embedded.Validate()
	case brokerExternal:
		m.External.Defaults()
		if err := m.External.Validate(); err != nil {
			return fmt.Errorf("mqtt.external.%w", err)
		}
		return nil
	}
	return fmt.Errorf("mqtt.broker: %q is not embedded or external", m.Broker)
}

func (l LogConfig) level() (slog.Level, error) {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log.level: %q is not debug, info, warn or error", l.Level)
}

func (l LogConfig) logger(w io.Writer) *slog.Logger {
	level, _ := l.level()
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
