package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
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
	h, err := history.Open(filepath.Join(dataDir, historyFile))
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
