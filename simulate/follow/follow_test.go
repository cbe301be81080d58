package follow

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
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

// stream is a real ingest server on loopback that keeps the last value
// of every signal its one simulated car streamed.
type stream struct {
	url  string
	pki  *certs.Bundle
	mu   sync.Mutex
	last map[string]telemetry.Value
}

func startStream(t *testing.T, vin string) *stream {
	t.Helper()
	pki, err := certs.NewBundle([]string{"127.0.0.1"}, vin)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{pki: pki, last: map[string]telemetry.Value{}}
	sink := ingest.SinkFunc(func(_ context.Context, rec *telemetry.Record) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range rec.Data {
			if info, ok := telemetry.Lookup(d.Field); ok {
				s.last[info.Name] = d.Value
			}
		}
		return nil
	})
	cfg := ingest.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	srv, err := ingest.New(cfg, &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	s.url = "wss://" + ln.Addr().String() + "/"
	return s
}

// says is what the car last streamed for the signal name, as text.
func (s *stream) says(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.last[name]
	if !ok {
		return ""
	}
	if short := v.EnumShort(); short != "" {
		return short
	}
	return v.String()
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// commanded plays scenario on a simulated car that follows the fake
// Tesla, waits until the car streams before (signal name → value) and
// its fake car agrees, sends the signed command name, and waits until
// the stream says after.
func commanded(t *testing.T, cfg simulate.PlayConfig, before map[string]string, agrees func(fleetapitest.CarState) bool, name string, after map[string]string) {
	const vin = "5YJ3E1EA7KF000011"
	s := startStream(t, vin)
	f, err := Start(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Add(vin)
	car, err := simulate.NewCar(simulate.CarConfigFor(simulate.CarConfig{URL: s.url, TLS: &tls.Config{RootCAs: s.pki.ServerCA.Pool()}},
		simulate.Identity{VIN: vin, Certificate: s.pki.Vehicles[vin]}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg.Remote = f.Remote
	go func() { done <- simulate.Play(ctx, car, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Play: %v", err)
		}
	}()

	streams := func(want map[string]string) func() bool {
		return func() bool {
			for name, v := range want {
				if s.says(name) != v {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, fmt.Sprintf("the car to stream %v", before), streams(before))
	waitFor(t, "the fake car to follow the simulated car", func() bool { return agrees(f.Server.Car(vin).State()) })
	e, err := command.New(f.EngineConfig(filepath.Join(t.TempDir(), "commands"), command.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := e.Execute(ctx, command.Request{VIN: vin, Name: name}); res.Err != nil {
		t.Fatalf("%s: %v", name, res.Err)
	}
	waitFor(t, fmt.Sprintf("the car to stream %v after %s", after, name), streams(after))
}

// TestLockAParkedUnlockedCar: the fake car starts from the simulated
// car's state, so locking a car whose stream says unlocked changes
// something, and the stream says locked. The car stays parked with the
// driver's door open for 5 simulated seconds: played at a twentieth of
// real time, long enough for the command to arrive first.
func TestLockAParkedUnlockedCar(t *testing.T) {
	commanded(t, simulate.PlayConfig{Scenario: simulate.ScenarioPark, Seed: 1, Speed: 0.05, Interval: time.Millisecond},
		map[string]string{"Locked": "false", "Gear": "P"},
		func(st fleetapitest.CarState) bool { return !st.Locked },
		"door_lock", map[string]string{"Locked": "true"})
}

// TestClimateOffWhileDriving: a driving car streams HVAC on; its fake car
// knows, and auto_conditioning_stop turns the stream's HVAC off.
func TestClimateOffWhileDriving(t *testing.T) {
	commanded(t, simulate.PlayConfig{Scenario: simulate.ScenarioDrive, Seed: 1, Speed: 1},
		map[string]string{"HvacPower": "On", "Gear": "D"},
		func(st fleetapitest.CarState) bool { return st.ClimateOn },
		"auto_conditioning_stop", map[string]string{"HvacPower": "Off", "Gear": "D"})
}
