package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// appWithDevCerts writes a PKI with dev-certs and runs fleet2mqtt
// configured from its files, as its output tells a user to.
func appWithDevCerts(t *testing.T) (*app, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	runDevCertsOK(t, "--out", dir)
	a := startTestApp(t, func(c *config.Config) {
		c.Vehicle.TLS.CertFile = filepath.Join(dir, certs.ServerFile)
		c.Vehicle.TLS.KeyFile = filepath.Join(dir, certs.ServerKeyFile)
		c.Vehicle.TLS.ClientCAFiles = []string{filepath.Join(dir, certs.VehicleCAFile)}
	})
	return a, dir
}

// TestSimulateStreamsThroughDevCerts: cars with dev-certs certificates
// (the stored one and one issued on the fly) connect to fleet2mqtt
// configured from the same files, and their signals reach MQTT.
func TestSimulateStreamsThroughDevCerts(t *testing.T) {
	a, dir := appWithDevCerts(t)
	live := subscribe(t, a.mqttAddr, "tesla/#")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runSimulate(ctx, []string{"--server", a.vehicleAddr, "--ca", filepath.Join(dir, certs.CAFile),
			"--certs", dir, "--cars", "2", "--scenario", "drive", "--speed", "100"}, &stdout, &stderr)
	}()
	for _, vin := range []string{simulate.TestVIN(1), simulate.TestVIN(2)} {
		if got := live.wait(t, "tesla/"+vin+"/Gear"); got != "D" {
			t.Errorf("%s: Gear %q, want D", vin, got)
		}
		if got := live.wait(t, "tesla/"+vin+"/Location"); !strings.Contains(got, `"latitude":37.4`) {
			t.Errorf("%s: Location %q, want a position in Palo Alto", vin, got)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("simulate = %d: %s", code, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "Simulating 2 car(s)") || !strings.Contains(out, "acknowledged") {
		t.Errorf("output %q", out)
	}
	if !strings.Contains(stderr.String(), "sent V") {
		t.Errorf("log %q tells nothing about what was sent", stderr.String())
	}
}

// TestSimulateLoad runs the load mode against fleet2mqtt with its embedded
// broker and reads the JSON summary; it asserts counts, not timings.
func TestSimulateLoad(t *testing.T) {
	a, dir := appWithDevCerts(t)
	var stdout, stderr bytes.Buffer
	code := runSimulate(context.Background(), []string{"--load", "--server", a.vehicleAddr, "--certs", dir,
		"--cars", "3", "--inflight", "2", "--records", "30", "--fields", "10",
		"--mqtt", a.mqttAddr, "--mqtt-topic", "tesla/+/+", "--settle", "300ms",
		"--server-pid", "0"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("simulate --load = %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res simulate.LoadResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line %q is not the JSON summary: %v", lines[len(lines)-1], err)
	}
	if !res.Complete || res.Records != 90 || res.Fields != 10 || res.MQTT == nil || res.MQTT.Messages < 90 {
		t.Errorf("summary %+v (mqtt %+v): want 90 records and their messages counted", res, res.MQTT)
	}
	if !strings.Contains(stdout.String(), "records/s") {
		t.Errorf("no human summary in %q", stdout.String())
	}
}

func TestSimulateUsage(t *testing.T) {
	dir := t.TempDir()
	runDevCertsOK(t, "--out", dir)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--certs DIR is required"},
		{[]string{"--certs", dir, "--cars", "0"}, 2, "--cars 0"},
		{[]string{"--certs", dir, "--scenario", "fly"}, 2, `unknown scenario "fly"`},
		{[]string{"--certs", dir, "--speed", "0"}, 2, "--speed 0"},
		{[]string{"--certs", dir, "--inflight", "4"}, 2, "--inflight does not apply in scenario mode"},
		{[]string{"--certs", dir, "--load", "--scenario", "drive"}, 2, "--scenario does not apply in --load"},
		{[]string{"--certs", dir, "--load", "--mqtt-qos", "3"}, 2, "--mqtt-qos 3"},
		{[]string{"--certs", dir, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--certs", dir, "--server", "nowhere"}, 1, "want host:port"},
		{[]string{"--certs", filepath.Join(dir, "none")}, 1, "give the server's CA with --ca"},
		{[]string{"--certs", dir, "--ca", filepath.Join(dir, "missing.pem")}, 1, "--ca"},
		{[]string{"-h"}, 0, "Usage: fleet2mqtt simulate"},
	} {
		var stdout, stderr bytes.Buffer
		code := runSimulate(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("simulate %q = %d, %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

// TestSimulateDuration: --duration ends a run by itself.
func TestSimulateDuration(t *testing.T) {
	a, dir := appWithDevCerts(t)
	var stdout, stderr syncBuffer
	start := time.Now()
	code := runSimulate(context.Background(), []string{"--server", a.vehicleAddr, "--certs", dir,
		"--scenario", "park", "--speed", "50", "--duration", "300ms"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("simulate = %d: %s", code, stderr.String())
	}
	if time.Since(start) > time.Minute {
		t.Error("--duration did not stop the run")
	}
}
