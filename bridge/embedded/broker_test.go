package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/golden"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// tee records what the bridge publishes and passes it on.
type tee struct {
	next pubsub.Publisher
	mu   sync.Mutex
	msgs []pubsub.Message
}

func (t *tee) Publish(ctx context.Context, msgs []pubsub.Message) error {
	t.mu.Lock()
	for _, m := range msgs {
		m.Payload = slices.Clone(m.Payload)
		t.msgs = append(t.msgs, m)
	}
	t.mu.Unlock()
	return t.next.Publish(ctx, msgs)
}

// TestGoldenThroughBroker runs the golden frames through the bridge into
// the embedded broker with both layouts on, and checks what a real MQTT
// client subscribed over TCP receives: every message the bridge published,
// in order, with its payload bytes; the compatibility messages equal to
// what Tesla's reference server published; and, for a client connecting
// afterwards, the retained last value of every native topic.
func TestGoldenThroughBroker(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	addr := broker.Addr(ListenerTCP)
	live := mustDial(t, addr, nil)
	live.subscribe(t, "#")

	cfg := bridge.DefaultConfig()
	cfg.Compat.Enabled = true
	broker.Protect(cfg.Compat.Base)
	rec := &tee{next: broker}
	br, err := bridge.New(cfg, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, reference := golden.Records(t)
	ctx := context.Background()
	if err := br.Online(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := br.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	var compat []string
	retained := map[string]string{}
	for i, want := range rec.msgs {
		got := live.next(t)
		if got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) || got.QoS != want.QoS {
			t.Fatalf("message %d: got %s qos %d %q, want %s qos %d %q", i, got.Topic, got.QoS, got.Payload, want.Topic, want.QoS, want.Payload)
		}
		if strings.HasPrefix(want.Topic, cfg.Compat.Base+"/") {
			compat = append(compat, want.Topic+" "+string(want.Payload))
			if want.Retain {
				t.Errorf("compatibility message retained: %s", want.Topic)
			}
		} else if want.Retain {
			retained[want.Topic] = string(want.Payload)
		}
	}
	slices.Sort(compat)
	slices.Sort(reference)
	if !slices.Equal(compat, reference) {
		t.Errorf("compatibility layout differs from the reference server's output\n got %q\nwant %q", compat, reference)
	}
	for _, topic := range []string{
		"tesla/bridge/state",
		"tesla/" + testVIN + "/state",
		"tesla/" + testVIN + "/Soc",
		"tesla/" + testVIN + "/alerts/UI_a002_TestAlertEnded",
		"tesla/" + testVIN + "/connected",
	} {
		if _, ok := retained[topic]; !ok {
			t.Errorf("no retained message on %s", topic)
		}
	}

	// A client that connects now gets the last value of every retained
	// topic, and nothing of the compatibility layout.
	late := mustDial(t, addr, nil)
	late.subscribe(t, "#")
	got := map[string]string{}
	for range retained {
		m := late.next(t)
		if !m.Retain {
			t.Errorf("%s: not flagged retained", m.Topic)
		}
		got[m.Topic] = string(m.Payload)
	}
	for topic, payload := range retained {
		if got[topic] != payload {
			t.Errorf("retained %s = %q, want %q", topic, got[topic], payload)
		}
	}
}

// TestPublishKeepsNoReference: the bridge reuses its buffer as soon as
// Publish returns, so neither subscribers' queues nor the retained store
// may hold on to the payload slice it was given.
func TestPublishKeepsNoReference(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	addr := broker.Addr(ListenerTCP)
	live := mustDial(t, addr, nil)
	live.subscribe(t, "tesla/#")

	var inline [][]byte
	var mu sync.Mutex
	if err := broker.Subscribe(t.Context(), "tesla/#", func(_ string, p []byte) {
		mu.Lock()
		inline = append(inline, p)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	buf := []byte("80")
	topic := "tesla/" + testVIN + "/Soc"
	for range 100 { // enough that some wait in the subscriber's queue
		if err := broker.Publish(t.Context(), []pubsub.Message{{Topic: topic, Payload: buf, QoS: 1, Retain: true}}); err != nil {
			t.Fatal(err)
		}
	}
	copy(buf, "XX")
	for i := range 100 {
		if m := live.next(t); string(m.Payload) != "80" {
			t.Fatalf("live message %d = %q, want 80", i, m.Payload)
		}
	}
	late := mustDial(t, addr, nil)
	late.subscribe(t, "tesla/#")
	if m := late.next(t); string(m.Payload) != "80" {
		t.Errorf("retained message = %q, want 80", m.Payload)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, p := range inline {
		if string(p) != "80" {
			t.Fatalf("inline message %d = %q, want 80", i, p)
		}
	}
}

func TestSubscribe(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	got := make(chan string, 10)
	ctx, cancel := context.WithCancel(t.Context())
	if err := broker.Subscribe(ctx, "homeassistant/status", func(topic string, p []byte) {
		got <- topic + " " + string(p)
	}); err != nil {
		t.Fatal(err)
	}
	ha := mustDial(t, broker.Addr(ListenerTCP), nil)
	pub := func(payload string) {
		t.Helper()
		if _, err := ha.Publish(t.Context(), &paho.Publish{Topic: "homeassistant/status", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("Home Assistant's birth message refused: %v", err)
		}
	}
	pub("online")
	if m := <-got; m != "homeassistant/status online" {
		t.Errorf("got %q", m)
	}
	cancel()
	// Once the context has ended no message reaches the handler. The
	// client's messages are handled in order, so when the marker arrives
	// the one before it has been handled too.
	marker := make(chan struct{})
	if err := broker.Subscribe(t.Context(), "marker", func(string, []byte) { close(marker) }); err != nil {
		t.Fatal(err)
	}
	pub("offline")
	if _, err := ha.Publish(t.Context(), &paho.Publish{Topic: "marker", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	<-marker
	select {
	case m := <-got:
		t.Errorf("message after the context ended: %q", m)
	default:
	}
}

func TestLifecycle(t *testing.T) {
	b, err := New(testConfig(), t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	msg := []pubsub.Message{{Topic: "tesla/x", Payload: []byte("1")}}
	if err := b.Publish(t.Context(), msg); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Publish before Start: %v, want ErrNotRunning", err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Publish(ctx, msg); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with an ended context: %v", err)
	}

	// A second broker on the same port fails to start, naming the listener.
	cfg := testConfig()
	cfg.Listen = b.Addr(ListenerTCP)
	other, err := New(cfg, t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "listen tcp on "+cfg.Listen) {
		t.Errorf("Start on a busy port: %v", err)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Publish(t.Context(), msg); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Publish after Close: %v, want ErrNotRunning", err)
	}
	if addr := b.Addr(ListenerTCP); addr != "" {
		t.Errorf("Addr after Close = %q", addr)
	}
}

func TestNewRefuses(t *testing.T) {
	// As the configuration's owner reports it.
	if _, err := New(testConfig(), "", testPrefix, nil); err == nil || configerr.Prefix("mqtt.embedded", err).Error() != "mqtt.embedded.persist: keeping retained messages needs a data directory" {
		t.Errorf("no data dir: %v", err)
	}
	cfg := testConfig()
	cfg.Persist = false
	if _, err := New(cfg, "", testPrefix, nil); err != nil {
		t.Errorf("no data dir, no persistence: %v", err)
	}
	cfg.AllowAnonymous = "sometimes"
	if _, err := New(cfg, "", testPrefix, nil); err == nil {
		t.Error("invalid config accepted")
	}
	if _, err := New(testConfig(), t.TempDir(), "", nil); err == nil {
		t.Error("empty prefix accepted")
	}
}

func ExampleBroker() {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Persist = false
	broker, err := New(cfg, "", "tesla", nil)
	if err != nil {
		panic(err)
	}
	if err := broker.Start(ctx); err != nil {
		panic(err)
	}
	defer broker.Close()
	br, err := bridge.New(bridge.DefaultConfig(), broker, nil)
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	broker.Subscribe(ctx, "tesla/+/Soc", func(topic string, payload []byte) {
		fmt.Println(topic, string(payload))
		close(done)
	})
	br.Handle(ctx, &telemetry.Record{VIN: "5YJ3TESTVIN000001", Topic: telemetry.TopicV,
		Data: []telemetry.Datum{{Field: telemetry.FieldSoc, Value: telemetry.FloatValue(80.5)}}})
	<-done
	// Output: tesla/5YJ3TESTVIN000001/Soc 80.5
}
