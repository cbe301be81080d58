package config

// This file holds every rule of the configuration: Validate, and the
// settings that follow from more than one section (DiscoveryEnabled,
// ACME).

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/hostport"
)

// Validate checks every section, each by its own package's Validate with
// its keys qualified by where the section sits, and then the rules that
// span sections, which live here and nowhere else. It changes nothing.
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
	if err := c.Vehicle.validate(); err != nil {
		return configerr.Prefix("vehicle", err)
	}
	if c.HTTP.Listen != "" {
		if err := hostport.Check(c.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %w, e.g. \"127.0.0.1:8080\"", err)
		}
	}
	if err := c.Setup.Validate(); err != nil {
		return configerr.Prefix("setup", err)
	}
	if err := c.validateACME(); err != nil {
		return err
	}
	if err := c.HomeAssistant.Validate(); err != nil {
		return configerr.Prefix("homeassistant", err)
	}
	if st := c.HomeAssistant.StatusTopicOrDefault(); st == c.MQTT.Prefix || strings.HasPrefix(st, c.MQTT.Prefix+"/") {
		return fmt.Errorf("homeassistant.status_topic: %q is under mqtt.prefix %q, where only fleet2mqtt publishes: use Home Assistant's birth topic, such as \"homeassistant/status\"", st, c.MQTT.Prefix)
	}
	if err := c.validateCommands(); err != nil {
		return err
	}
	if _, err := c.ActivityConfig(); err != nil {
		return err
	}
	if err := c.MQTT.TeslaMate.Validate(); err != nil {
		return configerr.Prefix("mqtt.teslamate", err)
	}
	if c.MQTT.TeslaMate.Enabled && !c.Activity.Enabled {
		return errors.New("mqtt.teslamate.enabled: true needs activity.enabled: true (TeslaMate's topics are made from the derived state)")
	}
	return c.MQTT.validate()
}

// validateCommands checks the commands section and that the MQTT users
// it names can log in to the embedded broker.
func (c *Config) validateCommands() error {
	if err := c.Commands.Validate(); err != nil {
		return configerr.Prefix("commands", err)
	}
	if c.MQTT.Broker != BrokerEmbedded {
		return nil
	}
	for i, name := range c.Commands.MQTTUsers {
		if !slices.ContainsFunc(c.MQTT.Embedded.Users, func(u embedded.User) bool { return u.Name == name }) {
			return fmt.Errorf("commands.mqtt_users[%d]: %q is no user of mqtt.embedded.users, so it cannot log in to send commands", i, name)
		}
	}
	return nil
}

// DiscoveryEnabled reports whether cars are announced to Home Assistant:
// homeassistant.enabled, unless mqtt.compat.exclusive leaves out the
// native topics that discovery announces.
func (c *Config) DiscoveryEnabled() bool {
	return c.HomeAssistant.Enabled && !c.MQTT.Compat.Exclusive
}

// Discovery returns the homeassistant section with the controls the
// commands section turns on: the entities that command the cars are
// announced only when commands are enabled, per category.
func (c *Config) Discovery() discovery.Config {
	d := c.HomeAssistant
	cmd := c.Commands
	d.Controls = discovery.Controls{Enabled: cmd.Enabled, Charging: cmd.Categories.Charging, Climate: cmd.Categories.Climate,
		Security: cmd.Categories.Security, Access: cmd.Categories.Access, Alerts: cmd.Categories.Alerts}
	return d
}

// ACME returns the ACME section with its defaults filled in: the setup
// page's public host name, and <data dir>/acme for the cache.
func (c *Config) ACME() acme.Config {
	a := c.Vehicle.ACME
	if len(a.Hostnames) == 0 && c.Setup.PublicHostname != "" {
		a.Hostnames = []string{c.Setup.PublicHostname}
	}
	if a.CacheDir == "" {
		a.CacheDir = filepath.Join(c.DataDir, "acme")
	}
	return a
}

// validate checks the vehicle section; keys are relative to it.
func (v VehicleConfig) validate() error {
	if err := v.Config.Validate(); err != nil {
		return err
	}
	if err := v.TLS.Validate(); err != nil {
		return err
	}
	if err := v.ACME.Validate(); err != nil {
		return configerr.Prefix("acme", err)
	}
	if v.ACME.Enabled && v.TLS.CertFile != "" {
		return configerr.Pair("acme.enabled", "cert_file", "choose one (with ACME the certificate is obtained, not read from a file)")
	}
	return nil
}

// validateACME checks what ACME needs from other sections: a host name,
// and the setup page's public host name among the certificate's names.
func (c *Config) validateACME() error {
	a := c.Vehicle.ACME
	if !a.Enabled {
		return nil
	}
	public := c.Setup.PublicHostname
	switch {
	case len(a.Hostnames) == 0 && public == "":
		return errors.New("vehicle.acme.hostnames: empty, and setup.public_hostname is not set either: name the host cars connect to")
	case len(a.Hostnames) > 0 && public != "" && !containsFold(a.Hostnames, public):
		return fmt.Errorf("setup.public_hostname %q is not among vehicle.acme.hostnames %q: the certificate would not cover the name cars connect to", public, a.Hostnames)
	}
	return nil
}

func containsFold(list []string, s string) bool {
	s = strings.TrimSuffix(s, ".")
	for _, v := range list {
		if strings.EqualFold(strings.TrimSuffix(v, "."), s) {
			return true
		}
	}
	return false
}

// validate checks the layout, the chosen broker's section, and that
// replicas use the external broker.
func (m *MQTTConfig) validate() error {
	if err := m.Config.Validate(); err != nil {
		return configerr.Prefix("mqtt", err)
	}
	switch m.Broker {
	case BrokerEmbedded:
		if m.Replica != "" {
			return fmt.Errorf("mqtt.replica: %q needs mqtt.broker: external: replicas share one external broker, and the embedded broker serves one instance", m.Replica)
		}
		return configerr.Prefix("mqtt.embedded", m.Embedded.Validate())
	case BrokerExternal:
		return configerr.Prefix("mqtt.external", m.External.Validate())
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
