package main

// What the setup page gets from the rest of fleet2mqtt beyond its own
// parts: vehicle commands (its Commands section) and whether Home
// Assistant is connected to the broker (its last page).

import (
	"context"

	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
)

// forSetup is vehicle commands as the setup page sees them; nil when
// commands are off (commands.enabled), and the page says how to turn them
// on.
func (c *vehicleCommands) forSetup() setup.Commands {
	if !c.cfg.Enabled {
		return nil
	}
	return setupCommands{c}
}

// useSetupSession makes the engine send through the setup page's owner
// session: one holder of the owner's rotating refresh token in the
// process, and a new login on the page (one granting the command scopes)
// used from the next command on. With commands.fleet_api_url the engine
// talks to another Fleet API than the page and keeps its own session.
func (c *vehicleCommands) useSetupSession(w *setup.Wizard) {
	if c.cfg.FleetAPIURL != "" {
		return
	}
	base := c.engine.config
	c.engine.config = func() (vcmd.Config, error) {
		cfg, err := base()
		cfg.Transport = w.CommandTransport(cfg.Transport)
		return cfg, err
	}
}

// setupCommands implements setup.Commands.
type setupCommands struct{ c *vehicleCommands }

func (s setupCommands) Execute(ctx context.Context, req vcmd.Request) vcmd.Result {
	return s.c.engine.Execute(ctx, req)
}

func (s setupCommands) Usage(month string) map[string]vcmd.Usage { return s.c.counters.Usage(month) }

func (s setupCommands) SetProtocolRequired(vin string, required bool) {
	s.c.engine.SetProtocolRequired(vin, required)
}

func (s setupCommands) Settings() vcmd.Settings { return s.c.cfg }

// watchHomeAssistant follows Home Assistant's status topic for the setup
// page until ctx ends.
func (a *app) watchHomeAssistant(ctx context.Context) error {
	if err := a.haStatus.Run(ctx); err != nil {
		a.log.Warn("cannot follow home assistant's status topic; the setup page cannot tell whether it is connected", "err", err)
	}
	return nil
}
