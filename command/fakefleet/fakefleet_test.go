package fakefleet

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// TestEngineConfig: an engine configured by EngineConfig commands a
// car added with AddCar, which the fake verifies and applies.
func TestEngineConfig(t *testing.T) {
	f, err := Start(context.Background(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const vin = "5YJ3E1EA7KF000009"
	f.AddCar(vin)
	e, err := command.New(f.EngineConfig(filepath.Join(t.TempDir(), "commands"), command.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := e.Execute(context.Background(), command.Request{VIN: vin, Name: "set_charge_limit", Args: []byte(`{"percent":66}`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := f.Server.Car(vin).State().ChargeLimit; got != 66 {
		t.Errorf("charge limit %d, want 66", got)
	}
}
