package main

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const setupTestPassword = "a password for the setup page"

// setupClient is a browser on the setup page of a running fleet2mqtt:
// cookies kept, redirects not followed, the CSRF token of the last page
// kept.
type setupClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfInPage = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newSetupClient(t *testing.T, httpAddr string) *setupClient {
	jar, _ := cookiejar.New(nil)
	s := &setupClient{t: t, base: "http://" + httpAddr + "/", c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	s.get("login")
	if r, _ := s.post("login", url.Values{"password": {setupTestPassword}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("setup login: %d", r.StatusCode)
	}
	return s
}

func (s *setupClient) read(resp *http.Response, err error) (*http.Response, string) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if m := csrfInPage.FindStringSubmatch(string(body)); m != nil {
		s.csrf = m[1]
	}
	return resp, string(body)
}

func (s *setupClient) get(path string) (*http.Response, string) {
	return s.read(s.c.Get(s.base + path))
}

func (s *setupClient) post(path string, form url.Values) (*http.Response, string) {
	form.Set("csrf", s.csrf)
	return s.read(s.c.PostForm(s.base+path, form))
}

// TestSetupPageActivity drives a simulated car from Home to a spot that
// is no place: the car's page on the setup page lists the drive and its
// CSV download holds it; adding the car's position there as a place makes
// tesla/<VIN>/place name it at once, and the place is back after a
// restart.
func TestSetupPageActivity(t *testing.T) {
	dataDir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Vehicle.Listen, cfg.MQTT.Embedded.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.HomeAssistant.Enabled = false
	cfg.Setup.Password = setupTestPassword
	cfg.Activity.TimeZone = "UTC"
	cfg.Places = []activity.Place{{Name: "Home", Latitude: 52.52, Longitude: 13.405, Radius: 150}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := a.wait(); err != nil {
				t.Errorf("app stopped with %v", err)
			}
		}
	}
	defer stop()

	car := newTestCar(t, dataDir, a.vehicleAddr)
	vin := car.car.VIN()
	sub := subscribe(t, a.mqttAddr, "tesla/"+vin+"/#")
	t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
	car.send(t0, enumDatum(telemetry.FieldGear, "P"), locDatum(52.52, 13.405), floatDatum(telemetry.FieldOdometer, 1000))
	sub.waitUntil(t, "tesla/"+vin+"/place", 10*time.Second, func(p string) bool { return p == "Home" })
	car.send(t0.Add(time.Minute), enumDatum(telemetry.FieldGear, "D"), floatDatum(telemetry.FieldVehicleSpeed, 30))
	car.send(t0.Add(6*time.Minute), locDatum(52.53, 13.47), floatDatum(telemetry.FieldOdometer, 1003))
	car.send(t0.Add(9*time.Minute), enumDatum(telemetry.FieldGear, "P"), floatDatum(telemetry.FieldVehicleSpeed, 0))
	car.send(t0.Add(15*time.Minute), floatDatum(telemetry.FieldInsideTemp, 20)) // past drive_grace: the drive ends
	sub.waitUntil(t, "tesla/"+vin+"/drive/last", 10*time.Second, func(p string) bool { return strings.Contains(p, `"end_place":""`) })
	if got := sub.wait(t, "tesla/"+vin+"/place"); got != "" {
		t.Fatalf("place after the drive %q, want none", got)
	}

	web := newSetupClient(t, a.httpAddr)
	_, body := web.get("history?vin=" + vin)
	started := t0.Add(time.Minute).UTC().Format("Mon 2 Jan 2006, 15:04") + " UTC"
	for _, want := range []string{started, "Home → elsewhere", "4.8 km", "8 min", // 3 miles
		`href="history.csv?vin=` + vin + `"`, `value="52.530000"`, `value="13.470000"`, "From the configuration file"} {
		if !strings.Contains(body, want) {
			t.Errorf("the car's page lacks %q:\n%s", want, body)
		}
	}
	resp, body := web.get("history.csv?vin=" + vin)
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "fleet2mqtt-"+vin+"-history.csv") {
		t.Errorf("Content-Disposition %q", cd)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][0] != "drive" || rows[1][1] != vin || rows[1][6] != "Home" || rows[1][7] != "" {
		t.Fatalf("CSV (%v):\n%s", err, body)
	}

	// The position becomes a place, at once.
	r, body := web.post("places?vin="+vin, url.Values{"action": {"add"}, "name": {"Gym"}, "radius": {"80"},
		"latitude": {"52.530000"}, "longitude": {"13.470000"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("add place: %d\n%s", r.StatusCode, body)
	}
	sub.waitUntil(t, "tesla/"+vin+"/place", 10*time.Second, func(p string) bool { return p == "Gym" })
	_, body = web.get("history?vin=" + vin)
	if !strings.Contains(body, "The car is at <b>Gym</b> now.") || !strings.Contains(body, "Added here") {
		t.Errorf("the car's page after adding a place:\n%s", body)
	}

	// After a restart the place is one of the places: the car leaves
	// and comes back.
	stop()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	a, err = start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); a.wait() }()
	car = newTestCar(t, dataDir, a.vehicleAddr)
	sub = subscribe(t, a.mqttAddr, "tesla/"+vin+"/#")
	car.send(t0.Add(20*time.Minute), locDatum(52.6, 13.6))
	sub.waitUntil(t, "tesla/"+vin+"/place", 10*time.Second, func(p string) bool { return p == "" })
	car.send(t0.Add(21*time.Minute), locDatum(52.5301, 13.4701))
	sub.waitUntil(t, "tesla/"+vin+"/place", 10*time.Second, func(p string) bool { return p == "Gym" })
}
