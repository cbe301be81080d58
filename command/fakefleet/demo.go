package fakefleet

import (
	"context"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// Demo is the fake Tesla of `fleet2mqtt demo`: its cars are the
// simulated cars, paired with its key, and each simulated car follows
// what a command changed in its fake car (Remote), so that a command on
// MQTT or from Home Assistant changes the car's stream.
type Demo struct {
	*Fleet

	mu      sync.Mutex
	remotes map[string]*simulate.Remote
}

// StartDemo starts the fake with no cars, its owner's token in dir.
// Close stops it.
func StartDemo(ctx context.Context, dir string) (*Demo, error) {
	f, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	d := &Demo{Fleet: f, remotes: map[string]*simulate.Remote{}}
	f.Server.OnCarChange(d.follow)
	return d, nil
}

// EngineConfig is the configuration of an engine that commands the
// fake's cars: sessions cached in sessionDir, limited by limit.
func (d *Demo) EngineConfig(sessionDir string, limit command.RateLimit) command.Config {
	return command.Config{Key: d.Key, Transport: d.Owner, SessionDir: sessionDir,
		PairingDomain: Domain, RateLimit: &limit}
}

// Add makes the simulated cars vins cars of the fake owner, paired.
func (d *Demo) Add(vins ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, vin := range vins {
		d.AddCar(vin)
		d.remotes[vin] = simulate.NewRemote()
	}
}

// Remote is what the simulated car vin follows; nil for a car not added.
func (d *Demo) Remote(vin string) *simulate.Remote {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remotes[vin]
}

// follow tells the simulated car what a command changed in the fake car.
func (d *Demo) follow(vin string, old, now fleetapitest.CarState) {
	if r := d.Remote(vin); r != nil {
		r.Apply(change(old, now))
	}
}

// change is what differs between two states of a fake car, as a change
// of the simulated car.
func change(old, now fleetapitest.CarState) simulate.RemoteChange {
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
	return c
}
