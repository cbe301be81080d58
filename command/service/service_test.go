package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// TestEngineConfigSaysWhatIsMissing: each missing piece of the setup
// page's data is named, with the step or flag that provides it.
func TestEngineConfigSaysWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	c := Credentials{DataDir: dir}
	if _, err := c.EngineConfig(); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Errorf("no key: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "setup"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fleetapi.LoadOrCreateKey(setup.KeyPath(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EngineConfig(); err == nil || !strings.Contains(err.Error(), "client id") {
		t.Errorf("no client id: %v", err)
	}
	c.Setup.ClientID = "client"
	if _, err := c.EngineConfig(); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("no token: %v", err)
	}
	c.TokenFile = filepath.Join(dir, "token.json")
	if err := os.WriteFile(c.TokenFile, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Settings.RateLimit = command.RateLimit{Commands: 7}
	cfg, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Key == nil || cfg.Transport == nil || cfg.SessionDir != filepath.Join(dir, "commands") || cfg.RateLimit.Commands != 7 {
		t.Errorf("config %+v", cfg)
	}
}

// TestLazyEngine: a failed build is reported as "not ready" and tried
// again with the next command; what fleet_status said reaches the engine
// built later.
func TestLazyEngine(t *testing.T) {
	builds := 0
	l := &lazyEngine{config: func() (command.Config, error) {
		builds++
		return command.Config{}, errors.New("no key yet")
	}}
	l.SetProtocolRequired("VIN1", false)
	for range 2 {
		res := l.Execute(context.Background(), command.Request{VIN: "VIN1", Name: "flash_lights"})
		if res.Err == nil || !strings.Contains(res.Reason, "not ready: no key yet") || res.VIN != "VIN1" {
			t.Fatalf("result %+v", res)
		}
	}
	if builds != 2 {
		t.Errorf("%d builds, want one per command until one succeeds", builds)
	}
	if required, ok := l.protocol["VIN1"]; !ok || required {
		t.Error("fleet_status's answer was not kept for the engine")
	}
}

// TestOff: with commands off the service counts, the setup page sees no
// commands, and the component has nothing to start.
func TestOff(t *testing.T) {
	s, err := New(Config{Section: "commands"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.ForSetup() != nil {
		t.Error("ForSetup is not nil with commands off")
	}
	c := s.Component(nil)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.counters.CommandSent("VIN1")
	s.counters.WakeSent("VIN1")
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector(func(vin string) string { return "car-" + vin }))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	month := command.Month(time.Now())
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["car"] != "car-VIN1" || labels["month"] != month {
				t.Errorf("%s labels %v", f.GetName(), labels)
			}
			got[f.GetName()] = m.GetCounter().GetValue()
		}
	}
	if got["fleet2mqtt_vehicle_commands_month"] != 1 || got["fleet2mqtt_vehicle_wakes_month"] != 1 {
		t.Errorf("metrics %v", got)
	}
}
