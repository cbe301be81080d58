package external

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestBrokerFault streams batches from many publishers while mosquitto is
// stopped and started three times. Every batch whose Publish returned nil
// must reach a QoS 1 subscriber with a persistent session; the others must
// have failed with ErrQueueFull or their context, never with a nil that was
// not delivered.
func TestBrokerFault(t *testing.T) {
	if testing.Short() {
		t.Skip("broker fault test restarts mosquitto three times")
	}
	// The subscriber is away during every outage too; the broker must keep
	// everything for it.
	broker := testenv.Mosquitto(t, testenv.WithConfig("max_queued_messages 0"))
	sub := subscribe(t, broker.URL(), "fault/#", 3600)
	// 24 publishers of 20 messages can have 480 messages waiting: more than
	// the queue, so some calls fail fast while the broker is away.
	const (
		publishers = 24
		batchSize  = 20
		queueSize  = 300
		restarts   = 3
	)
	c := startClient(t, Config{URL: broker.URL(), QueueSize: queueSize})
	awaitConnection(t, c)

	var (
		mu           sync.Mutex
		acked        []string // payloads of batches whose Publish returned nil
		okBatches    int
		queueFull    int
		timedOut     int
		unexpected   []error
		okAfterPhase = make(map[int]int) // successful batches per phase
		phase        int                 // restarts done
		down         bool                // the broker is stopped
		outages      int                 // outages begun
		waitedOK     int                 // successful batches that overlapped an outage
	)
	progress := make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]pubsub.Message, batchSize)
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				for i := range msgs {
					msgs[i] = pubsub.Message{
						Topic:   fmt.Sprintf("fault/%d/%d", p, i),
						Payload: fmt.Appendf(nil, "%d-%d-%d", p, seq, i),
						QoS:     1,
					}
				}
				mu.Lock()
				begunDown, outages0 := down, outages
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := c.Publish(ctx, msgs)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					okBatches++
					if begunDown || outages > outages0 {
						waitedOK++
					}
					okAfterPhase[phase]++
					for _, m := range msgs {
						acked = append(acked, string(m.Payload))
					}
				case errors.Is(err, ErrQueueFull):
					queueFull++
				case errors.Is(err, context.DeadlineExceeded):
					timedOut++
				default:
					unexpected = append(unexpected, err)
				}
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the car retries a little later
				}
			}
		}()
	}

	// waitProgress waits until the current phase has n successful batches.
	waitProgress := func(n int) {
		deadline := time.After(waitTimeout)
		for {
			mu.Lock()
			got := okAfterPhase[phase]
			mu.Unlock()
			if got >= n {
				return
			}
			select {
			case <-progress:
			case <-deadline:
				t.Fatalf("phase %d: only %d successful batches", phase, got)
			}
		}
	}
	for range restarts {
		waitProgress(50)
		mu.Lock()
		down = true
		outages++
		mu.Unlock()
		broker.Stop()
		time.Sleep(500 * time.Millisecond) // the outage
		broker.Start()
		mu.Lock()
		down = false
		phase++
		mu.Unlock()
	}
	// The client must come back by itself and deliver again.
	waitProgress(50)
	close(stop)
	wg.Wait()

	for _, err := range unexpected {
		t.Errorf("Publish failed with an unexpected error: %v", err)
	}
	missing := 0
	sub.waitFor(t, "every acknowledged message", func([]received) bool {
		missing = 0
		for _, p := range acked {
			if sub.seen[p] == 0 {
				missing++
			}
		}
		return missing == 0
	})
	c.sess.mu.Lock()
	dup, renewed := c.sess.resentDup, c.sess.resentNew
	c.sess.mu.Unlock()
	sub.mu.Lock()
	t.Logf("batches: %d ok (%d messages, all delivered; %d overlapped an outage), %d queue full, %d timed out; subscriber got %d messages (%d distinct); resent %d with DUP, %d as new",
		okBatches, len(acked), waitedOK, queueFull, timedOut, len(sub.msgs), len(sub.seen), dup, renewed)
	sub.mu.Unlock()
}

// TestQueueFull checks that while the broker is away Publish waits until
// queue_size messages wait, fails fast beyond that, and that the waiting
// calls succeed once the broker is back.
func TestQueueFull(t *testing.T) {
	broker := testenv.Mosquitto(t)
	sub := subscribe(t, broker.URL(), "queue/#", 3600)
	c := startClient(t, Config{URL: broker.URL(), QueueSize: 50})
	awaitConnection(t, c)
	broker.Stop()
	awaitDisconnect(t, c)

	batch := func(name string, n int) []pubsub.Message {
		msgs := make([]pubsub.Message, n)
		for i := range msgs {
			msgs[i] = pubsub.Message{Topic: "queue/" + name, Payload: fmt.Appendf(nil, "%s-%d", name, i), QoS: 1}
		}
		return msgs
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	results := make(chan error, 3)
	waiting := []string{"a", "b", "c"} // 20 + 20 + 10 = 50 messages: exactly the queue
	sizes := []int{20, 20, 10}
	var want []string
	for i, name := range waiting {
		msgs := batch(name, sizes[i])
		for _, m := range msgs {
			want = append(want, string(m.Payload))
		}
		go func() { results <- c.Publish(ctx, msgs) }()
	}
	deadline := time.After(waitTimeout)
	for c.queued.Load() != 50 {
		select {
		case err := <-results:
			t.Fatalf("Publish returned %v while the broker is down", err)
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("queue holds %d messages, want 50", c.queued.Load())
		}
	}

	// One more message does not fit: fail fast, whatever ctx allows.
	if err := c.Publish(ctx, batch("d", 1)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Publish beyond queue_size = %v, want ErrQueueFull", err)
	}
	// A batch larger than the whole queue can never fit.
	if err := c.Publish(ctx, batch("e", 51)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Publish of 51 messages with queue_size 50 = %v, want ErrQueueFull", err)
	}

	broker.Start()
	for range waiting {
		if err := <-results; err != nil {
			t.Errorf("waiting Publish = %v, want nil after the broker came back", err)
		}
	}
	sub.waitFor(t, "the waiting batches", func([]received) bool {
		for _, p := range want {
			if sub.seen[p] == 0 {
				return false
			}
		}
		return true
	})
	if n := c.queued.Load(); n != 0 {
		t.Errorf("queue holds %d messages after all calls returned", n)
	}
}

func awaitDisconnect(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		up, changed := c.sess.connected()
		if !up {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("client did not notice the broker going away")
		}
	}
}

// TestResendAfterLostConnection loses the connection while QoS 1 messages
// wait for their PUBACK (the broker is frozen), then lets the broker resume
// the session (it was stopped cleanly) or lose it (killed without saving
// it). Either way Publish must return nil only after the messages got
// through, resent with DUP or as new messages.
func TestResendAfterLostConnection(t *testing.T) {
	tests := []struct {
		name        string
		restart     func(b *testenv.Broker)
		wantDup     bool
		wantRenewed bool
	}{
		{"session resumed", func(b *testenv.Broker) {
			// The connection is closed while the broker is frozen; when it
			// resumes it reads the PUBLISH packets (acknowledging them to a
			// closed socket) and keeps the session for the reconnection.
			b.Resume()
		}, true, false},
		{"session lost", func(b *testenv.Broker) {
			b.Kill()
			b.Start()
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broker := testenv.Mosquitto(t)
			c := startClient(t, Config{URL: broker.URL()})
			awaitConnection(t, c)

			broker.Pause()
			msgs := []pubsub.Message{
				{Topic: "resend/a", Payload: []byte("1"), QoS: 1, Retain: true},
				{Topic: "resend/b", Payload: []byte("2"), QoS: 1, Retain: true},
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Publish(ctx, msgs) }()
			awaitFlights(t, c, len(msgs))
			select {
			case err := <-done:
				t.Fatalf("Publish returned %v without a PUBACK", err)
			default:
			}
			c.sess.current().Conn.Close()
			awaitDisconnect(t, c)
			tt.restart(broker)

			if err := <-done; err != nil {
				t.Fatalf("Publish = %v, want nil after the resend", err)
			}
			c.sess.mu.Lock()
			dup, renewed := c.sess.resentDup > 0, c.sess.resentNew > 0
			c.sess.mu.Unlock()
			if dup != tt.wantDup || renewed != tt.wantRenewed {
				t.Errorf("resent with DUP %v, as new %v; want %v, %v", dup, renewed, tt.wantDup, tt.wantRenewed)
			}
			// The messages are on the broker: retained for a newcomer.
			sub := subscribe(t, broker.URL(), "resend/#", 0)
			for _, m := range msgs {
				sub.waitMessage(t, m.Topic, string(m.Payload))
			}
		})
	}
}

// awaitFlights waits until n QoS 1 messages wait for their PUBACK.
func awaitFlights(t *testing.T, c *Client, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		c.sess.mu.Lock()
		got := len(c.sess.flights)
		c.sess.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d messages in flight, want %d", got, n)
		}
	}
}

// TestPublishPipelines checks that a batch is not sent one round trip at a
// time: with the broker frozen, every QoS 1 message of the batch must be on
// its way (waiting for its PUBACK) at once.
func TestPublishPipelines(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)
	broker.Pause()
	msgs := benchBatch(1) // 20 messages: mosquitto's whole Receive Maximum
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Publish(ctx, msgs) }()
	awaitFlights(t, c, len(msgs))
	broker.Resume()
	if err := <-done; err != nil {
		t.Fatalf("Publish: %v", err)
	}
}
