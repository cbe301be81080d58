package announce

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
)

// TestStatusWatch: Home Assistant's birth message and last will, on a
// real embedded broker, as the setup page sees them.
func TestStatusWatch(t *testing.T) {
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	b, err := embedded.New(cfg, filepath.Join(t.TempDir(), "mqtt"), "tesla", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	var clock atomic.Int64 // Unix seconds
	clock.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	topic := discovery.DefaultConfig().StatusTopicOrDefault()
	w := NewStatusWatch(b, topic, now)
	if _, ok := w.Seen(); ok {
		t.Fatal("online before anything was said")
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Publish until the watch has subscribed and heard it.
	say := func(payload string, want bool) {
		t.Helper()
		for {
			if err := b.Publish(ctx, []pubsub.Message{{Topic: topic, Payload: []byte(payload)}}); err != nil {
				t.Fatal(err)
			}
			if got, ok := w.Seen(); ok == want && (!want || got.Equal(now())) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("never saw %q", payload)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	say("online\n", true)
	say("offline", false)
	if got, _ := w.Seen(); !got.Equal(now()) {
		t.Errorf("the latest online is forgotten: %v", got)
	}
	clock.Add(3600)
	say("online", true)
}
