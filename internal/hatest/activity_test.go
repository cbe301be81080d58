package hatest_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/hatest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestActivity runs `fleet2mqtt demo --scenario commute` (at 1000 times
// real time: a commute in about half a minute) on mosquitto, with a real Home
// Assistant on the same mosquitto, and records every state Home
// Assistant gives the car's derived entities through a full commute: the
// car leaves Home, parks at Work, drives back, charges at Home and falls
// asleep. It checks what docs/home-assistant.md promises: the Status enum
// sensor passes through driving, parked, charging and asleep; the Drive,
// Charging session and Place event entities fire started/ended and
// leave/enter with the summaries as attributes; the Place sensor names
// the place, away in between; and the last-session sensors show the
// figures of the summaries, in km, min, kWh and the charging currency.
func TestActivity(t *testing.T) {
	needHomeAssistant(t)
	bin := buildFleet2mqtt(t)
	broker := testenv.Mosquitto(t)
	host, portStr, _ := strings.Cut(broker.Addr, ":")
	port, _ := strconv.Atoi(portStr)
	ha := hatest.Start(t)
	ha.AddMQTT(hatest.Broker{Host: host, Port: port})

	// Home Assistant listens before the car's first record.
	events, err := ha.WebSocket().Subscribe("state_changed")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(events)

	d := newDemo(t, bin)
	d.scenario, d.speed, d.mqttPort = "commute", "1000", 0
	cfg := fleetConfig(d.dataDir, d.vehicleAddr, d.httpAddr, fmt.Sprintf("  broker: external\n  external:\n    url: mqtt://%s\n", broker.Addr))
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()

	derived := []string{"status", "status_since", "place", "place_event", "drive_event", "charge_event",
		"last_drive", "last_drive_distance", "last_drive_duration", "last_drive_energy",
		"last_charge", "last_charge_energy", "last_charge_cost"}
	ids := waitEntities(t, ha, d.vin, derived)

	// The first commute starts before Home Assistant has the entities
	// (fleet2mqtt announces a car a couple of seconds after its first
	// records): watch the next one, from the first asleep on. A commute
	// ends asleep after its charge.
	const commuteLimit = 2 * time.Minute
	rec.waitFor(t, ids["status"], commuteLimit, func(s []haState) bool { return slices.Contains(states(s), "asleep") })
	rec.from(rec.seq())
	rec.waitFor(t, ids["charge_event"], commuteLimit, func(s []haState) bool { return countEvents(s, "ended") >= 1 })
	rec.waitFor(t, ids["status"], commuteLimit, func(s []haState) bool { return slices.Contains(states(s), "asleep") })
	d.stop()

	t.Run("status", func(t *testing.T) {
		got := states(rec.of(ids["status"]))
		if !isSubsequence([]string{"driving", "parked", "driving", "charging", "asleep"}, got) {
			t.Errorf("%s went through %v, want driving, parked (at Work), driving, charging, asleep in that order", ids["status"], got)
		}
		if _, err := time.Parse(time.RFC3339, rec.last(ids["status_since"]).State); err != nil {
			t.Errorf("%s: %v", ids["status_since"], err)
		}
	})

	t.Run("place", func(t *testing.T) {
		got := states(rec.of(ids["place"]))
		if !isSubsequence([]string{"away", "Work", "away", "Home"}, got) {
			t.Errorf("%s went through %v, want away, Work, away, Home in that order", ids["place"], got)
		}
		var evs []string
		for _, s := range rec.of(ids["place_event"]) {
			if s.fired() {
				evs = append(evs, fmt.Sprint(s.Attributes["event_type"], " ", s.Attributes["place"]))
			}
		}
		if !isSubsequence([]string{"leave Home", "enter Work", "leave Work", "enter Home"}, evs) {
			t.Errorf("%s fired %v, want leave Home, enter Work, leave Work, enter Home", ids["place_event"], evs)
		}
	})

	var lastDrive, lastCharge map[string]any
	t.Run("drive events", func(t *testing.T) {
		var evs []string
		var ended []map[string]any
		for _, s := range rec.of(ids["drive_event"]) {
			if s.fired() {
				evs = append(evs, fmt.Sprint(s.Attributes["event_type"]))
				if s.Attributes["event_type"] == "ended" {
					ended = append(ended, s.Attributes)
				}
			}
		}
		if !isSubsequence([]string{"started", "ended", "started", "ended"}, evs) {
			t.Fatalf("%s fired %v, want started, ended twice", ids["drive_event"], evs)
		}
		i := slices.IndexFunc(ended, func(a map[string]any) bool { return a["end_place"] == "Work" })
		if i < 0 || i+1 >= len(ended) {
			t.Fatalf("no drive to Work and back among %v", ended)
		}
		toWork, home := ended[i], ended[i+1]
		if toWork["start_place"] != "Home" || number(toWork["distance_km"]) < 3 || home["end_place"] != "Home" {
			t.Errorf("drive to work %v, then %v", toWork, home)
		}
		lastDrive = ended[len(ended)-1]
	})

	t.Run("charge events", func(t *testing.T) {
		var evs []string
		for _, s := range rec.of(ids["charge_event"]) {
			if s.fired() {
				evs = append(evs, fmt.Sprint(s.Attributes["event_type"]))
				if s.Attributes["event_type"] == "ended" {
					lastCharge = s.Attributes
				}
			}
		}
		if !isSubsequence([]string{"started", "ended"}, evs) {
			t.Fatalf("%s fired %v, want started, ended", ids["charge_event"], evs)
		}
		if lastCharge["start_place"] != "Home" || number(lastCharge["energy_added_kwh"]) <= 0 || number(lastCharge["cost"]) <= 0 || lastCharge["currency"] != "USD" {
			t.Errorf("charge ended with %v, want at Home, energy added and its cost in USD", lastCharge)
		}
	})

	t.Run("last sessions", func(t *testing.T) {
		if lastDrive == nil || lastCharge == nil {
			t.Skip("no session ended (see above)")
		}
		sensor := func(key string, want any, unit string) {
			t.Helper()
			s := rec.last(ids[key])
			if got := number(s.State); math.Abs(got-number(want)) > 0.01 || s.Attributes["unit_of_measurement"] != unit {
				t.Errorf("%s: %q %v, want %v %s as in the last summary", ids[key], s.State, s.Attributes["unit_of_measurement"], want, unit)
			}
		}
		sensor("last_drive_distance", lastDrive["distance_km"], "km")
		sensor("last_drive_duration", lastDrive["duration_min"], "min")
		sensor("last_drive_energy", lastDrive["energy_used_kwh"], "kWh")
		sensor("last_charge_energy", lastCharge["energy_added_kwh"], "kWh")
		sensor("last_charge_cost", lastCharge["cost"], "USD")
		for key, summary := range map[string]map[string]any{"last_drive": lastDrive, "last_charge": lastCharge} {
			s := rec.last(ids[key])
			got, err1 := time.Parse(time.RFC3339, s.State)
			want, err2 := time.Parse(time.RFC3339, fmt.Sprint(summary["end"]))
			if err1 != nil || err2 != nil || !got.Equal(want.Truncate(time.Second)) && !got.Equal(want) {
				t.Errorf("%s: %q, want the end of the last session %v", ids[key], s.State, summary["end"])
			}
			if s.Attributes["start"] != summary["start"] {
				t.Errorf("%s attributes %v, want the summary's", ids[key], s.Attributes)
			}
		}
	})

	checkMQTTLog(t, ha)
}

// haState is one state an entity had.
type haState struct {
	State      string
	Attributes map[string]any
	seq        int // its place among every state recorded
}

// fired: an event entity's state after an event (a timestamp), not
// unknown or unavailable.
func (s haState) fired() bool {
	_, err := time.Parse(time.RFC3339Nano, s.State)
	return err == nil
}

// recorder keeps every state of every entity, from state_changed events.
type recorder struct {
	mu     sync.Mutex
	states map[string][]haState
	n      int // states recorded
	start  int // of returns the states from this seq on
	more   chan struct{}
}

func newRecorder(events <-chan hatest.Event) *recorder {
	r := &recorder{states: map[string][]haState{}, more: make(chan struct{}, 1)}
	go func() {
		for ev := range events {
			var data struct {
				EntityID string `json:"entity_id"`
				NewState *struct {
					State      string         `json:"state"`
					Attributes map[string]any `json:"attributes"`
				} `json:"new_state"`
			}
			if json.Unmarshal(ev.Data, &data) != nil || data.NewState == nil {
				continue
			}
			r.mu.Lock()
			r.states[data.EntityID] = append(r.states[data.EntityID], haState{data.NewState.State, data.NewState.Attributes, r.n})
			r.n++
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// of returns the states entity had since from, in order.
func (r *recorder) of(entity string) []haState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []haState
	for _, s := range r.states[entity] {
		if s.seq >= r.start {
			out = append(out, s)
		}
	}
	return out
}

// seq is the number of states recorded so far.
func (r *recorder) seq() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// from makes of forget the states recorded before seq.
func (r *recorder) from(seq int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start = seq
}

// last returns the last state entity had while fleet2mqtt ran (not
// unavailable), from all states recorded: Home Assistant records no
// change when a value is the same as before.
func (r *recorder) last(entity string) haState {
	r.mu.Lock()
	list := slices.Clone(r.states[entity])
	r.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].State != "unavailable" {
			return list[i]
		}
	}
	return haState{}
}

// waitFor waits until entity's states satisfy ok.
func (r *recorder) waitFor(t *testing.T, entity string, limit time.Duration, ok func([]haState) bool) {
	t.Helper()
	deadline := time.After(limit)
	for !ok(r.of(entity)) {
		select {
		case <-r.more:
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatalf("%s after %v: %v", entity, limit, states(r.of(entity)))
		}
	}
}

func states(list []haState) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if len(out) == 0 || out[len(out)-1] != s.State {
			out = append(out, s.State)
		}
	}
	return out
}

func countEvents(list []haState, eventType string) int {
	n := 0
	for _, s := range list {
		if s.fired() && s.Attributes["event_type"] == eventType {
			n++
		}
	}
	return n
}

// isSubsequence reports whether want appears in got in order, not
// necessarily next to each other.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// number is v as a float64 (a JSON number or a numeric string), NaN
// otherwise.
func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return f
		}
	}
	return math.NaN()
}

// waitEntities waits until the car's device has an entity for each
// component key of want, and returns their entity ids by key.
func waitEntities(t *testing.T, ha *hatest.HomeAssistant, vin string, want []string) map[string]string {
	t.Helper()
	ws := ha.WebSocket()
	dev := carDevice(t, ws, vin)
	deadline := time.Now().Add(haLimit)
	for {
		ids := map[string]string{}
		var missing []string
		comps := carComponents(t, ws, dev, vin)
		for _, k := range want {
			if e, ok := comps[k]; ok {
				ids[k] = e.EntityID
			} else {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the car's device has no entity for %v after %v", missing, haLimit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
