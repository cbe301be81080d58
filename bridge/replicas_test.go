package bridge

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// memBroker is a broker in memory for the replica tests: retained
// messages, wildcard subscriptions, and one order of delivery for all
// publishers, as a real broker keeps. Messages are delivered by a
// goroutine of their own, after Publish has returned, as over a network.
type memBroker struct {
	mu       sync.Mutex
	retained map[string]string
	subs     []*memSub
	history  []string      // "topic payload", in order
	queue    []delivery    // to deliver, in order
	more     chan struct{} // capacity 1: the queue has grown
	// stall, when set, makes Publish of a message it matches wait until
	// its ctx ends, as with a broker that does not answer; stalled
	// counts such calls.
	stall   func(topic, payload string) bool
	stalled int
}

type memSub struct {
	filter string
	handle func(topic string, payload []byte)
}

type delivery struct {
	sub            *memSub
	topic, payload string
}

func newMemBroker(t *testing.T) *memBroker {
	m := &memBroker{retained: map[string]string{}, more: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.more:
			}
			for {
				m.mu.Lock()
				if len(m.queue) == 0 {
					m.mu.Unlock()
					break
				}
				d := m.queue[0]
				m.queue = m.queue[1:]
				m.mu.Unlock()
				d.sub.handle(d.topic, []byte(d.payload))
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func (m *memBroker) Publish(ctx context.Context, msgs []pubsub.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, msg := range msgs {
		m.mu.Lock()
		stall := m.stall != nil && m.stall(msg.Topic, string(msg.Payload))
		if stall {
			m.stalled++
		}
		m.mu.Unlock()
		if stall {
			<-ctx.Done()
			return ctx.Err()
		}
		m.put(msg.Topic, string(msg.Payload), msg.Retain)
	}
	return nil
}

// put stores one message and queues it for the subscribers; the last
// will of a client that died is such a message too.
func (m *memBroker) put(topic, payload string, retain bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if retain {
		m.retained[topic] = payload
	}
	m.history = append(m.history, topic+" "+payload)
	for _, s := range m.subs {
		if matchFilter(s.filter, topic) {
			m.queue = append(m.queue, delivery{s, topic, payload})
		}
	}
	m.signal()
}

func (m *memBroker) signal() {
	select {
	case m.more <- struct{}{}:
	default:
	}
}

func (m *memBroker) Subscribe(ctx context.Context, filter string, handle func(string, []byte)) error {
	s := &memSub{filter, handle}
	m.mu.Lock()
	m.subs = append(m.subs, s)
	topics := make([]string, 0, len(m.retained))
	for t := range m.retained {
		if matchFilter(filter, t) {
			topics = append(topics, t)
		}
	}
	slices.Sort(topics)
	for _, t := range topics {
		m.queue = append(m.queue, delivery{s, t, m.retained[t]})
	}
	m.signal()
	m.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.subs = slices.DeleteFunc(m.subs, func(x *memSub) bool { return x == s })
	})
	return nil
}

func (m *memBroker) get(topic string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.retained[topic]
}

// said returns the payloads published on topic, in order.
func (m *memBroker) said(topic string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, h := range m.history {
		if t, p, _ := strings.Cut(h, " "); t == topic {
			out = append(out, p)
		}
	}
	return out
}

// matchFilter matches an MQTT topic filter with + and #.
func matchFilter(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		switch {
		case level == "#":
			return true
		case i >= len(t):
			return false
		case level != "+" && level != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}

// runningReplica is a replica's bridge with RunReplicas running.
type runningReplica struct {
	*Bridge
	stop func() // ends RunReplicas
}

func startReplica(t *testing.T, m *memBroker, name string) runningReplica {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Replica = name
	b, err := New(cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.RunReplicas(ctx, m) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunReplicas of %s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	// Subscribed once its own state, published by Online, comes back.
	if err := b.Online(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		b.rep.mu.Lock()
		defer b.rep.mu.Unlock()
		return b.rep.watching && b.rep.ownState == PayloadOnline
	})
	return runningReplica{b, stop}
}

// waitUntil waits for cond; it fails tests that hang and measures
// nothing.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(time.Millisecond)
	}
}

const (
	sharedTopic = "tesla/bridge/state"
	stateA      = "tesla/bridge/a/state"
	stateB      = "tesla/bridge/b/state"
)

func TestReplicaTopics(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.BridgeStateTopic() != sharedTopic || cfg.AvailabilityTopic() != sharedTopic {
		t.Errorf("single instance: %q, %q", cfg.BridgeStateTopic(), cfg.AvailabilityTopic())
	}
	cfg.Replica, cfg.Prefix = "fleet2mqtt-0", "home/tesla"
	if got := cfg.BridgeStateTopic(); got != "home/tesla/bridge/fleet2mqtt-0/state" {
		t.Errorf("replica state topic %q", got)
	}
	if got := cfg.AvailabilityTopic(); got != "home/tesla/bridge/state" {
		t.Errorf("replica availability topic %q", got)
	}

	// A single instance's RunReplicas has nothing to do.
	b, r := newTestBridge(t, DefaultConfig())
	if err := b.RunReplicas(context.Background(), newMemBroker(t)); err != nil {
		t.Errorf("RunReplicas of a single instance: %v", err)
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("a single instance's RunReplicas published %v", lines(got))
	}
}

// TestReplicaStates walks two replicas through starting, one stopping,
// both stopping, and one dying without stopping: each replica's own state
// is its own, and <prefix>/bridge/state reads online as long as one runs.
func TestReplicaStates(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, m *memBroker, a, b runningReplica)
		// shared is the last payload of tesla/bridge/state, ownA and
		// ownB those of the replicas' own states.
		shared, ownA, ownB string
		// flicker: tesla/bridge/state may have read offline meanwhile
		// (someone else said so).
		flicker bool
	}{
		{"both run", func(*testing.T, *memBroker, runningReplica, runningReplica) {}, "online", "online", "online", false},
		{"b stops", func(t *testing.T, _ *memBroker, _, b runningReplica) {
			offline(t, b)
		}, "online", "online", "offline", false},
		{"b stops, then a", func(t *testing.T, _ *memBroker, a, b runningReplica) {
			offline(t, b)
			offline(t, a)
		}, "offline", "offline", "offline", false},
		{"both stop at once", func(t *testing.T, _ *memBroker, a, b runningReplica) {
			var wg sync.WaitGroup
			for _, r := range []runningReplica{a, b} {
				wg.Go(func() { offline(t, r) })
			}
			wg.Wait()
		}, "offline", "offline", "offline", false},
		{"b dies, a stops", func(t *testing.T, m *memBroker, a, b runningReplica) {
			b.stop()
			m.put(stateB, "offline", true) // b's last will
			offline(t, a)
		}, "offline", "offline", "offline", false},
		{"a dies", func(t *testing.T, m *memBroker, a, _ runningReplica) {
			a.stop()
			m.put(stateA, "offline", true)
		}, "online", "offline", "online", false},
		{"someone says offline while both run", func(t *testing.T, m *memBroker, _, _ runningReplica) {
			m.put(sharedTopic, "offline", true)
			waitUntil(t, func() bool { return m.get(sharedTopic) == "online" })
		}, "online", "online", "online", true},
		{"a's own state is said offline while it runs", func(t *testing.T, m *memBroker, _, _ runningReplica) {
			m.put(stateA, "offline", true) // a late will of a replaced connection
			waitUntil(t, func() bool { return m.get(stateA) == "online" })
		}, "online", "online", "online", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemBroker(t)
			a := startReplica(t, m, "a")
			b := startReplica(t, m, "b")
			tt.run(t, m, a, b)
			if got := m.get(sharedTopic); got != tt.shared {
				t.Errorf("%s = %q, want %q (said: %v)", sharedTopic, got, tt.shared, m.said(sharedTopic))
			}
			if got := m.get(stateA); got != tt.ownA {
				t.Errorf("%s = %q, want %q", stateA, got, tt.ownA)
			}
			if got := m.get(stateB); got != tt.ownB {
				t.Errorf("%s = %q, want %q", stateB, got, tt.ownB)
			}
			if said := m.said(sharedTopic); tt.shared == "online" && !tt.flicker && slices.Contains(said, "offline") {
				// Home Assistant's availability read offline while a
				// replica ran.
				t.Errorf("%s said %v", sharedTopic, said)
			}
		})
	}
}

func offline(t *testing.T, r runningReplica) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Offline(ctx); err != nil {
		t.Errorf("Offline: %v", err)
	}
}

// TestReplicaReconnects: a broker that lost its retained messages gets
// <prefix>/bridge/state again when the replica's own state is said
// online again (the external client does so on every connection).
func TestReplicaReconnects(t *testing.T) {
	m := newMemBroker(t)
	startReplica(t, m, "a")
	m.mu.Lock()
	m.retained = map[string]string{}
	m.mu.Unlock()
	m.put(stateA, "online", true) // the client's online after reconnecting
	waitUntil(t, func() bool { return m.get(sharedTopic) == "online" })
}

// TestReplicaOfflineWithoutWatching: without RunReplicas a replica knows
// of no other, and says offline on <prefix>/bridge/state when it stops;
// a running replica says online again at once.
func TestReplicaOfflineWithoutWatching(t *testing.T) {
	m := newMemBroker(t)
	startReplica(t, m, "a")
	cfg := DefaultConfig()
	cfg.Replica = "b"
	b, err := New(cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Online(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Offline(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.said(sharedTopic); !slices.Contains(got, "offline") {
		t.Errorf("b said %v on %s, want offline among them", got, sharedTopic)
	}
	waitUntil(t, func() bool { return m.get(sharedTopic) == "online" })
}

// TestReplicaOfflineWhileSayingOnline: a replica stops while it waits for
// the broker to take its online on <prefix>/bridge/state; it does not
// wait for that publish to finish.
func TestReplicaOfflineWhileSayingOnline(t *testing.T) {
	m := newMemBroker(t)
	a := startReplica(t, m, "a")
	m.mu.Lock()
	m.stall = func(topic, payload string) bool { return topic == sharedTopic && payload == "online" }
	m.mu.Unlock()
	m.put(sharedTopic, "offline", true) // a says online again, and waits
	waitUntil(t, func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.stalled > 0 })

	done := make(chan error, 1)
	go func() { done <- a.Offline(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Offline waits for the stalled publish")
	}
	if got := m.get(sharedTopic); got != "offline" {
		t.Errorf("%s = %q after the only replica stopped, want offline", sharedTopic, got)
	}
}

func TestStreams(t *testing.T) {
	conn := func(s telemetry.Status) *telemetry.Record {
		return &telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{ConnectionID: "c", Status: s}}
	}
	tests := []struct {
		name string
		recs []*telemetry.Record
		want bool
	}{
		{"never seen", nil, false},
		{"data only", []*telemetry.Record{dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1)))}, false},
		{"connected", []*telemetry.Record{conn(telemetry.StatusConnected)}, true},
		{"connected, data", []*telemetry.Record{conn(telemetry.StatusConnected), dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1)))}, true},
		{"disconnected", []*telemetry.Record{conn(telemetry.StatusConnected), conn(telemetry.StatusDisconnected)}, false},
		{"unknown status keeps it", []*telemetry.Record{conn(telemetry.StatusConnected), conn(telemetry.StatusUnknown)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBridge(t, DefaultConfig())
			for _, rec := range tt.recs {
				handle(t, b, rec)
			}
			if got := b.Streams(vin); got != tt.want {
				t.Errorf("Streams = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReplicaStatesRepublish: a replica republishes only the cars that stream to
// it.
func TestReplicaStatesRepublish(t *testing.T) {
	b, rec := newTestBridge(t, DefaultConfig())
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1))))
	rec.take()
	s := ReplicaStates{b}
	if err := s.Republish(t.Context(), vin); err != nil {
		t.Fatal(err)
	}
	if msgs := rec.take(); len(msgs) != 0 {
		t.Errorf("republished a car that does not stream here: %v", msgs)
	}
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{ConnectionID: "c", Status: telemetry.StatusConnected}})
	rec.take()
	if err := s.Republish(t.Context(), vin); err != nil {
		t.Fatal(err)
	}
	if msgs := rec.take(); len(msgs) == 0 {
		t.Error("nothing republished for a car that streams here")
	}
}
