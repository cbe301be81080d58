package announce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TestAnnounceCar streams golden records as a car and reads what a Home
// Assistant would see: a retained device config with a component for
// every signal the car sent, named after the car, and its active alerts.
func TestAnnounceCar(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	live.subscribe(t, "tesla/"+testVIN+"/active_alerts")
	a, _ := e.start(discovery.DefaultConfig())

	send(t, a, e.bridge, golden(t, "01_v_scalar_types", telemetry.TopicV, testVIN))
	topic := configTopic(testVIN)
	_, m := live.waitFor(t, -1, topic, anyPayload)
	comps, name := components(t, m.payload)
	if want := []string{"Soc", "ChargeLimitSoc", "VehicleSpeed", "Odometer", "Locked", "SentryMode", "streaming", "alerts"}; !has(comps, want...) {
		t.Errorf("components %v, want at least %v", keys(comps), want)
	}
	if has(comps, "Location") || has(comps, "Gear") {
		t.Errorf("components %v hold signals the car did not send", keys(comps))
	}
	if name != "Golden Test Car" {
		t.Errorf("device name %q, want the VehicleName signal", name)
	}
	if !strings.Contains(m.payload, `"sw":"2025.44.25.5 abcdef123456"`) {
		t.Errorf("config lacks the Version signal as software version: %s", m.payload)
	}
	if comps["Locked"] != "binary_sensor" || comps["Soc"] != "sensor" {
		t.Errorf("platforms Locked %q, Soc %q", comps["Locked"], comps["Soc"])
	}

	// The alerts entity gets a value when the car is first announced.
	_, alerts := live.waitFor(t, -1, "tesla/"+testVIN+"/active_alerts", anyPayload)
	if alerts.payload != `{"count":0,"alerts":[]}` {
		t.Errorf("active alerts %s, want none", alerts.payload)
	}

	// Retained: a client that subscribes later gets it at once.
	late := dial(t, e.broker.Addr("tcp"))
	late.subscribe(t, topic)
	if _, got := late.waitFor(t, -1, topic, anyPayload); !got.retain || got.payload != m.payload {
		t.Errorf("a late subscriber got %v, want the config, retained", got)
	}

	// The golden alerts frame: the bridge publishes the active ones.
	send(t, a, e.bridge, golden(t, "08_alerts", telemetry.TopicAlerts, testVIN))
	_, alerts = live.waitFor(t, -1, "tesla/"+testVIN+"/active_alerts", func(p string) bool { return strings.Contains(p, `"count":2`) })
	want := `{"count":2,"alerts":[` +
		`{"name":"UI_a001_TestAlertActive","started_at":"2025-12-31T23:59:00Z","audiences":["Customer","Service"]},` +
		`{"name":"UI_a002_TestAlertEnded","started_at":"2025-12-31T23:59:50Z","audiences":["ServiceFix"]}]}`
	if alerts.payload != want {
		t.Errorf("active alerts\n got %s\nwant %s", alerts.payload, want)
	}
}

// TestNewSignalAnnouncedOnce: records with signals already announced
// publish no config; a new signal publishes exactly one.
func TestNewSignalAnnouncedOnce(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	a, _ := e.start(discovery.DefaultConfig())
	topic := configTopic(testVIN)

	send(t, a, e.bridge, data(testVIN,
		datum(telemetry.FieldSoc, telemetry.FloatValue(50)),
		datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie"))))
	i, _ := live.waitFor(t, -1, topic, anyPayload)
	before := len(live.all(topic))

	for n := range 200 {
		send(t, a, e.bridge, data(testVIN,
			datum(telemetry.FieldSoc, telemetry.FloatValue(50+float64(n)/10)),
			datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie"))))
	}
	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldGear, telemetry.StringValue("D"))))
	i, m := live.waitFor(t, i, topic, func(p string) bool {
		comps, _ := components(t, p)
		return has(comps, "Gear")
	})
	if comps, name := components(t, m.payload); !has(comps, "Soc", "Gear") || name != "Ellie" {
		t.Errorf("components %v, name %q; want Soc and Gear, Ellie", keys(comps), name)
	}
	// A last change, to know that nothing else came in between.
	a.SetDisplayName(testVIN, "Ellie") // the same: no news
	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie II"))))
	live.waitFor(t, i, topic, func(p string) bool { _, name := components(t, p); return name == "Ellie II" })
	if got := len(live.all(topic)); got != before+2 {
		t.Errorf("%d configs after 202 records with two changes, want %d", got-before, 2)
	}
}

// gate is a publisher that can hold the next discovery message until the
// test lets it go.
type gate struct {
	pubsub.Publisher
	mu      sync.Mutex
	armed   bool
	held    chan struct{}
	release chan struct{}
}

func (g *gate) Publish(ctx context.Context, msgs []pubsub.Message) error {
	g.mu.Lock()
	hold := g.armed && len(msgs) > 0 && strings.HasPrefix(msgs[0].Topic, "homeassistant/")
	if hold {
		g.armed = false
	}
	g.mu.Unlock()
	if hold {
		close(g.held)
		<-g.release
	}
	return g.Publisher.Publish(ctx, msgs)
}

// TestDebounce: signals that arrive while a config is on its way make one
// config, not one per record.
func TestDebounce(t *testing.T) {
	e := newEnv(t)
	g := &gate{Publisher: e.broker, held: make(chan struct{}), release: make(chan struct{})}
	e.pub = g
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	a, _ := e.start(discovery.DefaultConfig())
	topic := configTopic(testVIN)

	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(50))))
	i, _ := live.waitFor(t, -1, topic, anyPayload)

	// Hold the announcer in the middle of publishing a new name …
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	a.SetDisplayName(testVIN, "Ellie")
	<-g.held
	// … while the car sends three new signals in three records.
	for _, f := range []telemetry.Field{telemetry.FieldGear, telemetry.FieldOdometer, telemetry.FieldInsideTemp} {
		send(t, a, e.bridge, data(testVIN, datum(f, telemetry.IntValue(1))))
	}
	close(g.release)
	i, _ = live.waitFor(t, i, topic, func(p string) bool { _, name := components(t, p); return name == "Ellie" })
	i, m := live.waitFor(t, i, topic, anyPayload)
	if comps, _ := components(t, m.payload); !has(comps, "Gear", "Odometer", "InsideTemp") {
		t.Errorf("the config after the held one has %v, want all three new signals", keys(comps))
	}
	// Nothing more: the next message is the one of the next change.
	a.SetDisplayName(testVIN, "Last")
	_, m = live.waitFor(t, i, topic, anyPayload)
	if _, name := components(t, m.payload); name != "Last" {
		t.Errorf("a config named %q came before the last change", name)
	}
}

// TestBirth: when Home Assistant says online on its status topic, every
// car's config comes again, then every car's values.
func TestBirth(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/device/#")
	live.subscribe(t, "tesla/+/+")
	a, _ := e.start(discovery.DefaultConfig())

	for _, vin := range []string{testVIN, otherVIN} {
		send(t, a, e.bridge,
			&telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{Status: telemetry.StatusConnected}},
			data(vin, datum(telemetry.FieldSoc, telemetry.FloatValue(61.5)), datum(telemetry.FieldGear, telemetry.StringValue("P"))))
		live.waitFor(t, -1, configTopic(vin), anyPayload)
	}
	live.waitFor(t, -1, "tesla/"+otherVIN+"/active_alerts", anyPayload)
	live.mu.Lock()
	mark := len(live.msgs) - 1
	live.mu.Unlock()
	otherConfigs := len(live.all(configTopic(otherVIN)))

	ha := dial(t, e.broker.Addr("tcp"))
	ha.publish(t, "homeassistant/status", "online", false)

	// Configs of both cars first, then the values of both.
	var configs, values []int
	for _, vin := range []string{testVIN, otherVIN} {
		i, _ := live.waitFor(t, mark, configTopic(vin), anyPayload)
		configs = append(configs, i)
		for _, level := range []string{"Soc", "Gear", "state", "connected", "active_alerts"} {
			i, m := live.waitFor(t, mark, "tesla/"+vin+"/"+level, anyPayload)
			values = append(values, i)
			if level == "Soc" && m.payload != "61.5" {
				t.Errorf("%s republished as %q", level, m.payload)
			}
		}
	}
	if slices.Max(configs) > slices.Min(values) {
		t.Errorf("values (at %v) came before the configs (at %v)", values, configs)
	}

	// offline asks for nothing.
	ha.publish(t, "homeassistant/status", "offline", false)
	a.SetDisplayName(testVIN, "sentinel")
	live.waitFor(t, mark, configTopic(testVIN), func(p string) bool { _, n := components(t, p); return n == "sentinel" })
	if n := len(live.all(configTopic(otherVIN))) - otherConfigs; n != 1 {
		t.Errorf("%d configs of the other car since the birth, want 1", n)
	}
}

// TestStreamingRemovesEntities: a signal taken out of the streaming
// configuration loses its entity in Home Assistant.
func TestStreamingRemovesEntities(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	a, _ := e.start(discovery.DefaultConfig())
	topic := configTopic(testVIN)

	send(t, a, e.bridge, data(testVIN,
		datum(telemetry.FieldSoc, telemetry.FloatValue(50)),
		datum(telemetry.FieldGear, telemetry.StringValue("D")),
		datum(telemetry.FieldLocked, telemetry.BoolValue(true))))
	i, _ := live.waitFor(t, -1, topic, func(p string) bool { c, _ := components(t, p); return has(c, "Gear", "Locked") })

	a.SetStreaming(testVIN, []telemetry.Field{telemetry.FieldSoc, telemetry.FieldOdometer})
	i, removal := live.waitFor(t, i, topic, anyPayload)
	for _, bare := range []string{`"Gear":{"p":"sensor"}`, `"Locked":{"p":"binary_sensor"}`} {
		if !strings.Contains(removal.payload, bare) {
			t.Errorf("the removal config lacks %s: %s", bare, removal.payload)
		}
	}
	_, m := live.waitFor(t, i, topic, anyPayload)
	comps, _ := components(t, m.payload)
	if has(comps, "Gear") || has(comps, "Locked") || !has(comps, "Soc", "Odometer") {
		t.Errorf("components after the removal %v, want Soc and Odometer, without Gear and Locked", keys(comps))
	}
}

// TestRestart: a second run on the same state file knows what the first
// announced; configuration changes take effect at its start, removing
// entities and configs that are no longer wanted.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	a, stop := e.start(discovery.DefaultConfig())
	send(t, a, e.bridge, data(testVIN,
		datum(telemetry.FieldSoc, telemetry.FloatValue(50)),
		datum(telemetry.FieldGear, telemetry.StringValue("D")),
		datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie"))))
	live.waitFor(t, -1, configTopic(testVIN), anyPayload)
	stop()

	raw, err := os.ReadFile(e.statePath())
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if c := st.Cars[testVIN]; c.Name != "Ellie" || !slices.Equal(c.Seen, []string{"Soc", "Gear", "VehicleName"}) ||
		c.Announced["Gear"] != "sensor" || c.Topic != configTopic(testVIN) {
		t.Errorf("state file %s", raw)
	}

	// Gear excluded now: removed at start, before the car sends anything.
	cfg := discovery.DefaultConfig()
	cfg.Exclude = []string{"Gear"}
	live.mu.Lock()
	mark := len(live.msgs) - 1
	live.mu.Unlock()
	_, stop = e.start(cfg)
	i, removal := live.waitFor(t, mark, configTopic(testVIN), anyPayload)
	if !strings.Contains(removal.payload, `"Gear":{"p":"sensor"}`) || !strings.Contains(removal.payload, `"name":"Ellie"`) {
		t.Errorf("first config after the restart %s, want Gear removed, the name kept", removal.payload)
	}
	_, m := live.waitFor(t, i, configTopic(testVIN), anyPayload)
	if comps, _ := components(t, m.payload); has(comps, "Gear") || !has(comps, "Soc") {
		t.Errorf("components %v", keys(comps))
	}
	stop()

	// A new instance name moves the car to another topic: the old config
	// is emptied.
	cfg.Instance = "test"
	newTopic := discovery.Topic(cfg, testVIN)
	e.start(cfg)
	live.waitFor(t, mark, newTopic, anyPayload)
	if got := live.all(configTopic(testVIN)); got[len(got)-1].payload != "" {
		t.Errorf("the old topic still has a config: %v", got[len(got)-1])
	}
}

// TestRemovedCarIsForgotten: someone empties a car's config (`fleet2mqtt
// discovery remove`, or Home Assistant deleting the device); Home
// Assistant's next start does not bring it back, and the state file
// forgets it.
func TestRemovedCarIsForgotten(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/device/#")
	live.subscribe(t, "tesla/+/Soc")
	a, stop := e.start(discovery.DefaultConfig())
	for _, vin := range []string{testVIN, otherVIN} {
		send(t, a, e.bridge, data(vin, datum(telemetry.FieldSoc, telemetry.FloatValue(50))))
		live.waitFor(t, -1, configTopic(vin), anyPayload)
	}

	user := dial(t, e.broker.Addr("tcp"))
	user.publish(t, configTopic(testVIN), "", true)
	mark, _ := live.waitFor(t, -1, configTopic(testVIN), func(p string) bool { return p == "" })

	user.publish(t, "homeassistant/status", "online", false)
	// The other car's values come after all configs of the birth.
	live.waitFor(t, mark, "tesla/"+otherVIN+"/Soc", anyPayload)
	got := live.all(configTopic(testVIN))
	if last := got[len(got)-1]; last.payload != "" {
		t.Errorf("the removed car was announced again: %s", last.payload)
	}
	stop()
	raw, err := os.ReadFile(e.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), testVIN) || !strings.Contains(string(raw), otherVIN) {
		t.Errorf("state file after the removal:\n%s", raw)
	}
}

// TestReadBackWithoutStateFile: without a state file, the announcer reads
// what an earlier run announced from the retained config, and removes
// what is no longer wanted.
func TestReadBackWithoutStateFile(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	a, stop := e.start(discovery.DefaultConfig())
	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(50)), datum(telemetry.FieldGear, telemetry.StringValue("D"))))
	live.waitFor(t, -1, configTopic(testVIN), anyPayload)
	stop()
	if err := os.Remove(e.statePath()); err != nil {
		t.Fatal(err)
	}

	cfg := discovery.DefaultConfig()
	cfg.Exclude = []string{"Gear"}
	live.mu.Lock()
	mark := len(live.msgs) - 1
	live.mu.Unlock()
	a, _ = e.start(cfg)
	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(51))))
	_, m := live.waitFor(t, mark, configTopic(testVIN), anyPayload)
	if !strings.Contains(m.payload, `"Gear":{"p":"sensor"}`) {
		t.Errorf("first config of the new run %s, want Gear removed", m.payload)
	}
}

func TestNew(t *testing.T) {
	e := newEnv(t)
	b := discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}
	off := discovery.DefaultConfig()
	off.Enabled = false
	if _, err := New(off, b, e.broker, e.broker, e.bridge, nil); !errors.Is(err, ErrDisabled) {
		t.Errorf("New(disabled) = %v, want ErrDisabled", err)
	}
	bad := discovery.DefaultConfig()
	bad.Prefix = "a/#"
	if _, err := New(bad, b, e.broker, e.broker, e.bridge, nil); err == nil || !strings.HasPrefix(err.Error(), "prefix: ") {
		t.Errorf("New(bad prefix) = %v", err)
	}
	if _, err := New(discovery.DefaultConfig(), b, nil, e.broker, e.bridge, nil); err == nil {
		t.Error("New without a publisher succeeded")
	}

	// A state file that does not parse is ignored.
	if err := os.WriteFile(e.statePath(), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(discovery.DefaultConfig(), b, e.broker, e.broker, e.bridge, nil, WithStateFile(e.statePath()))
	if err != nil || len(a.cars) != 0 {
		t.Errorf("New with a broken state file = %v", err)
	}
}

// TestObserveAllocations: a record of a known car with known signals
// costs no allocation.
func TestObserveAllocations(t *testing.T) {
	e := newEnv(t)
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, e.broker, e.broker, e.bridge, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := golden(t, "06_v_many_fields", telemetry.TopicV, testVIN)
	named := golden(t, "01_v_scalar_types", telemetry.TopicV, testVIN)
	a.Observe(rec)
	a.Observe(named)
	if n := testing.AllocsPerRun(100, func() { a.Observe(rec); a.Observe(named) }); n != 0 {
		t.Errorf("Observe allocates %.1f times per record", n)
	}
	var want []telemetry.Field
	for _, d := range append(slices.Clone(rec.Data), named.Data...) {
		want = append(want, d.Field)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if got := a.cars[testVIN].seenFields(); !slices.Equal(got, want) {
		t.Errorf("signals seen %v, want %v", got, want)
	}
}

func BenchmarkObserve(b *testing.B) {
	e := newEnv(b)
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, e.broker, e.broker, e.bridge, nil)
	if err != nil {
		b.Fatal(err)
	}
	rec := golden(b, "06_v_many_fields", telemetry.TopicV, testVIN)
	a.Observe(rec)
	b.ReportAllocs()
	for b.Loop() {
		a.Observe(rec)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rec.Data)), "ns/datum")
}

func TestForget(t *testing.T) {
	path := t.TempDir() + "/" + StateFile
	if got, err := Forget(path, testVIN); err != nil || got != nil {
		t.Errorf("Forget without a file = %v, %v", got, err)
	}
	st := state{Version: stateVersion, Cars: map[string]savedCar{
		testVIN:  {Seen: []string{"Soc"}},
		otherVIN: {Seen: []string{"Gear"}},
	}}
	if err := saveState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := Forget(path, testVIN, "NOTKNOWN")
	if err != nil || !slices.Equal(got, []string{testVIN}) {
		t.Errorf("Forget = %v, %v", got, err)
	}
	back, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := back.Cars[testVIN]; ok || len(back.Cars) != 1 {
		t.Errorf("state after Forget: %v", back.Cars)
	}
	if err := os.WriteFile(path, []byte(`{"version":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Forget(path, otherVIN); !errors.Is(err, errStateFormat) {
		t.Errorf("Forget on a file of another version = %v", err)
	}
}

// TestDue checks when a car's config is due: the debounce after its last
// news, at the latest maxWaitFactor debounces after its first, never
// before a retry time.
func TestDue(t *testing.T) {
	r := runner{Announcer: &Announcer{debounce: time.Second}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	for _, tc := range []struct {
		name               string
		first, last, retry time.Time
		want               time.Time
	}{
		{"nothing pending", time.Time{}, time.Time{}, time.Time{}, time.Time{}},
		{"one change", s(0), s(0), time.Time{}, s(1)},
		{"changes keep it waiting", s(0), s(5), time.Time{}, s(6)},
		{"but not forever", s(0), s(30), time.Time{}, s(maxWaitFactor)},
		{"not before a retry", s(0), s(0), s(10), s(10)},
	} {
		c := &car{first: tc.first, last: tc.last, retryAt: tc.retry}
		if got := r.due(c); !got.Equal(tc.want) {
			t.Errorf("%s: due %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNewNeedsAvailability: the availability topic comes from the bridge;
// an announcer without it would announce entities that are never
// available.
func TestNewNeedsAvailability(t *testing.T) {
	e := newEnv(t)
	if _, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla"}, e.broker, e.broker, e.bridge, nil); err == nil {
		t.Error("New accepted a bridge without availability topic")
	}
}

// BenchmarkWakeKnownCars is the announcer's work for a record that brings
// news (here a new software version) while 1,000 cars are known and
// announced: what Observe does and the step of Run's loop it wakes. Its
// cost must not grow with the fleet.
func BenchmarkWakeKnownCars(b *testing.B) {
	const cars = 1000
	e := newEnv(b)
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, e.broker, e.broker, e.bridge, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recs := make([]*telemetry.Record, cars)
	for i := range recs {
		recs[i] = golden(b, "06_v_many_fields", telemetry.TopicV, fmt.Sprintf("5YJ3E1EA7KF%06d", i))
		a.Observe(recs[i])
	}
	r := a.newRunner()
	defer r.timer.Stop()
	now := time.Now()
	r.step(ctx, now)
	now = now.Add(a.maxWait())
	r.step(ctx, now) // every car announced
	if len(r.known) != cars {
		b.Fatalf("%d cars known, want %d", len(r.known), cars)
	}
	version := make([]telemetry.Datum, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		version[0] = datum(telemetry.FieldVersion, telemetry.StringValue(fmt.Sprintf("2026.2.%d", i)))
		a.Observe(&telemetry.Record{VIN: recs[i%cars].VIN, Topic: telemetry.TopicV, Data: version})
		if r.step(ctx, now).IsZero() {
			b.Fatal("the car with news is not due")
		}
		i++
	}
}

// TestWakeTouchesOnlyCarsWithNews: Run's step looks at the cars that have
// news, and the due queue holds exactly the cars not yet announced.
func TestWakeTouchesOnlyCarsWithNews(t *testing.T) {
	e := newEnv(t)
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, e.broker, e.broker, e.bridge, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vins := []string{"5YJ3E1EA7KF000003", "5YJ3E1EA7KF000002", "5YJ3E1EA7KF000001"}
	for _, vin := range vins {
		a.Observe(data(vin, datum(telemetry.FieldSoc, telemetry.IntValue(80))))
	}
	r := a.newRunner()
	defer r.timer.Stop()
	now := time.Now()
	if next := r.step(ctx, now); len(r.queue) != 3 || !next.Equal(now.Add(a.debounce)) {
		t.Fatalf("after first sight: %d cars queued, next due %v; want 3, in one debounce", len(r.queue), next)
	}
	now = now.Add(a.debounce)
	if next := r.step(ctx, now); len(r.queue) != 0 || !next.IsZero() {
		t.Fatalf("after announcing: %d cars queued, next due %v; want none", len(r.queue), next)
	}
	// Nothing new: no car is queued for Run.
	a.Observe(data(vins[0], datum(telemetry.FieldSoc, telemetry.IntValue(81))))
	if len(a.pending) != 0 {
		t.Errorf("a record without news queued %d cars", len(a.pending))
	}
	// A new version: that car alone.
	a.Observe(data(vins[1], datum(telemetry.FieldVersion, telemetry.StringValue("2026.2.1"))))
	if len(a.pending) != 1 || a.pending[0].vin != vins[1] {
		t.Fatalf("pending %d cars, want %s alone", len(a.pending), vins[1])
	}
	if r.step(ctx, now); len(r.queue) != 1 || r.queue[0].vin != vins[1] || len(a.pending) != 0 {
		t.Errorf("queue %d cars, pending %d; want %s alone queued", len(r.queue), len(a.pending), vins[1])
	}
}

// TestRemoval: each car's discovery config emptied, retained, at QoS 1.
func TestRemoval(t *testing.T) {
	cfg := discovery.DefaultConfig()
	msgs := Removal(cfg, "VIN1", "VIN2")
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, vin := range []string{"VIN1", "VIN2"} {
		m := msgs[i]
		if m.Topic != discovery.Topic(cfg, vin) || len(m.Payload) != 0 || !m.Retain || m.QoS != 1 {
			t.Errorf("%s: %+v", vin, m)
		}
	}
}
