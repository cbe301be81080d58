package announce

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
)

// StatusWatch follows Home Assistant's status topic (its birth message
// "online" and its last will "offline") to tell whether Home Assistant is
// connected to the broker, for the setup page. It is independent of the
// Announcer, which answers the same birth message by announcing again.
// Its methods are safe for concurrent use.
type StatusWatch struct {
	sub   pubsub.Subscriber
	topic string
	now   func() time.Time

	mu     sync.Mutex
	at     time.Time // the latest online
	online bool
}

// NewStatusWatch watches topic (discovery.Config.StatusTopicOrDefault) on
// sub; now is the clock, time.Now when nil.
func NewStatusWatch(sub pubsub.Subscriber, topic string, now func() time.Time) *StatusWatch {
	if now == nil {
		now = time.Now
	}
	return &StatusWatch{sub: sub, topic: topic, now: now}
}

// Run subscribes to the status topic and follows it until ctx ends. It
// returns an error only when it cannot subscribe.
func (w *StatusWatch) Run(ctx context.Context) error {
	err := w.sub.Subscribe(ctx, w.topic, func(_ string, payload []byte) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case discovery.OnStatus(payload):
			w.at, w.online = w.now(), true
		case string(bytes.TrimSpace(payload)) == "offline":
			w.online = false
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", w.topic, err)
	}
	<-ctx.Done()
	return nil
}

// Seen reports the time of Home Assistant's latest "online", and whether
// it is still online: false when none came since Run started or the
// latest message said "offline". It never blocks on the broker.
func (w *StatusWatch) Seen() (at time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at, w.online
}
