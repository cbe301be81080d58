package main

import (
	"context"
	"fmt"

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
	s.Configure(&cfg)
	return cfg, s.Notes, cfg.Validate()
}
