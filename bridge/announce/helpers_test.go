package announce

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const (
	testVIN  = "5YJ3E1EA7KF000001"
	otherVIN = "7SAYGDEE5PF000002"
	// wait bounds how long a test waits for something that should happen
	// soon; it fails tests that hang, it measures nothing.
	wait = 20 * time.Second
	// testDebounce keeps tests quick; what they assert does not depend on
	// it.
	testDebounce = 20 * time.Millisecond
)

func configTopic(vin string) string { return discovery.Topic(discovery.DefaultConfig(), vin) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// env is an embedded broker on loopback with a bridge publishing into it.
type env struct {
	t      testing.TB
	broker *embedded.Broker
	pub    pubsub.Publisher // what the announcer publishes through
	bridge *bridge.Bridge
	dir    string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	dir := t.TempDir()
	b, err := embedded.New(cfg, filepath.Join(dir, "mqtt"), "tesla", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &env{t: t, broker: b, pub: b, dir: dir}
	e.bridge, err = bridge.New(bridge.DefaultConfig(), b, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// withDebounce sets how long a car's news must be quiet before its config
// is published, in place of DefaultDebounce.
func withDebounce(d time.Duration) Option { return func(a *Announcer) { a.debounce = d } }

// withRepublishDelay sets how long to wait after Home Assistant's birth
// message, in place of discovery.RepublishDelay (random in [1 s, 5 s)).
func withRepublishDelay(f func() time.Duration) Option {
	return func(a *Announcer) { a.birthDelay = f }
}

func (e *env) statePath() string { return filepath.Join(e.dir, StateFile) }

// start runs an announcer on the environment until the test ends (or
// stop is called).
func (e *env) start(cfg discovery.Config, opts ...Option) (a *Announcer, stop func()) {
	e.t.Helper()
	opts = append([]Option{
		withDebounce(testDebounce),
		withRepublishDelay(func() time.Duration { return 0 }),
		WithStateFile(e.statePath()),
	}, opts...)
	a, err := New(cfg, discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "test"}, e.pub, e.broker, e.bridge, testLogger(e.t), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return a, stop
}

// send hands records to the bridge and the announcer, as the vehicle
// listener does.
func send(t testing.TB, a *Announcer, b *bridge.Bridge, recs ...*telemetry.Record) {
	t.Helper()
	sink := a.Tee(b)
	for _, rec := range recs {
		if err := sink.Handle(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

func data(vin string, data ...telemetry.Datum) *telemetry.Record {
	return &telemetry.Record{VIN: vin, Topic: telemetry.TopicV, Data: data}
}

func datum(f telemetry.Field, v telemetry.Value) telemetry.Datum {
	return telemetry.Datum{Field: f, Value: v}
}

// golden decodes a golden frame's payload as the vehicle listener would.
func golden(t testing.TB, name string, topic telemetry.Topic, vin string) *telemetry.Record {
	t.Helper()
	payload, err := os.ReadFile(filepath.Join("../../testdata/vehicle-frames", name+".payload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	rec := new(telemetry.Record)
	if err := ingest.DecodePayload(topic, payload, rec); err != nil {
		t.Fatal(err)
	}
	rec.VIN = vin
	return rec
}

// message is one message a client received.
type message struct {
	topic   string
	payload string
	retain  bool
}

// client is a real MQTT 5 client that keeps every message it receives, in
// order.
type client struct {
	*paho.Client
	mu   sync.Mutex
	msgs []message
	more chan struct{}
}

var clientIDs atomic.Int64

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{more: make(chan struct{}, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.msgs = append(c.msgs, message{pr.Packet.Topic, string(pr.Packet.Payload), pr.Packet.Retain})
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprint("announce-test-", clientIDs.Add(1)), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// subscribe subscribes and returns once the retained messages of filter
// have been queued to the client.
func (c *client) subscribe(t testing.TB, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	// mochi sends the retained messages after its acknowledgement; a
	// second request is handled after them.
	if _, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"test/sync/never"}}); ctx.Err() != nil {
		t.Fatal(err)
	}
}

func (c *client) publish(t testing.TB, topic, payload string, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}); err != nil {
		t.Fatal(err)
	}
}

// all returns the messages received so far on topic.
func (c *client) all(topic string) []message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []message
	for _, m := range c.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// waitFor returns the index (among all messages received) and the message
// of the first message after index from on topic that satisfies ok.
func (c *client) waitFor(t testing.TB, from int, topic string, ok func(payload string) bool) (int, message) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		for i := from + 1; i < len(c.msgs); i++ {
			if m := c.msgs[i]; m.topic == topic && ok(m.payload) {
				c.mu.Unlock()
				return i, m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("no message on %s as wanted; got %v", topic, c.all(topic))
		}
	}
}

func anyPayload(string) bool { return true }

// components returns the components of a config payload, key → platform,
// and its device name.
func components(t testing.TB, payload string) (map[string]string, string) {
	t.Helper()
	comps, err := discovery.ParseAnnounced([]byte(payload))
	if err != nil {
		t.Fatalf("%v: %s", err, payload)
	}
	var cfg struct {
		Dev struct {
			Name string `json:"name"`
		} `json:"dev"`
	}
	if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
		t.Fatal(err)
	}
	return comps, cfg.Dev.Name
}

func has(comps map[string]string, keys ...string) bool {
	for _, k := range keys {
		if _, ok := comps[k]; !ok {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}
