package fakefleet

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

func TestChange(t *testing.T) {
	old := fleetapitest.CarState{ChargeLimit: 80, Locked: true}
	now := old
	if c := change(old, now); c.ChargeLimit != nil || c.Locked != nil || c.Charging != nil {
		t.Errorf("no difference gives %+v", c)
	}
	now.ChargeLimit, now.Locked, now.Charging, now.DriverTemp = 65, false, true, 21.5
	c := change(old, now)
	if c.ChargeLimit == nil || *c.ChargeLimit != 65 || c.Locked == nil || *c.Locked || c.Charging == nil || !*c.Charging ||
		c.DriverTemp == nil || *c.DriverTemp != 21.5 {
		t.Errorf("change %+v", c)
	}
	if c.Sentry != nil || c.Climate != nil || c.ChargingAmps != nil {
		t.Errorf("unchanged fields set: %+v", c)
	}
}

// TestDemo: an engine configured by EngineConfig commands a car added
// with Add, which the fake verifies and applies.
func TestDemo(t *testing.T) {
	d, err := StartDemo(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const vin = "5YJ3E1EA7KF000009"
	if d.Remote(vin) != nil {
		t.Error("a remote for a car not added")
	}
	d.Add(vin)
	if d.Remote(vin) == nil {
		t.Fatal("no remote for the added car")
	}
	e, err := command.New(d.EngineConfig(filepath.Join(t.TempDir(), "commands"), command.RateLimit{}))
	if err != nil {
		t.Fatal(err)
	}
	res := e.Execute(context.Background(), command.Request{VIN: vin, Name: "set_charge_limit", Args: []byte(`{"percent":66}`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := d.Server.Car(vin).State().ChargeLimit; got != 66 {
		t.Errorf("charge limit %d, want 66", got)
	}
}
