package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// lazyEngine builds the engine on first use, and again after a failure:
// the setup page may create the key and log the owner in after fleet2mqtt
// started.
type lazyEngine struct {
	config  func() (command.Config, error)
	metrics command.Metrics
	log     *slog.Logger

	mu     sync.Mutex
	engine *command.Engine
	// protocol is what fleet_status said of the cars, for an engine not
	// built yet.
	protocol map[string]bool
}

func (l *lazyEngine) get() (*command.Engine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine != nil {
		return l.engine, nil
	}
	cfg, err := l.config()
	if err != nil {
		return nil, err
	}
	cfg.Metrics = l.metrics
	e, err := command.New(cfg, l.log)
	if err != nil {
		return nil, err
	}
	for vin, required := range l.protocol {
		e.SetProtocolRequired(vin, required)
	}
	l.engine = e
	return e, nil
}

// SetProtocolRequired passes on what fleet_status says of a car, now or
// when the engine is built.
func (l *lazyEngine) SetProtocolRequired(vin string, required bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.protocol == nil {
		l.protocol = make(map[string]bool)
	}
	l.protocol[vin] = required
	if l.engine != nil {
		l.engine.SetProtocolRequired(vin, required)
	}
}

// Execute implements the executors of command/mqtt and command/proxy.
func (l *lazyEngine) Execute(ctx context.Context, req command.Request) command.Result {
	e, err := l.get()
	if err != nil {
		err = fmt.Errorf("vehicle commands are not ready: %w", err)
		return command.Result{VIN: req.VIN, Command: req.Name, Reason: err.Error(), Err: err}
	}
	return e.Execute(ctx, req)
}

// RateLimited implements the Budget of command/mqtt; nil while the
// engine is not built (no command has run to spend anything).
func (l *lazyEngine) RateLimited(vin string) error {
	l.mu.Lock()
	e := l.engine
	l.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.RateLimited(vin)
}

// failingTransport answers every call with err.
type failingTransport struct{ err error }

func (f failingTransport) SignedCommand(context.Context, string, []byte) ([]byte, error) {
	return nil, f.err
}
func (f failingTransport) WakeUp(context.Context, string) (*fleetapi.Vehicle, error) {
	return nil, f.err
}
func (f failingTransport) Vehicle(context.Context, string) (*fleetapi.Vehicle, error) {
	return nil, f.err
}
func (f failingTransport) Command(context.Context, string, string, json.RawMessage) (*fleetapi.CommandResult, error) {
	return nil, f.err
}
