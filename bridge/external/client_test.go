package external

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

func TestPublishRoundTrip(t *testing.T) {
	broker := testenv.Mosquitto(t)
	sub := subscribe(t, broker.URL(), "rt/#", 0)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)

	tests := []struct {
		name string
		msgs []pubsub.Message
	}{
		{"qos0", []pubsub.Message{
			{Topic: "rt/q0/a", Payload: []byte("80"), QoS: 0},
			{Topic: "rt/q0/b", Payload: []byte("true"), QoS: 0},
		}},
		{"qos1", []pubsub.Message{
			{Topic: "rt/q1/a", Payload: []byte("12.5"), QoS: 1},
			{Topic: "rt/q1/b", Payload: []byte("D"), QoS: 1},
			{Topic: "rt/q1/c", Payload: []byte(`{"lat":1}`), QoS: 1},
		}},
		{"qos2 sent as qos1", []pubsub.Message{{Topic: "rt/q2", Payload: []byte("x"), QoS: 2}}},
		{"mixed and retained", []pubsub.Message{
			{Topic: "rt/mix/0", Payload: []byte("zero"), QoS: 0, Retain: true},
			{Topic: "rt/mix/1", Payload: []byte("one"), QoS: 1, Retain: true},
		}},
		{"empty payload", []pubsub.Message{{Topic: "rt/empty", Payload: nil, QoS: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := c.Publish(ctx, tt.msgs); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			for _, m := range tt.msgs {
				sub.waitMessage(t, m.Topic, string(m.Payload))
			}
		})
	}

	// Retained messages reach a subscriber that comes later.
	late := subscribe(t, broker.URL(), "rt/mix/#", 0)
	for _, want := range []received{{"rt/mix/0", "zero", true}, {"rt/mix/1", "one", true}} {
		if got := late.waitMessage(t, want.topic, want.payload); !got.retain {
			t.Errorf("%s: retain flag not set for a late subscriber", want.topic)
		}
	}
}

func TestPublishLargeBatch(t *testing.T) {
	// More QoS 1 messages than mosquitto's default receive maximum (20)
	// and than one write buffer: the batch must wait for quota and go out in
	// several writes.
	broker := testenv.Mosquitto(t)
	sub := subscribe(t, broker.URL(), "big/#", 0)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)

	payload := strings.Repeat("p", 1000)
	msgs := make([]pubsub.Message, 300)
	for i := range msgs {
		msgs[i] = pubsub.Message{Topic: fmt.Sprintf("big/%d", i), Payload: []byte(fmt.Sprintf("%d-%s", i, payload)), QoS: 1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Publish(ctx, msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	sub.waitFor(t, "all 300 messages", func(got []received) bool { return len(got) >= len(msgs) })
	for _, m := range msgs {
		if n := sub.count(string(m.Payload)); n != 1 {
			t.Fatalf("%s delivered %d times, want 1", m.Topic, n)
		}
	}
}

func TestPublishRejectsInvalidTopic(t *testing.T) {
	c, err := New(Config{URL: "mqtt://127.0.0.1:1"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"", "a/+/b", "a/#", "a\x00b", "bad\xff"} {
		err := c.Publish(context.Background(), []pubsub.Message{{Topic: topic, Payload: []byte("1")}})
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
}

func TestSubscribe(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)

	got := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Subscribe(ctx, "homeassistant/+", func(topic string, payload []byte) {
		got <- topic + "=" + string(payload)
	}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	pub := startClient(t, Config{URL: broker.URL(), ClientID: "other-publisher"})
	awaitConnection(t, pub)
	publish(t, pub, pubsub.Message{Topic: "homeassistant/status", Payload: []byte("online"), QoS: 1})
	select {
	case m := <-got:
		if m != "homeassistant/status=online" {
			t.Fatalf("handler got %q", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("handler not called")
	}

	// After ctx ends the handler is removed; a message published then must
	// not reach it. A second subscription on another filter serves as the
	// marker that later messages have been routed.
	cancel()
	marker := make(chan struct{}, 1)
	if err := c.Subscribe(context.Background(), "marker", func(string, []byte) { marker <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	publish(t, pub,
		pubsub.Message{Topic: "homeassistant/status", Payload: []byte("again"), QoS: 1},
		pubsub.Message{Topic: "marker", Payload: []byte("1"), QoS: 1})
	select {
	case <-marker:
	case <-time.After(waitTimeout):
		t.Fatal("marker not received")
	}
	select {
	case m := <-got:
		t.Fatalf("handler called after its context ended: %q", m)
	default:
	}

	if err := c.Subscribe(context.Background(), "a/#/b", func(string, []byte) {}); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Subscribe(a/#/b) = %v, want ErrInvalidTopic", err)
	}
}

func publish(t *testing.T, c *Client, msgs ...pubsub.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Publish(ctx, msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func TestResubscribeAfterReconnect(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)
	got := make(chan string, 10)
	if err := c.Subscribe(context.Background(), "homeassistant/status", func(_ string, p []byte) { got <- string(p) }); err != nil {
		t.Fatal(err)
	}
	// A restart without the client's session (killed: nothing saved) loses
	// the subscription on the broker's side.
	broker.Kill()
	broker.Start()
	awaitReconnect(t, c)
	pub := startClient(t, Config{URL: broker.URL(), ClientID: "ha"})
	awaitConnection(t, pub)
	deadline := time.After(waitTimeout)
	for {
		publish(t, pub, pubsub.Message{Topic: "homeassistant/status", Payload: []byte("online"), QoS: 1})
		select {
		case <-got:
			return
		case <-time.After(200 * time.Millisecond):
			// The resubscription may not have reached the broker yet.
		case <-deadline:
			t.Fatal("subscription not made again after reconnecting")
		}
	}
}

// awaitReconnect waits until a QoS 1 round trip succeeds: the broker was
// restarted, so the PUBACK proves a new connection made by the client itself.
func awaitReconnect(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Publish(ctx, []pubsub.Message{{Topic: "probe/reconnect", Payload: []byte("1"), QoS: 1}})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client did not reconnect: %v", err)
		}
	}
}

func TestLastWillAndOnline(t *testing.T) {
	broker := testenv.Mosquitto(t)
	const state = "tesla/bridge/state"
	sub := subscribe(t, broker.URL(), state, 0)
	c := startClient(t, Config{URL: broker.URL()}, WithStateTopic(state))
	awaitConnection(t, c)
	sub.waitFor(t, "online", func(m []received) bool { return len(m) == 1 && m[0].payload == StateOnline })

	// Kill the network connection without DISCONNECT: the broker publishes
	// the last will; the client reconnects by itself and says online again.
	c.sess.current().Conn.Close()
	sub.waitFor(t, "offline then online", func(m []received) bool {
		return len(m) >= 3 && m[1].payload == StateOffline && m[2].payload == StateOnline
	})
	sub.mu.Lock()
	will := sub.msgs[1]
	sub.mu.Unlock()
	if will.topic != state {
		t.Errorf("last will on %q, want %q", will.topic, state)
	}

	// The retained state is what a newcomer sees.
	late := subscribe(t, broker.URL(), state, 0)
	if got := late.waitMessage(t, state, StateOnline); !got.retain {
		t.Error("online not retained")
	}
}

func TestShutdownPublishesOffline(t *testing.T) {
	broker := testenv.Mosquitto(t)
	const state = "tesla/bridge/state"
	sub := subscribe(t, broker.URL(), state, 0)
	c, err := New(Config{URL: broker.URL()}, quietLogger(), WithStateTopic(state))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	awaitConnection(t, c)
	sub.waitMessage(t, state, StateOnline)
	cancel()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("Done not closed")
	}
	sub.waitFor(t, "offline after online", func(m []received) bool {
		return len(m) >= 2 && m[len(m)-1].payload == StateOffline
	})
	if err := c.Publish(context.Background(), []pubsub.Message{{Topic: "x", Payload: []byte("1")}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after shutdown = %v, want ErrClosed", err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
}

func TestTransports(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	broker := testenv.Mosquitto(t, testenv.WithTLS(files), testenv.WithWebSockets(), testenv.WithUser("bridge", "s3cret pass"))
	// The subscriber logs in too (anonymous access is off).
	sub := subscribeAuth(t, broker.URL(), "tr/#")

	tests := []struct {
		name string
		cfg  Config
	}{
		{"mqtt with password", Config{URL: "mqtt://" + broker.Addr}},
		{"tcp alias", Config{URL: "tcp://" + broker.Addr}},
		{"mqtts with CA file", Config{URL: "mqtts://" + broker.TLSAddr, CAFile: files.CAFile}},
		{"tls alias", Config{URL: "tls://" + broker.TLSAddr, CAFile: files.CAFile}},
		{"ws", Config{URL: "ws://" + broker.WSAddr}},
		{"wss with CA file", Config{URL: "wss://" + broker.WSSAddr + "/mqtt", CAFile: files.CAFile}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Username, tt.cfg.Password = "bridge", "s3cret pass"
			tt.cfg.ClientID = fmt.Sprintf("transport-%d", i)
			c := startClient(t, tt.cfg)
			awaitConnection(t, c)
			payload := "hello " + tt.name
			publish(t, c,
				pubsub.Message{Topic: "tr/q1", Payload: []byte(payload), QoS: 1},
				pubsub.Message{Topic: "tr/q0", Payload: []byte(payload), QoS: 0})
			sub.waitMessage(t, "tr/q1", payload)
			sub.waitMessage(t, "tr/q0", payload)
		})
	}
}

// subscribeAuth is subscribe for a broker with the user bridge.
func subscribeAuth(t *testing.T, brokerURL, filter string) *subscriber {
	u := strings.Replace(brokerURL, "mqtt://", "mqtt://bridge:s3cret%20pass@", 1)
	return subscribe(t, u, filter, 0)
}

func TestConnectRefused(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	broker := testenv.Mosquitto(t, testenv.WithUser("bridge", "right"), testenv.WithTLS(files))
	tests := []struct {
		name  string
		cfg   Config
		check func(error) bool
	}{
		{"wrong password", Config{URL: broker.URL(), Username: "bridge", Password: "wrong"}, func(err error) bool {
			var ce *autopaho.ConnackError
			return errors.As(err, &ce) && (ce.ReasonCode == 0x86 || ce.ReasonCode == 0x87)
		}},
		{"anonymous", Config{URL: broker.URL()}, func(err error) bool {
			var ce *autopaho.ConnackError
			return errors.As(err, &ce) && ce.ReasonCode >= 0x80
		}},
		{"TLS without the CA", Config{URL: "mqtts://" + broker.TLSAddr, Username: "bridge", Password: "right"}, func(err error) bool {
			return strings.Contains(err.Error(), "certificate")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg, quietLogger(), withBackoff(fastBackoff))
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 100)
			c.onConnectError = func(err error) {
				select {
				case errs <- err:
				default:
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer func() { cancel(); <-c.Done() }()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				if !tt.check(err) {
					t.Errorf("connect error %v is not the expected kind", err)
				}
				if strings.Contains(err.Error(), "right") || strings.Contains(err.Error(), "wrong") {
					t.Errorf("connect error shows the password: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("no connect error reported")
			}
			if up, _ := c.sess.connected(); up {
				t.Error("connected despite the refusal")
			}
		})
	}
}
