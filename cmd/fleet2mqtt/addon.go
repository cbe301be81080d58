package main

import (
	"context"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/internal/addon"
)

// loadServeConfig loads the configuration of serve and demo: inside the
// Home Assistant add-on from the add-on's options and the Supervisor's MQTT
// service, elsewhere from the flags and the configuration file. The notes
// say, for the log, what the add-on chose and why.
func loadServeConfig(ctx context.Context, f *serveFlags) (cfg config.Config, notes []string, err error) {
	if !addon.Detect() {
		cfg, err = f.load()
		return cfg, nil, err
	}
	s, err := addon.Load(ctx)
	if err != nil {
		return cfg, nil, fmt.Errorf("add-on: %w", err)
	}
	if f.config == "" {
		f.config = s.ConfigFile
	}
	if cfg, err = f.load(); err != nil {
		return cfg, nil, err
	}
	applyAddon(&cfg, s)
	return cfg, s.Notes, cfg.Validate()
}

// applyAddon maps the add-on's settings onto the configuration; they
// override the add-on's optional configuration file.
func applyAddon(cfg *config.Config, s addon.Settings) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, s.DataDir)
	set(&cfg.Log.Level, s.LogLevel)
	set(&cfg.Vehicle.Listen, s.VehicleListen)
	cfg.Vehicle.TLS.CertFile, cfg.Vehicle.TLS.KeyFile = s.CertFile, s.KeyFile
	if len(s.ClientCAFiles) > 0 {
		cfg.Vehicle.TLS.ClientCAFiles = s.ClientCAFiles
	}
	set(&cfg.HTTP.Listen, s.HTTPListen)
	set(&cfg.Setup.PublicHostname, s.Hostname)
	if s.Ingress {
		cfg.Setup.TrustIngress = true
	}
	set(&cfg.MQTT.Prefix, s.Prefix)
	cfg.MQTT.Compat.Enabled = s.Compat
	set(&cfg.MQTT.Broker, s.Broker)
	cfg.HomeAssistant.Enabled = s.Discovery
	set(&cfg.HomeAssistant.Prefix, s.DiscoveryPrefix)
	switch s.Broker {
	case config.BrokerEmbedded:
		set(&cfg.MQTT.Embedded.Listen, s.EmbeddedListen)
		if len(s.EmbeddedUsers) > 0 {
			users := make([]embedded.User, len(s.EmbeddedUsers))
			for i, u := range s.EmbeddedUsers {
				users[i] = embedded.User{Name: u.Name, Password: embedded.Secret(u.Password)}
			}
			cfg.MQTT.Embedded.Users = users
		}
	case config.BrokerExternal:
		cfg.MQTT.External.URL = s.ExternalURL
		cfg.MQTT.External.Username = s.ExternalUsername
		cfg.MQTT.External.Password = external.Secret(s.ExternalPassword)
	}
}
