package main

// Vehicle commands in `fleet2mqtt demo`: a fake Fleet API on loopback whose
// cars hold the demo's key, the engine pointed at it, and the simulated
// cars following what the fake cars are told. Command on MQTT or from Home
// Assistant, and the car's stream changes.

import (
	"context"
	"path/filepath"
	"sync"

	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// demoCommands are the demo's vehicle commands.
type demoCommands struct {
	fleet *fakefleet.Fleet

	mu      sync.Mutex
	remotes map[string]*simulate.Remote
}

// startDemoCommands turns commands on in cfg (anonymous clients from this
// machine may command, as they may connect) and starts the fake Fleet
// API.
func startDemoCommands(ctx context.Context, cfg *config.Config) (*demoCommands, error) {
	cfg.Commands.Enabled = true
	cfg.Commands.AllowAnonymous = true
	fleet, err := fakefleet.Start(ctx, fakefleet.Options{Dir: filepath.Join(cfg.DataDir, "fake-tesla")})
	if err != nil {
		return nil, err
	}
	d := &demoCommands{fleet: fleet, remotes: map[string]*simulate.Remote{}}
	fleet.Server.OnCarChange(d.follow)
	return d, nil
}

// use points a's engine at the fake Fleet API.
func (d *demoCommands) use(a *app) {
	a.cmd.UseEngine(func() (vcmd.Config, error) {
		limit := a.cfg.Commands.RateLimit
		return vcmd.Config{Key: d.fleet.Key, Transport: d.fleet.Owner, SessionDir: filepath.Join(a.cfg.DataDir, "commands"),
			PairingDomain: fakefleet.Domain, RateLimit: &limit, Logger: a.log.With("component", "commands")}, nil
	})
}

// add makes the simulated cars cars of the fake owner, paired.
func (d *demoCommands) add(cars []*simulate.Car) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range cars {
		d.fleet.AddCar(c.VIN())
		d.remotes[c.VIN()] = simulate.NewRemote()
	}
}

// remote is what the simulated car vin follows.
func (d *demoCommands) remote(vin string) *simulate.Remote {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remotes[vin]
}

// follow tells the simulated car what a command changed in the fake car.
func (d *demoCommands) follow(vin string, old, now fleetapitest.CarState) {
	r := d.remote(vin)
	if r == nil {
		return
	}
	var c simulate.RemoteChange
	if now.Charging != old.Charging {
		c.Charging = &now.Charging
	}
	if now.ChargeLimit != old.ChargeLimit {
		c.ChargeLimit = &now.ChargeLimit
	}
	if now.ChargingAmps != old.ChargingAmps {
		c.ChargingAmps = &now.ChargingAmps
	}
	if now.ClimateOn != old.ClimateOn {
		c.Climate = &now.ClimateOn
	}
	if now.DriverTemp != old.DriverTemp {
		c.DriverTemp = &now.DriverTemp
	}
	if now.Locked != old.Locked {
		c.Locked = &now.Locked
	}
	if now.Sentry != old.Sentry {
		c.Sentry = &now.Sentry
	}
	r.Apply(c)
}

func (d *demoCommands) close() { d.fleet.Close() }
