package main

// What the setup page gets from the rest of fleet2mqtt beyond its own
// parts: whether Home Assistant is connected to the broker (its last
// page). Vehicle commands (its Commands section) are the command
// service's ForSetup.

import (
	"context"
)

// watchHomeAssistant follows Home Assistant's status topic for the setup
// page until ctx ends.
func (a *app) watchHomeAssistant(ctx context.Context) error {
	if err := a.haStatus.Run(ctx); err != nil {
		a.log.Warn("cannot follow home assistant's status topic; the setup page cannot tell whether it is connected", "err", err)
	}
	return nil
}
