package external

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// waitTimeout bounds every wait in these tests; it is a guard against
// hanging, not a timing assertion.
const waitTimeout = 20 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fastBackoff(int) time.Duration { return 50 * time.Millisecond }

// withBackoff sets the delay before reconnection attempt n (n = 0 is the
// first attempt after a drop), in place of the exponential backoff with
// jitter from 200ms to 30s.
func withBackoff(f func(attempt int) time.Duration) Option {
	return func(c *Client) { c.backoff = f }
}

// startClient creates and starts a client; it is shut down at the end of
// the test.
func startClient(t *testing.T, cfg Config, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{withBackoff(fastBackoff)}, opts...)
	c, err := New(cfg, quietLogger(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.Done():
		case <-time.After(waitTimeout):
			t.Errorf("client did not shut down")
		}
	})
	return c
}

func awaitConnection(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatalf("AwaitConnection: %v", err)
	}
}

// received is one message seen by a subscriber.
type received struct {
	topic   string
	payload string
	retain  bool
}

// subscriber is an independent MQTT client (plain autopaho) that records
// what it receives on a filter at QoS 1.
type subscriber struct {
	mu   sync.Mutex
	msgs []received
	seen map[string]int // payload → count
	cond chan struct{}  // closed and replaced on every message
	cm   *autopaho.ConnectionManager
}

// subscribe connects a subscriber to brokerURL. With a non-zero
// sessionExpiry its session persists, so the broker queues QoS 1 messages
// for it while it is away, also across a restart: it never connects with
// clean start, as mosquitto saves only sessions of clients that did not.
func subscribe(t *testing.T, brokerURL, filter string, sessionExpiry uint32) *subscriber {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{seen: make(map[string]int), cond: make(chan struct{})}
	subscribed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     10,
		CleanStartOnInitialConnection: sessionExpiry == 0,
		SessionExpiryInterval:         sessionExpiry,
		ReconnectBackoff:              fastBackoff,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err == nil {
					select {
					case subscribed <- struct{}{}:
					default:
					}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "sub-" + t.Name(),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				s.mu.Lock()
				s.msgs = append(s.msgs, received{pr.Packet.Topic, string(pr.Packet.Payload), pr.Packet.Retain})
				s.seen[string(pr.Packet.Payload)]++
				close(s.cond)
				s.cond = make(chan struct{})
				s.mu.Unlock()
				return true, nil
			}},
		},
	}
	if u.User != nil {
		cfg.ConnectUsername = u.User.Username()
		pw, _ := u.User.Password()
		cfg.ConnectPassword = []byte(pw)
		u.User = nil
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.cm = cm
	t.Cleanup(func() {
		cancel()
		<-cm.Done()
	})
	select {
	case <-subscribed:
	case <-time.After(waitTimeout):
		t.Fatalf("subscriber to %s did not subscribe", brokerURL)
	}
	return s
}

// waitFor waits until ok returns true for the messages received so far.
func (s *subscriber) waitFor(t *testing.T, what string, ok func(msgs []received) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		s.mu.Lock()
		done := ok(s.msgs)
		cond := s.cond
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-cond:
		case <-deadline:
			s.mu.Lock()
			t.Fatalf("subscriber: no %s within %v; got %d messages, last: %v", what, waitTimeout, len(s.msgs), lastN(s.msgs, 5))
		}
	}
}

// waitMessage waits for a message on topic with payload.
func (s *subscriber) waitMessage(t *testing.T, topic, payload string) received {
	t.Helper()
	var got received
	s.waitFor(t, topic+" "+payload, func(msgs []received) bool {
		for _, m := range msgs {
			if m.topic == topic && m.payload == payload {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// count returns how many times each payload has been seen.
func (s *subscriber) count(payload string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[payload]
}

func lastN(msgs []received, n int) []received {
	if len(msgs) > n {
		return msgs[len(msgs)-n:]
	}
	return msgs
}
