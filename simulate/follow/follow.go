// Package follow joins simulated cars and the fake Tesla's cars
// (command/fakefleet) of the same VIN. The simulated car is the one
// source of truth: after each of its steps the fake car's controls
// (locked, climate and temperature, sentry, charging, charge limit and
// amps, charge port) are set to what its stream says, so that the fake
// judges a command against the car as it is (lock an unlocked car,
// stop a charge in progress); what a signed command then changes in the
// fake car reaches the simulated car, whose stream shows it.
// `fleet2mqtt demo` runs it, so that a command on MQTT or from Home
// Assistant changes the car's stream.
package follow

import (
	"context"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// Fleet is a running fake Tesla whose cars are simulated cars, paired
// with its key; each simulated car follows its fake car (Remote).
type Fleet struct {
	*fakefleet.Fleet

	mu      sync.Mutex
	remotes map[string]*simulate.Remote
}

// Start starts the fake with no cars, its owner's token in dir. Close
// stops it.
func Start(ctx context.Context, dir string) (*Fleet, error) {
	f, err := fakefleet.Start(ctx, fakefleet.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	d := &Fleet{Fleet: f, remotes: map[string]*simulate.Remote{}}
	f.Server.OnCarChange(d.follow)
	return d, nil
}

// Add makes the simulated cars vins cars of the fake owner, paired.
func (d *Fleet) Add(vins ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, vin := range vins {
		d.AddCar(vin)
		r := simulate.NewRemote()
		car := d.Server.Car(vin)
		r.Watch(func(c simulate.Controls) { car.UpdateState(func(st *fleetapitest.CarState) { mirror(st, c) }) })
		d.remotes[vin] = r
	}
}

// mirror sets the fake car's controls to the simulated car's. Whether a
// cable is plugged in stays the fake's own (plugged in): the simulated
// car plugs in at home when told to charge.
func mirror(st *fleetapitest.CarState, c simulate.Controls) {
	st.Locked = c.Locked
	st.ClimateOn = c.Climate
	st.DriverTemp = c.DriverTemp
	st.Sentry = c.Sentry
	st.Charging = c.Charging
	st.ChargeLimit = c.ChargeLimit
	st.ChargingAmps = c.ChargingAmps
	st.ChargePortOpen = c.ChargePortOpen
}

// Remote is what the simulated car vin follows; nil for a car not added.
func (d *Fleet) Remote(vin string) *simulate.Remote {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remotes[vin]
}

// follow tells the simulated car what a command changed in the fake car.
func (d *Fleet) follow(vin string, old, now fleetapitest.CarState) {
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
	if now.ChargePortOpen != old.ChargePortOpen {
		c.ChargePortOpen = &now.ChargePortOpen
	}
	return c
}
