package announce

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// replica is one announcer with a bridge and a state file of its own, on
// the environment's broker, as a replica of an installation runs.
type replica struct {
	a      *Announcer
	bridge *bridge.Bridge
}

func (e *env) startReplica(name string) replica {
	e.t.Helper()
	br, err := bridge.New(bridge.DefaultConfig(), e.broker, testLogger(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"}, e.pub, e.broker, br,
		testLogger(e.t).With("replica", name),
		withDebounce(testDebounce),
		withRepublishDelay(func() time.Duration { return 0 }),
		WithStateFile(filepath.Join(e.dir, name+".json")))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	e.t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run of %s: %v", name, err)
			}
		})
	})
	return replica{a, br}
}

// mark returns the index of the last message c has received.
func (c *client) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs) - 1
}

// since returns the payloads received on topic after index from.
func (c *client) since(from int, topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i := from + 1; i < len(c.msgs); i++ {
		if c.msgs[i].topic == topic {
			out = append(out, c.msgs[i].payload)
		}
	}
	return out
}

// noRemoval fails the test for a config that removes something: empty,
// or with a bare component.
func noRemoval(t *testing.T, payloads []string) {
	t.Helper()
	for _, p := range payloads {
		ann, err := discovery.ParseAnnouncement([]byte(p))
		if p == "" || err != nil || len(ann.Removed) > 0 {
			t.Errorf("a config removes entities (err %v, removed %v): %q", err, ann.Removed, p)
		}
	}
}

// TestReplicasAnnounceTheSame: two replicas serve the same car one after
// the other. The second announces exactly the first's config although it
// has seen fewer signals, neither removes what the other announced, the
// one that learns more announces the union, and after Home Assistant's
// birth both publish the same bytes. A removal on one is not undone by
// the other.
func TestReplicasAnnounceTheSame(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	topic := configTopic(testVIN)
	ra, rb := e.startReplica("a"), e.startReplica("b")

	// The car streams to a: three signals and its name.
	send(t, ra.a, ra.bridge, data(testVIN,
		datum(telemetry.FieldSoc, telemetry.FloatValue(50)),
		datum(telemetry.FieldGear, telemetry.StringValue("D")),
		datum(telemetry.FieldLocked, telemetry.BoolValue(true)),
		datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie"))))
	i, first := live.waitFor(t, -1, topic, func(p string) bool { c, _ := components(t, p); return has(c, "Gear", "Locked") })

	// It moves to b and sends one signal: b announces what a did, byte
	// for byte (should b publish before it has read a's config, it
	// announces again once it has).
	send(t, rb.a, rb.bridge, data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(51))))
	i, _ = live.waitFor(t, i, topic, func(p string) bool { return p == first.payload })

	// b learns a signal: its config is the union, and a takes it over.
	send(t, rb.a, rb.bridge, data(testVIN, datum(telemetry.FieldOdometer, telemetry.FloatValue(1234))))
	i, union := live.waitFor(t, i, topic, func(p string) bool { c, _ := components(t, p); return has(c, "Odometer") })
	if comps, name := components(t, union.payload); !has(comps, "Soc", "Gear", "Locked", "VehicleName", "Odometer") || name != "Ellie" {
		t.Errorf("union config %v named %q", keys(comps), name)
	}
	noRemoval(t, live.since(-1, topic))

	// Home Assistant starts: both announce the car again, identically.
	birth := dial(t, e.broker.Addr("tcp"))
	i = live.mark()
	birth.publish(t, "homeassistant/status", "online", false)
	j, _ := live.waitFor(t, i, topic, anyPayload)
	live.waitFor(t, j, topic, anyPayload)
	after := live.since(i, topic)
	for _, p := range after {
		if p != union.payload {
			t.Errorf("after the birth a config differs from the union:\n got %s\nwant %s", p, union.payload)
		}
	}

	// a takes Gear out of the streaming configuration: it removes the
	// entity, and b, which saw Gear (through a), does not bring it back.
	i = live.mark()
	ra.a.SetStreaming(testVIN, []telemetry.Field{telemetry.FieldSoc, telemetry.FieldLocked, telemetry.FieldVehicleName, telemetry.FieldOdometer})
	i, _ = live.waitFor(t, i, topic, func(p string) bool { return strings.Contains(p, `"Gear":{"p":"sensor"}`) })
	i, _ = live.waitFor(t, i, topic, anyPayload)
	birth.publish(t, "homeassistant/status", "online", false)
	j, _ = live.waitFor(t, i, topic, anyPayload)
	live.waitFor(t, j, topic, anyPayload)
	for _, p := range live.since(i, topic) {
		if comps, _ := components(t, p); has(comps, "Gear") || !has(comps, "Soc", "Odometer") {
			t.Errorf("after the removal a config announces %v", keys(comps))
		}
	}
}

// TestMergeStaleOwnConfig: a replica published a config with fewer
// signals than another replica's that it reads afterwards; the broker may
// have received its own last, so it announces again, with what it learnt.
func TestMergeStaleOwnConfig(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	topic := configTopic(testVIN)
	rb := e.startReplica("b")

	// b announces the car with one signal.
	send(t, rb.a, rb.bridge, data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(50))))
	i, _ := live.waitFor(t, -1, topic, anyPayload)

	// Another replica's config with one more signal arrives.
	other := discovery.Messages(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"},
		discovery.Vehicle{VIN: testVIN, Seen: []telemetry.Field{telemetry.FieldSoc, telemetry.FieldGear}})[0]
	pub := dial(t, e.broker.Addr("tcp"))
	pub.publish(t, topic, string(other.Payload), true)
	i, _ = live.waitFor(t, i, topic, func(p string) bool { return p == string(other.Payload) })
	_, m := live.waitFor(t, i, topic, anyPayload)
	if m.payload != string(other.Payload) {
		t.Errorf("b's config after reading the other's:\n got %s\nwant %s", m.payload, other.Payload)
	}
}

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []pubsub.Message
}

func (r *recorder) Publish(_ context.Context, msgs []pubsub.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		m.Payload = bytes.Clone(m.Payload)
		r.msgs = append(r.msgs, m)
	}
	return nil
}

func (r *recorder) take() []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

// otherConfig is the config another replica publishes for a car that has
// sent fields.
func otherConfig(fields ...telemetry.Field) []byte {
	return discovery.Messages(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"},
		discovery.Vehicle{VIN: testVIN, DisplayName: "Ellie", Seen: fields})[0].Payload
}

// TestMerge drives the merge of other replicas' configs step by step, on
// the runner's own goroutine, as Run would.
func TestMerge(t *testing.T) {
	e := newEnv(t)
	rec := new(recorder)
	a, err := New(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"}, rec, e.broker, e.bridge,
		testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{Announcer: a, known: map[string]*car{}}
	ctx := context.Background()
	now := time.Now()
	a.Observe(data(testVIN, datum(telemetry.FieldSoc, telemetry.FloatValue(50))))
	c, _ := a.car(testVIN)
	seen := func() []string { return fieldNames(c.seenFields()) }
	due := func() bool { return !c.last.IsZero() }
	announce := func() []pubsub.Message {
		t.Helper()
		if err := r.announce(ctx, c, false); err != nil {
			t.Fatal(err)
		}
		c.first, c.last = time.Time{}, time.Time{}
		return rec.take()
	}

	// Its own first config: one signal, named by the VIN.
	own := announce()
	if len(own) != 1 {
		t.Fatalf("first announcement %d messages", len(own))
	}
	r.merge(c, own[0].Payload, now)
	if due() || !slices.Equal(seen(), []string{"Soc"}) {
		t.Errorf("after its own echo: due %v, seen %v", due(), seen())
	}

	// Another replica announces more, and a name: learnt; the retained
	// config may be this one's older one, so it announces again, and the
	// same bytes as the other.
	more := otherConfig(telemetry.FieldSoc, telemetry.FieldGear, telemetry.FieldLocked)
	r.merge(c, more, now)
	if !due() || !slices.Equal(seen(), []string{"Soc", "Gear", "Locked"}) || *c.name.Load() != "Ellie" {
		t.Errorf("after a config with more: due %v, seen %v", due(), seen())
	}
	if got := announce(); len(got) != 1 || !bytes.Equal(got[0].Payload, more) {
		t.Errorf("announced %v, want the other's config", got)
	}

	// The same config again (from whichever replica): nothing to do.
	r.merge(c, more, now)
	if due() {
		t.Error("due after a config like its own")
	}
	// One with less, which is retained now: announced again, unchanged.
	r.merge(c, otherConfig(telemetry.FieldSoc), now)
	if !due() || !slices.Equal(seen(), []string{"Soc", "Gear", "Locked"}) {
		t.Errorf("after a config with less: due %v, seen %v", due(), seen())
	}
	if got := announce(); len(got) != 1 || !bytes.Equal(got[0].Payload, more) {
		t.Errorf("announced %v, want its config again", got)
	}

	// Gear leaves the streaming configuration here. A config the other
	// published before it learnt that (with Gear, and a signal of its
	// own) is merged without Gear, and Gear's removal is announced.
	a.SetStreaming(testVIN, []telemetry.Field{telemetry.FieldSoc, telemetry.FieldLocked, telemetry.FieldOdometer})
	r.merge(c, otherConfig(telemetry.FieldSoc, telemetry.FieldGear, telemetry.FieldLocked, telemetry.FieldInsideTemp), now)
	if !due() || !slices.Equal(seen(), []string{"Soc", "Locked", "InsideTemp"}) {
		t.Errorf("after a stale config: due %v, seen %v", due(), seen())
	}
	removal := announce()
	if len(removal) != 2 || !strings.Contains(string(removal[0].Payload), `"Gear":{"p":"sensor"}`) {
		t.Fatalf("announced %d messages, want Gear's removal and the config", len(removal))
	}

	// Until the removal's echo, Gear is not learnt back; after it, a
	// config with Gear is newer than the removal (the car sends Gear to
	// the other replica): learnt.
	r.merge(c, otherConfig(telemetry.FieldGear), now)
	if slices.Contains(seen(), "Gear") {
		t.Errorf("Gear learnt back before the removal's echo: %v", seen())
	}
	for _, m := range removal {
		r.merge(c, m.Payload, now)
	}
	r.merge(c, otherConfig(telemetry.FieldGear), now)
	if !slices.Contains(seen(), "Gear") {
		t.Errorf("Gear not learnt after the removal's echo: %v", seen())
	}

	// The other removes InsideTemp: forgotten here too.
	rm := discovery.RemoveMessages(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"},
		discovery.Vehicle{VIN: testVIN, Seen: []telemetry.Field{telemetry.FieldSoc}}, map[string]string{"InsideTemp": "sensor"})
	r.merge(c, rm[0].Payload, now)
	if slices.Contains(seen(), "InsideTemp") {
		t.Errorf("InsideTemp kept after the other removed it: %v", seen())
	}

	// Configs that are not device configs are ignored.
	before := seen()
	for _, p := range []string{"{", `{"cmps":{}}`, `{"cmps":{"NotASignal":{"p":"sensor","unique_id":"x"}}}`} {
		r.merge(c, []byte(p), now)
	}
	if !slices.Equal(seen(), before) {
		t.Errorf("a malformed config changed the signals: %v, want %v", seen(), before)
	}
}
