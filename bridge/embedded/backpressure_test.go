package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// logBuffer collects log lines, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startLoggedBroker is startBroker with the broker's warnings kept in a
// buffer.
func startLoggedBroker(t *testing.T, cfg Config) (*Broker, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	b, err := New(cfg, t.TempDir(), testPrefix, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b, logs
}

// burst publishes n messages of the bridge on distinct topics under the
// prefix, in records of 20, from cars goroutines at once, and returns the
// first error.
func burst(ctx context.Context, b *Broker, cars, n int, qos byte, payload []byte) error {
	var wg sync.WaitGroup
	errs := make(chan error, cars)
	for car := range cars {
		wg.Go(func() {
			msgs := make([]pubsub.Message, 0, 20)
			for i, k := car, 0; i < n; i, k = i+cars, k+1 {
				msgs = append(msgs, pubsub.Message{Topic: fmt.Sprintf("tesla/CAR%03d/F%d", car, k%20), Payload: payload, QoS: qos})
				if len(msgs) == cap(msgs) || i+cars >= n {
					if err := b.Publish(ctx, msgs); err != nil {
						errs <- err
						return
					}
					msgs = msgs[:0]
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestSlowQoS0Reader: a QoS 0 subscriber that reads slowly but steadily
// gets every message while several cars publish as fast as they can: the
// publishers wait for it instead of dropping what it has not read.
func TestSlowQoS0Reader(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 100 // so that the reader is behind most of the time
	broker, _ := startLoggedBroker(t, cfg)
	c := dialRaw(t, broker, 4, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 0})

	const n = 20000
	payload := bytes.Repeat([]byte("x"), 200)
	published := make(chan error, 1)
	go func() { published <- burst(context.Background(), broker, 8, n, 0, payload) }()
	for i := range n {
		c.next()
		if i%64 == 0 {
			time.Sleep(time.Millisecond) // a slow reader: about 13 MB/s at most
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if broker.Waits() == 0 {
		t.Error("the publishers never waited for the reader: the test did not exercise back-pressure")
	}
	for _, r := range DropReasons {
		if d := broker.Dropped(r); d != 0 {
			t.Errorf("%d messages dropped (%s)", d, r)
		}
	}
}

// TestQoS1AtSaturation: a QoS 1 subscriber gets every message while cars
// publish as fast as they can, with a backlog bound far smaller than
// what is published.
func TestQoS1AtSaturation(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 64
	broker, _ := startLoggedBroker(t, cfg)
	sub := mustDial(t, broker.Addr(ListenerTCP), nil)
	sub.subscribe(t, "tesla/#")

	const n = 30000
	published := make(chan error, 1)
	go func() { published <- burst(context.Background(), broker, 8, n, 1, []byte("42.5")) }()
	seen := make(map[string]int)
	for range n {
		m := sub.next(t)
		seen[m.Topic]++
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if len(seen) != 8*20 {
		t.Errorf("messages on %d topics, want %d", len(seen), 8*20)
	}
	if broker.Waits() == 0 {
		t.Error("the publishers never waited for the subscriber: the test did not exercise back-pressure")
	}
	for _, r := range DropReasons {
		if d := broker.Dropped(r); d != 0 {
			t.Errorf("%d messages dropped (%s)", d, r)
		}
	}
}

// TestStuckSubscribers: subscribers that never read, one at QoS 0 and one
// at QoS 1 with a persistent session, are disconnected once they have
// been stuck for the stall timeout, with a log line naming them; the cars
// keep publishing, a subscriber that reads gets everything, the QoS 1
// session keeps its messages (max_queued at most) and what the QoS 0 one
// lost is counted.
func TestStuckSubscribers(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 100
	cfg.StallTimeout = 2 * time.Second // far longer than a reading client ever pauses
	broker, logs := startLoggedBroker(t, cfg)
	stuck0 := dialRawID(t, broker, "stuck-qos0", 4, true, packets.Properties{})
	stuck0.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 0})
	props := packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}
	stuck1 := dialRawID(t, broker, "stuck-qos1", 5, false, props)
	stuck1.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	reader := mustDial(t, broker.Addr(ListenerTCP), nil)
	reader.subscribe(t, "tesla/#")

	// Enough to fill the kernel's socket buffers of the QoS 0 one many
	// times over: 40,000 messages of 1 KB.
	const n = 40000
	payload := bytes.Repeat([]byte("y"), 1000)
	published := make(chan error, 1)
	go func() { published <- burst(context.Background(), broker, 4, n, 1, payload) }()
	for i := range n {
		select {
		case <-reader.msgs:
		case <-time.After(wait):
			t.Fatalf("the subscriber that reads got %d messages of %d; broker log:\n%s", i, n, logs.String())
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"stuck-qos0", "stuck-qos1"} {
		waitFor(t, id+" to be disconnected", func() bool {
			cl, ok := broker.server.Clients.Get(id)
			return !ok || cl.Closed()
		})
		if !strings.Contains(logs.String(), "reads too slowly") || !strings.Contains(logs.String(), "client="+id) {
			t.Errorf("no log line names %s as reading too slowly:\n%s", id, logs.String())
		}
	}
	cl := serverClient(t, broker, "stuck-qos1") // offline, its session kept
	if n := cl.State.Inflight.Len(); n == 0 || n > cfg.MaxQueued {
		t.Errorf("the stuck QoS 1 subscriber's session keeps %d messages, want 1 to max_queued (%d)", n, cfg.MaxQueued)
	}
	if broker.Dropped(DropStuckSubscriber) == 0 {
		t.Error("the QoS 0 messages the stuck subscriber was disconnected with were not counted")
	}
	broker.drops.close()
	if !strings.Contains(logs.String(), "reason=stuck_subscriber") {
		t.Errorf("no log line counts the dropped messages:\n%s", logs.String())
	}
}

// TestCloseWhileWaiting: a publisher waiting for a stuck subscriber gives
// up when its context ends, and when the broker closes, which does not
// wait for the stall timeout.
func TestCloseWhileWaiting(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 1
	cfg.StallTimeout = time.Hour
	broker, _ := startLoggedBroker(t, cfg)
	c := dialRaw(t, broker, 5, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})

	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("1"), QoS: 1}) // not acknowledged: the backlog is full
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- broker.Publish(ctx, []pubsub.Message{{Topic: socTopic, Payload: []byte("2"), QoS: 1}}) }()
	waitFor(t, "the publisher to wait", func() bool { return broker.fan.waiters.Load() == 1 })
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("publish with its context cancelled: %v", err)
	}

	go func() {
		errs <- broker.Publish(context.Background(), []pubsub.Message{{Topic: socTopic, Payload: []byte("3"), QoS: 1}})
	}()
	waitFor(t, "the publisher to wait", func() bool { return broker.fan.waiters.Load() == 1 })
	if err := broker.Close(); err != nil {
		t.Error(err)
	}
	if err := <-errs; !errors.Is(err, ErrNotRunning) {
		t.Errorf("publish while the broker closed: %v", err)
	}
}

// TestDropsLogged: drops are logged with their real counts, the first at
// once and the next ones in one line per interval (here: when the broker
// closes).
func TestDropsLogged(t *testing.T) {
	logs := &logBuffer{}
	d := newDrops(slog.New(slog.NewTextHandler(logs, nil)))
	d.interval = time.Hour
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 4, packets.Properties{})
	cl := serverClient(t, broker, c.id)
	d.add(cl, DropSessionFull, 5)
	waitFor(t, "the first line", func() bool { return strings.Contains(logs.String(), "dropped=5") })
	for range 7 {
		d.add(cl, DropSessionFull, 1)
	}
	d.add(cl, DropTooLarge, 2)
	if strings.Count(logs.String(), "\n") != 1 {
		t.Errorf("more than one line before the interval:\n%s", logs.String())
	}
	d.close()
	out := logs.String()
	for _, want := range []string{"reason=session_full dropped=7", "reason=packet_too_large dropped=2", "dropped_total=12", "client=" + c.id} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if d.count(DropSessionFull) != 12 || d.count(DropTooLarge) != 2 {
		t.Errorf("counts %d and %d, want 12 and 2", d.count(DropSessionFull), d.count(DropTooLarge))
	}
}

// TestBacklogShrinksPerChunk: the QoS 0 messages of a write leave the
// backlog chunk by chunk, with their bytes, not only once the whole write
// is done, so that publishers waiting on a backlog full by its message
// bound move on while the rest is being written.
func TestBacklogShrinksPerChunk(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	server, reader := net.Pipe() // a write returns only once it was read
	t.Cleanup(func() { server.Close(); reader.Close() })
	cl := broker.server.NewClient(server, "test", "chunks", false)
	cl.Properties.ProtocolVersion = 4
	s := &sender{f: broker.fan, cl: cl, wake: make(chan struct{}, 1), stop: make(chan struct{}), lastProgress: time.Now()}
	t.Cleanup(s.end)

	const msgs = 100
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: socTopic, Payload: bytes.Repeat([]byte("x"), 2000)}
	s.mu.Lock()
	for range msgs {
		s.write(cl, &pk, delivery{version: 4})
	}
	total := s.bytes
	s.mu.Unlock()
	if total < 3*writeChunk {
		t.Fatalf("%d bytes queued: the test needs several chunks", total)
	}
	go s.run()

	backlog := func() (int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.backlog()
	}
	if _, err := io.ReadFull(reader, make([]byte, writeChunk)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first chunk to leave the backlog", func() bool {
		_, b := backlog()
		return b == total-writeChunk
	})
	m, _ := backlog()
	if want := msgs - msgs*writeChunk/total; m != want {
		t.Errorf("after one chunk of %d bytes, %d messages in the backlog, want %d", total, m, want)
	}
	if _, err := io.ReadFull(reader, make([]byte, total-writeChunk)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backlog to empty", func() bool {
		m, b := backlog()
		return m == 0 && b == 0
	})
}

// TestTurnsInOrder: publishers that wait for a subscriber's full backlog
// deliver in the order they came, and one that comes while others wait
// queues behind them.
func TestTurnsInOrder(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 10
	broker := startBroker(t, cfg, "")
	server, reader := net.Pipe()
	t.Cleanup(func() { server.Close(); reader.Close() })
	cl := broker.server.NewClient(server, "test", "turns", false)
	cl.Properties.ProtocolVersion = 4
	s := &sender{f: broker.fan, cl: cl, wake: make(chan struct{}, 1), stop: make(chan struct{}), lastProgress: time.Now()}
	t.Cleanup(s.end)

	message := func(payload string) *packets.Packet {
		return &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: socTopic, Payload: []byte(payload)}
	}
	s.mu.Lock()
	for range cfg.MaxQueued {
		s.write(cl, message("filler"), delivery{version: 4})
	}
	s.mu.Unlock()
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.queue)
	}
	const publishers = 5
	errs := make(chan error, publishers)
	for i := range publishers {
		go func() {
			errs <- broker.fan.deliver(t.Context(), cl, s, message(fmt.Sprintf("turn-%d", i)), 0, false, nil, false)
		}()
		waitFor(t, fmt.Sprintf("publisher %d to queue", i), func() bool { return queued() == i+1 })
	}
	go s.run()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for want := range publishers {
		marker := []byte(fmt.Sprintf("turn-%d", want))
		for !bytes.Contains(got.Bytes(), marker) {
			n, err := reader.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got.Write(buf[:n])
		}
	}
	for i := range publishers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			prev := bytes.Index(got.Bytes(), []byte(fmt.Sprintf("turn-%d", i-1)))
			if at := bytes.Index(got.Bytes(), []byte(fmt.Sprintf("turn-%d", i))); at < prev {
				t.Errorf("publisher %d delivered before publisher %d, which waited longer", i, i-1)
			}
		}
	}
	if w := broker.Waits(); w < publishers {
		t.Errorf("%d waits counted, want at least %d", w, publishers)
	}
}

// TestStuckTogether: QoS 1 subscribers that stop reading at the same time
// are disconnected together, one stall timeout after they stopped, not
// one after another: the writes their connections' buffers still take
// are not progress while their messages wait for acknowledgements.
func TestStuckTogether(t *testing.T) {
	const clients = 10
	cfg := testConfig()
	cfg.MaxQueued = 200
	cfg.StallTimeout = time.Second
	broker := startBroker(t, cfg, "")
	// They subscribe one record apart, so that the first is full while
	// the others are still short of it when publishing starts to wait.
	ids := make([]string, clients)
	for i := range ids {
		ids[i] = fmt.Sprintf("stuck-%02d", i)
		c := dialRawID(t, broker, ids[i], 4, true, packets.Properties{})
		c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
		if err := burst(context.Background(), broker, 1, 20, 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = burst(ctx, broker, 4, 1<<30, 1, []byte("z")) }()

	gone := make(map[string]time.Time)
	waitFor(t, "every stuck client to be disconnected", func() bool {
		for _, id := range ids {
			if _, ok := gone[id]; ok {
				continue
			}
			if cl, ok := broker.server.Clients.Get(id); !ok || cl.Closed() {
				gone[id] = time.Now()
			}
		}
		return len(gone) == clients
	})
	var first, last time.Time
	for _, at := range gone {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread >= cfg.StallTimeout/2 {
		t.Errorf("the stuck clients were disconnected over %v, want together (within half the stall timeout, %v)", spread, cfg.StallTimeout/2)
	}
}
