package embedded

import (
	"context"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// quiet wraps the handler mochi logs to: its info messages (hooks added,
// listeners attached, starting, stopping) become debug, and so do its
// warnings without a message, which it writes whenever a client's
// connection ends with an error (a refused login, a dropped connection).
// The broker logs what matters itself. Its "publish packet error" (a
// hook refused a client's publish: the retained quota, a topic the bridge
// owns; the broker logs those itself, at most once a minute) carries the
// whole packet, payload and all: it becomes debug too.
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

// dropWatch logs when the broker drops messages for a subscriber whose
// queue is full (a client that reads too slowly), at most once a minute
// per client.
type dropWatch struct {
	mqtt.HookBase
	log *slog.Logger

	mu     sync.Mutex
	counts map[string]int
	logged map[string]time.Time
}

func newDropWatch(log *slog.Logger) *dropWatch {
	return &dropWatch{log: log, counts: make(map[string]int), logged: make(map[string]time.Time)}
}

func (d *dropWatch) ID() string { return "fleet2mqtt-drop-watch" }

func (d *dropWatch) Provides(b byte) bool {
	return b == mqtt.OnPublishDropped || b == mqtt.OnDisconnect
}

func (d *dropWatch) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts[cl.ID]++
	if now := time.Now(); now.Sub(d.logged[cl.ID]) >= time.Minute {
		d.log.Warn("MQTT client reads too slowly; the broker dropped messages for it",
			"client", cl.ID, "remote", cl.Net.Remote, "dropped", d.counts[cl.ID])
		d.logged[cl.ID] = now
		d.counts[cl.ID] = 0
	}
}

func (d *dropWatch) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.counts, cl.ID)
	delete(d.logged, cl.ID)
}
