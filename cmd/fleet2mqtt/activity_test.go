package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	activitysvc "github.com/fleet2mqtt/fleet2mqtt/activity/service"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/internal/metrics"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// waitUntil waits up to limit for the last payload of topic to satisfy
// ok, and returns it.
func (s *subscriber) waitUntil(t *testing.T, topic string, limit time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(limit)
	for {
		s.mu.Lock()
		p, seen := s.msgs[topic]
		s.mu.Unlock()
		if seen && ok(p) {
			return p
		}
		select {
		case <-s.seen:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: no fitting message within %v; last %q", topic, limit, p)
		}
	}
}

// TestDemoCommute runs `fleet2mqtt demo --scenario commute`: the car drives
// from Home to Work, parks, drives back, charges to its limit and falls
// asleep, and fleet2mqtt publishes every status, the place, both drives'
// and the charge's summaries and events, TeslaMate's topics, and keeps
// the sessions in the history.
func TestDemoCommute(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	dataDir := t.TempDir()
	done := make(chan int, 1)
	go func() {
		done <- runDemo(ctx, []string{"-data-dir", dataDir, "-mqtt-listen", "127.0.0.1:0", "-vehicle-listen", "127.0.0.1:0",
			"-http-listen", "", "-speed", "2000", "-scenario", "commute"}, &stdout, &stderr)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("demo exited with %d\n%s", code, stderr.String())
		}
	}
	defer stop()

	watch := regexp.MustCompile(`mosquitto_sub -h (\S+) -p (\d+) -t 'tesla/#'`)
	activityLine := regexp.MustCompile(`Activity:\s+tesla/(\S+)/status`)
	deadline := time.Now().Add(20 * time.Second)
	var m, act []string
	for m == nil || act == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not say where to look:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m, act = watch.FindStringSubmatch(stdout.String()), activityLine.FindStringSubmatch(stdout.String())
	}
	addr, vin := m[1]+":"+m[2], act[1]
	car := "tesla/" + vin + "/"
	sub := subscribe(t, addr, "tesla/#")
	tm := subscribe(t, addr, "teslamate/#")

	var drive activity.Session
	sub.waitUntil(t, car+"drive/last", 60*time.Second, func(p string) bool {
		return json.Unmarshal([]byte(p), &drive) == nil && drive.EndPlace == "Work"
	})
	if drive.StartPlace != "Home" || drive.DistanceKm == nil || *drive.DistanceKm < 3 || drive.EndReason != activity.EndParked {
		t.Errorf("drive to work: %+v", drive)
	}
	if got := sub.waitUntil(t, car+"place", 30*time.Second, func(p string) bool { return p == "Work" }); got != "Work" {
		t.Errorf("place %q", got)
	}
	var charge activity.Session
	sub.waitUntil(t, car+"charge/last", 90*time.Second, func(p string) bool {
		return json.Unmarshal([]byte(p), &charge) == nil && charge.Kind == activity.KindCharge
	})
	if charge.StartPlace != "Home" || charge.EndReason != activity.EndComplete || charge.EnergyAddedKWh == nil || *charge.EnergyAddedKWh <= 0 ||
		charge.Cost == nil || *charge.Cost <= 0 || charge.Currency != "USD" || charge.SocEnd == nil || *charge.SocEnd < 79 {
		t.Errorf("charge: %+v", charge)
	}
	if _, err := time.Parse(time.RFC3339, sub.wait(t, car+"status/since")); err != nil {
		t.Errorf("status/since: %v", err)
	}
	// The car falls asleep after the charge.
	sub.waitUntil(t, car+"status", 60*time.Second, func(p string) bool { return p == "asleep" })

	// TeslaMate's topics, in its units.
	for topic, ok := range map[string]func(string) bool{
		"teslamate/cars/1/state":                func(p string) bool { return p != "" },
		"teslamate/cars/1/geofence":             func(p string) bool { return p == "Home" },
		"teslamate/cars/1/odometer":             isNumber,
		"teslamate/cars/1/usable_battery_level": isNumber,
		"teslamate/cars/1/charge_energy_added":  isNumber,
		"teslamate/cars/1/latitude":             isNumber,
		"teslamate/cars/1/plugged_in":           func(p string) bool { return p == "true" || p == "false" },
	} {
		tm.waitUntil(t, topic, 30*time.Second, ok)
	}

	stop()
	// The history holds both drives and the charge.
	h, err := history.Open(filepath.Join(dataDir, activitysvc.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	list, err := h.List(vin, history.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range list {
		kinds = append(kinds, string(s.Kind)+":"+s.StartPlace+">"+s.EndPlace)
	}
	got := strings.Join(kinds, " ")
	if !strings.Contains(got, "charge:Home>Home") || !strings.Contains(got, "drive:Home>Work") || !strings.Contains(got, "drive:Work>Home") {
		t.Errorf("history (newest first): %s", got)
	}
}

func isNumber(p string) bool {
	var f float64
	return json.Unmarshal([]byte(p), &f) == nil
}

// TestMain lets a test run this test binary as fleet2mqtt itself (see
// startProcess), so that it can kill it.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const asMainEnv = "FLEET2MQTT_TEST_AS_MAIN"

// process is fleet2mqtt serve running as a child process.
type process struct {
	cmd           *exec.Cmd
	out           *syncBuffer
	mqtt, vehicle string
	exited        chan struct{}
}

// startProcess runs `fleet2mqtt serve -config cfgPath` and waits until it
// says where it listens.
func startProcess(t *testing.T, cfgPath string) *process {
	t.Helper()
	p := &process{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "serve", "-config", cfgPath)
	p.cmd.Env = append(os.Environ(), asMainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	mqtt := regexp.MustCompile(`embedded broker on (\S+),`)
	vehicle := regexp.MustCompile(`Vehicles: mTLS WebSocket on (\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := p.out.String()
		m, v := mqtt.FindStringSubmatch(out), vehicle.FindStringSubmatch(out)
		if m != nil && v != nil {
			p.mqtt, p.vehicle = m[1], v[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("fleet2mqtt exited:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet2mqtt did not start:\n%s", out)
		}
	}
}

// testCar is a simulated car that sends records made at times of the
// test's choosing.
type testCar struct {
	t   *testing.T
	car *simulate.Car
	ctx context.Context
}

func newTestCar(t *testing.T, dataDir, vehicleAddr string) *testCar {
	t.Helper()
	pki, err := certs.LoadDir(filepath.Join(dataDir, "dev-pki"))
	if err != nil {
		t.Fatal(err)
	}
	ids, _, err := simulate.Identities(pki, 1)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{RootCAs: pki.ServerCA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	car, err := simulate.NewCar(simulate.CarConfigFor(simulate.CarConfig{URL: "wss://" + vehicleAddr + "/", TLS: tc}, ids[0]))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = car.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &testCar{t: t, car: car, ctx: ctx}
}

// send sends one data record made at, and waits for its acknowledgement.
func (c *testCar) send(at time.Time, data ...telemetry.Datum) {
	c.t.Helper()
	payload, err := simulate.EncodeData(c.car.VIN(), at, data, false)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.car.Send(c.ctx, c.car.NewMessage(telemetry.TopicV, payload, at)); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if err := c.car.Flush(ctx); err != nil {
		c.t.Fatalf("record at %v not acknowledged: %v", at, err)
	}
}

func enumDatum(f telemetry.Field, name string) telemetry.Datum {
	info, _ := telemetry.Lookup(f)
	ev, ok := info.Enum.ByName(name)
	if !ok {
		panic(name)
	}
	return telemetry.Datum{Field: f, Value: telemetry.EnumOf(info.Enum, ev)}
}

func floatDatum(f telemetry.Field, v float64) telemetry.Datum {
	return telemetry.Datum{Field: f, Value: telemetry.FloatValue(v)}
}

func locDatum(lat, lon float64) telemetry.Datum {
	return telemetry.Datum{Field: telemetry.FieldLocation, Value: telemetry.LocationValue(lat, lon)}
}

// TestDriveAcrossKill kills fleet2mqtt (SIGKILL) in the middle of a drive
// and starts it again: the status is back at once, and the drive that
// ends after the restart is one drive from Home to Work in the history.
func TestDriveAcrossKill(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := `data_dir: ` + filepath.Join(dir, "data") + `
vehicle: {listen: "127.0.0.1:0"}
mqtt:
  embedded: {listen: "127.0.0.1:0"}
  teslamate: {enabled: true, car_ids: {}}
http: {listen: ""}
homeassistant: {enabled: false}
places:
  - {name: Home, latitude: 52.52, longitude: 13.405, radius: 150}
  - {name: Work, latitude: 52.52, longitude: 13.552}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
	p := startProcess(t, cfgPath)
	car := newTestCar(t, filepath.Join(dir, "data"), p.vehicle)
	car.send(t0, enumDatum(telemetry.FieldGear, "P"), locDatum(52.52, 13.405), floatDatum(telemetry.FieldOdometer, 1000))
	car.send(t0.Add(time.Minute), enumDatum(telemetry.FieldGear, "D"), floatDatum(telemetry.FieldVehicleSpeed, 20))
	car.send(t0.Add(3*time.Minute), locDatum(52.52, 13.45), floatDatum(telemetry.FieldOdometer, 1002))
	sub := subscribe(t, p.mqtt, "tesla/#")
	vin := car.car.VIN()
	sub.waitUntil(t, "tesla/"+vin+"/status", 10*time.Second, func(s string) bool { return s == "driving" })

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p = startProcess(t, cfgPath)
	// Right after the start, before the car is back: the status is there.
	after := subscribe(t, p.mqtt, "tesla/#")
	if got := after.wait(t, "tesla/"+vin+"/status"); got != "driving" {
		t.Errorf("status after the restart %q, want driving", got)
	}
	tm := subscribe(t, p.mqtt, "teslamate/#")
	if got := tm.wait(t, "teslamate/cars/1/state"); got != "driving" {
		t.Errorf("teslamate state after the restart %q, want driving", got)
	}
	car = newTestCar(t, filepath.Join(dir, "data"), p.vehicle)
	car.send(t0.Add(10*time.Minute), locDatum(52.52, 13.552), floatDatum(telemetry.FieldOdometer, 1006.2), enumDatum(telemetry.FieldGear, "P"))
	car.send(t0.Add(15*time.Minute), floatDatum(telemetry.FieldInsideTemp, 20))
	var drive activity.Session
	after.waitUntil(t, "tesla/"+vin+"/drive/last", 10*time.Second, func(s string) bool { return json.Unmarshal([]byte(s), &drive) == nil })
	if drive.Start != t0.Add(time.Minute).UTC() || drive.StartPlace != "Home" || drive.EndPlace != "Work" || drive.DistanceKm == nil || *drive.DistanceKm != 9.98 {
		t.Errorf("drive across the kill: %+v", drive)
	}

	// A clean stop; the history holds the one drive.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	h, err := history.Open(filepath.Join(dir, "data", activitysvc.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.List(vin, history.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Start != drive.Start || list[0].EndPlace != "Work" {
		t.Errorf("history: %+v", list)
	}
	h.Close()

	// Started again, the car's first record makes a state object with
	// every value from before.
	p = startProcess(t, cfgPath)
	state := subscribe(t, p.mqtt, "tesla/"+vin+"/state")
	car = newTestCar(t, filepath.Join(dir, "data"), p.vehicle)
	car.send(t0.Add(20*time.Minute), floatDatum(telemetry.FieldInsideTemp, 21))
	got := state.waitUntil(t, "tesla/"+vin+"/state", 10*time.Second, func(s string) bool { return strings.Contains(s, `"InsideTemp":21`) })
	for _, want := range []string{`"Odometer":1006.2`, `"Gear":"P"`, `"Location":{"latitude":52.52,"longitude":13.552}`} {
		if !strings.Contains(got, want) {
			t.Errorf("state object after the restart lacks %s: %s", want, got)
		}
	}
}

// TestStreamingCost checks that what a car streams is counted per signal
// on /metrics, and its monthly bill estimated there and on its topic, with
// a budget warning.
func TestStreamingCost(t *testing.T) {
	a := startTestApp(t, func(c *config.Config) { c.Activity.StreamingBudgetDollars = 0.01 })
	car := newTestCar(t, a.cfg.DataDir, a.vehicleAddr)
	now := time.Now()
	for i := range 3 {
		car.send(now.Add(time.Duration(i)*time.Second), floatDatum(telemetry.FieldSoc, 80-float64(i)), locDatum(52.52, 13.405+float64(i)/1000))
	}
	vin := car.car.VIN()
	sub := subscribe(t, a.mqttAddr, "tesla/"+vin+"/streaming/#")
	a.activity.PublishStreamCost(context.Background(), time.Now())
	var est struct {
		Monthly       float64 `json:"monthly_dollars"`
		SignalsPerDay float64 `json:"signals_per_day"`
		Top           []struct {
			Signal string  `json:"signal"`
			PerDay float64 `json:"per_day"`
		} `json:"top_signals"`
		Over bool `json:"over_budget"`
	}
	if err := json.Unmarshal([]byte(sub.wait(t, "tesla/"+vin+"/streaming/cost")), &est); err != nil {
		t.Fatal(err)
	}
	// Six signals in (at least) an hour: 144 a day.
	if est.SignalsPerDay != 144 || len(est.Top) != 2 || est.Top[0].PerDay != 72 || !est.Over || est.Monthly != 0.03 {
		t.Errorf("estimate %+v", est)
	}
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`fleet2mqtt_vehicle_signals_total{car="` + metrics.CarPseudonym(vin) + `",signal="Soc"} 3`,
		`fleet2mqtt_vehicle_signals_total{car="` + metrics.CarPseudonym(vin) + `",signal="Location"} 3`,
		`fleet2mqtt_vehicle_streaming_monthly_dollars{car="` + metrics.CarPseudonym(vin) + `"} 0.03`,
		`fleet2mqtt_vehicle_streaming_over_budget{car="` + metrics.CarPseudonym(vin) + `"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
