package embedded

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// quiet wraps the handler mochi logs to: its info messages (hooks added,
// listeners attached, starting, stopping) become debug, and so do its
// warnings without a message, which it writes whenever a client's
// connection ends with an error (a refused login, a dropped connection).
// The broker logs what matters itself. Its "publish packet error" (a
// hook refused a client's publish: the retained quota, a topic the bridge
// owns; the broker logs those itself, at most once a minute) carries the
// whole packet, payload and all: it becomes debug too. (A connection
// refused because max_clients are connected is logged by busyListener.)
type quiet struct{ slog.Handler }

func (q quiet) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo || (r.Level == slog.LevelWarn && r.Message == "") || r.Message == "publish packet error" {
		r.Level = slog.LevelDebug
		if !q.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

func (q quiet) WithAttrs(attrs []slog.Attr) slog.Handler { return quiet{q.Handler.WithAttrs(attrs)} }
func (q quiet) WithGroup(name string) slog.Handler       { return quiet{q.Handler.WithGroup(name)} }

// busyListener wraps a listener so that the connections mochi refuses
// because max_clients are connected are logged (busyLog): mochi hands the
// refusal back to the listener, which logs it like any connection that
// ends with an error (see quiet).
type busyListener struct {
	listeners.Listener
	busy *busyLog
}

func (l busyListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		err := establish(id, c)
		if errors.Is(err, packets.ErrServerBusy) {
			l.busy.refused()
		}
		return err
	})
}

// busyLog logs the connections refused because max_clients are
// connected, on every listener: the first at once, then at most one line
// a minute, with the count since the line before.
type busyLog struct {
	log   *slog.Logger
	max   int
	count atomic.Int64
	last  atomic.Int64 // unix nanoseconds of the last line
}

// busyLogInterval is the least time between two lines of busyLog.
const busyLogInterval = time.Minute

func (b *busyLog) refused() {
	b.count.Add(1)
	now := time.Now()
	last := b.last.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < busyLogInterval || !b.last.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	b.log.Warn("MQTT client refused: mqtt.embedded.max_clients clients are connected",
		"max_clients", b.max, "refused", b.count.Swap(0))
}

// DropReason says why the broker gave up a message for a subscriber.
type DropReason string

// Why messages are dropped. The bridge's messages are never dropped for a
// connected subscriber that reads: the publisher waits for it instead
// (see fanout).
const (
	// DropStuckSubscriber: messages a subscriber was disconnected with,
	// because it read nothing for stall_timeout while its backlog was
	// full: its QoS 0 messages not yet written, and its QoS 1 and 2 ones
	// when its session ends with the connection.
	DropStuckSubscriber DropReason = "stuck_subscriber"
	// DropSessionFull: a QoS 1 or 2 message for a session that holds
	// max_queued unacknowledged ones already (an offline persistent
	// session, or retained messages sent on subscribe).
	DropSessionFull DropReason = "session_full"
	// DropTooLarge: a message larger than the subscriber's maximum packet
	// size (MQTT 5), which MQTT says to drop.
	DropTooLarge DropReason = "packet_too_large"
	// DropQueueFull: a message of another MQTT client (not the bridge's),
	// delivered by mochi, which drops it when the subscriber's queue is
	// full.
	DropQueueFull DropReason = "queue_full"
	// DropOfflineFull: a QoS 1 or 2 message for an offline persistent
	// session while the offline sessions hold max_offline_queued
	// messages in all (see offlineBudget).
	DropOfflineFull DropReason = "offline_full"
)

// DropReasons lists every DropReason, for metrics.
var DropReasons = []DropReason{DropStuckSubscriber, DropSessionFull, DropTooLarge, DropQueueFull, DropOfflineFull}

// dropLogInterval is the least time between two log lines about dropped
// messages.
const dropLogInterval = 5 * time.Second

// drops counts the messages the broker drops, by reason, and logs them
// with the real counts: the first drop at once, then at most once per
// dropLogInterval while drops go on, and what is left when the broker
// closes. It is also the hook mochi tells of the messages its own publish
// path drops. Counting a drop takes no lock once its client and reason
// are known: under abuse (clients that never read, sessions nobody comes
// back for) a record's messages may be dropped for many clients each.
type drops struct {
	mqtt.HookBase
	log      *slog.Logger
	interval time.Duration

	total map[DropReason]*atomic.Int64 // made once, one counter per reason
	armed atomic.Bool                  // a log line is due (timer set)

	mu      sync.RWMutex
	pending map[dropKey]*dropCount // since the last log line; idle ones are removed
	timer   *time.Timer            // the next log line, while drops are pending
	last    time.Time              // when the last line was logged
}

type dropKey struct {
	client string
	reason DropReason
}

type dropCount struct {
	n      atomic.Int64 // dropped since the last log line
	remote string       // the client's address, for the log line
}

func newDrops(log *slog.Logger) *drops {
	d := &drops{log: log, interval: dropLogInterval, total: make(map[DropReason]*atomic.Int64),
		pending: make(map[dropKey]*dropCount)}
	for _, r := range DropReasons {
		d.total[r] = new(atomic.Int64)
	}
	return d
}

// add counts n messages dropped for cl.
func (d *drops) add(cl *mqtt.Client, reason DropReason, n int) {
	if n <= 0 {
		return
	}
	d.total[reason].Add(int64(n))
	k := dropKey{cl.ID, reason}
	// Counted under the read lock, so that flush, which takes the write
	// lock to read and remove counts, never misses one.
	d.mu.RLock()
	c := d.pending[k]
	if c != nil {
		c.n.Add(int64(n))
	}
	d.mu.RUnlock()
	if c == nil {
		d.mu.Lock()
		if c = d.pending[k]; c == nil {
			c = &dropCount{remote: cl.Net.Remote}
			d.pending[k] = c
		}
		c.n.Add(int64(n))
		d.mu.Unlock()
	}
	if !d.armed.Load() && d.armed.CompareAndSwap(false, true) {
		d.mu.Lock()
		d.timer = time.AfterFunc(max(d.interval-time.Since(d.last), 0), d.flush)
		d.mu.Unlock()
	}
}

// count returns how many messages were dropped for reason so far.
func (d *drops) count(reason DropReason) int64 { return d.total[reason].Load() }

// flush logs the pending drops, one line per client and reason, and
// forgets the clients that dropped nothing since the line before.
func (d *drops) flush() {
	// Disarmed first: a drop counted from here on sets the next line.
	d.armed.Store(false)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timer = nil
	var since time.Duration
	if !d.last.IsZero() {
		since = time.Since(d.last).Round(time.Millisecond)
	}
	logged := false
	for k, c := range d.pending {
		n := c.n.Swap(0)
		if n == 0 {
			delete(d.pending, k)
			continue
		}
		d.log.Warn("MQTT broker dropped messages for a subscriber",
			"client", k.client, "remote", c.remote, "reason", string(k.reason), "dropped", n,
			"since_last_report", since, "dropped_total", d.total[k.reason].Load())
		logged = true
	}
	if logged {
		d.last = time.Now()
	}
}

// close logs what is pending now.
func (d *drops) close() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	d.flush()
}

func (d *drops) ID() string { return "fleet2mqtt-drops" }

func (d *drops) Provides(b byte) bool { return b == mqtt.OnPublishDropped }

// OnPublishDropped is told of messages mochi's own publish path drops.
func (d *drops) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) { d.add(cl, DropQueueFull, 1) }
