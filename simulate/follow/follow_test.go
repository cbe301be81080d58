package follow

import (
	"context"
	"testing"

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

// TestAdd: an added car is the fake owner's, paired, with a remote.
func TestAdd(t *testing.T) {
	f, err := Start(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const vin = "5YJ3E1EA7KF000009"
	if f.Remote(vin) != nil {
		t.Error("a remote for a car not added")
	}
	f.Add(vin)
	if f.Remote(vin) == nil {
		t.Fatal("no remote for the added car")
	}
	if f.Server.Car(vin) == nil {
		t.Error("the added car is not the fake owner's")
	}
}
