package service

import (
	"context"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
)

// ForSetup is vehicle commands as the setup page sees them; nil when
// commands are off (enabled), and the page says how to turn them on.
func (s *Service) ForSetup() setup.Commands {
	if !s.cfg.Enabled {
		return nil
	}
	return forSetup{s}
}

// forSetup implements setup.Commands.
type forSetup struct{ s *Service }

func (f forSetup) Execute(ctx context.Context, req command.Request) command.Result {
	return f.s.engine.Execute(ctx, req)
}

func (f forSetup) Usage(month string) map[string]command.Usage { return f.s.counters.Usage(month) }

func (f forSetup) SetProtocolRequired(vin string, required bool) {
	f.s.engine.SetProtocolRequired(vin, required)
}

func (f forSetup) Settings() command.Settings { return f.s.cfg }
