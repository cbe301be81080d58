package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// Replicas of one installation (Config.Replica) share a broker. Each says
// whether it runs on its own state topic, <prefix>/bridge/<replica>/state,
// which carries its last will. <prefix>/bridge/state, which Home
// Assistant's availability follows, must read online while any replica
// runs and offline once none does; as a client has one last will only,
// and it is on the replica's own topic, the replicas keep that topic
// together:
//
//   - A replica publishes online there when it starts, and again whenever
//     it reads anything else there, or reads its own state turn online
//     (after a reconnection: a broker that lost its retained messages
//     would otherwise hold none).
//   - A replica that stops publishes offline on its own topic, waits for
//     that message to come back through its subscription, by which time
//     it has read what the broker had received from the others before,
//     and publishes offline on <prefix>/bridge/state only when no other
//     replica's state reads online.
//
// Of two replicas that stop at once, the one whose offline the broker
// received second has read the other's first, and publishes offline. A
// replica that dies without stopping leaves offline on its own topic
// through its last will, and the others keep <prefix>/bridge/state
// online. Nothing can say offline there for the last running replica
// when it dies that way: <prefix>/bridge/state then keeps reading online
// until a replica starts and stops again, while that replica's own topic
// reads offline.

// replicaEchoWait bounds how long a stopping replica waits for its own
// offline to come back before it decides on <prefix>/bridge/state.
const replicaEchoWait = 5 * time.Second

// replicas is what a replica knows of its fellow replicas.
type replicas struct {
	name   string // Config.Replica
	own    string // <prefix>/bridge/<name>/state
	shared string // <prefix>/bridge/state
	filter string // <prefix>/bridge/+/state
	levels string // <prefix>/bridge/

	mu        sync.Mutex
	online    map[string]bool // replicas whose state reads online, by name
	ownState  string          // the last payload read on own
	ownSeq    int             // payloads read on own so far
	ownChange chan struct{}   // closed and replaced when a payload is read on own
	watching  bool            // RunReplicas has subscribed
	stopping  bool            // Offline has begun: nothing is said online any more
	needOwn   bool            // own must be said online again
	// needShared: shared must be said online again.
	needShared bool
	wake       chan struct{} // capacity 1
	// cancelSay ends RunReplicas' publish of online on shared, so that a
	// replica that stops while the broker is away need not wait for it.
	cancelSay context.CancelFunc

	sharedMu sync.Mutex // held while deciding and publishing shared
}

func newReplicas(cfg Config) *replicas {
	if cfg.Replica == "" {
		return nil
	}
	levels := cfg.Prefix + "/bridge/"
	return &replicas{
		name:      cfg.Replica,
		own:       cfg.BridgeStateTopic(),
		shared:    cfg.AvailabilityTopic(),
		filter:    levels + "+/state",
		levels:    levels,
		online:    make(map[string]bool),
		ownChange: make(chan struct{}),
		wake:      make(chan struct{}, 1),
	}
}

func (r *replicas) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// onState reads a replica's state topic.
func (r *replicas) onState(topic string, payload []byte) {
	name, ok := strings.CutPrefix(topic, r.levels)
	if !ok {
		return
	}
	if name, ok = strings.CutSuffix(name, "/state"); !ok || name == "" || strings.Contains(name, "/") {
		return
	}
	up := string(payload) == PayloadOnline
	r.mu.Lock()
	if up {
		r.online[name] = true
	} else {
		delete(r.online, name)
	}
	if name == r.name {
		r.ownState = string(payload)
		r.ownSeq++
		close(r.ownChange)
		r.ownChange = make(chan struct{})
		if !r.stopping {
			if up {
				r.needShared = true
			} else {
				// Another process with this name stopped, or the will
				// of a connection this one has replaced arrived late.
				r.needOwn = true
			}
		}
	}
	r.mu.Unlock()
	r.signal()
}

// onShared reads <prefix>/bridge/state.
func (r *replicas) onShared(_ string, payload []byte) {
	if string(payload) == PayloadOnline {
		return
	}
	r.mu.Lock()
	if !r.stopping {
		r.needShared = true
	}
	r.mu.Unlock()
	r.signal()
}

// othersOnline reports whether another replica's state reads online.
func (r *replicas) othersOnline() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.online {
		if name != r.name {
			return true
		}
	}
	return false
}

// RunReplicas keeps <prefix>/bridge/state online while this replica runs
// (see Config.Replica), until ctx ends: it subscribes through sub to the
// state topics of every replica and to <prefix>/bridge/state, and says
// online again where needed. Offline reads what it learnt to decide
// whether this replica is the last one to stop, so ctx should end only
// after Offline has returned. For a single instance it returns nil at
// once. It returns an error only when it cannot subscribe; failed
// publishes are logged and made good on the next reconnection.
func (b *Bridge) RunReplicas(ctx context.Context, sub pubsub.Subscriber) error {
	r := b.rep
	if r == nil {
		return nil
	}
	if err := sub.Subscribe(ctx, r.filter, r.onState); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.filter, err)
	}
	if err := sub.Subscribe(ctx, r.shared, r.onShared); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.shared, err)
	}
	r.mu.Lock()
	r.watching = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.watching = false
		r.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
		r.mu.Lock()
		own, shared := r.needOwn && !r.stopping, r.needShared && !r.stopping
		r.needOwn, r.needShared = false, false
		r.mu.Unlock()
		if own {
			if err := b.publishBridgeState(ctx, r.own, PayloadOnline); err != nil && ctx.Err() == nil {
				b.log.Warn("say again that this replica runs", "topic", r.own, "err", err)
			}
		}
		if shared {
			r.sayOnline(ctx, b)
		}
	}
}

// sayOnline publishes online on shared, unless Offline has begun; Offline
// cancels it should it wait for the broker.
func (r *replicas) sayOnline(ctx context.Context, b *Bridge) {
	r.sharedMu.Lock()
	defer r.sharedMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	stopping := r.stopping
	r.cancelSay = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.cancelSay = nil
		r.mu.Unlock()
	}()
	if stopping {
		return
	}
	if err := b.publishBridgeState(ctx, r.shared, PayloadOnline); err != nil && ctx.Err() == nil {
		b.log.Warn("say again that fleet2mqtt runs", "topic", r.shared, "err", err)
	}
}

// replicaOffline is Offline's part for a replica: its own state, then
// <prefix>/bridge/state if it is the last one to stop.
func (b *Bridge) replicaOffline(ctx context.Context) error {
	r := b.rep
	r.mu.Lock()
	r.stopping = true
	if r.cancelSay != nil {
		r.cancelSay()
	}
	before := r.ownSeq
	r.mu.Unlock()
	if err := b.publishBridgeState(ctx, r.own, PayloadOffline); err != nil {
		return err
	}

	// Wait for the echo, so that the states the broker received before
	// ours have been read.
	timer := time.NewTimer(replicaEchoWait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		echoed := r.ownSeq > before && r.ownState == PayloadOffline
		watching, changed := r.watching, r.ownChange
		r.mu.Unlock()
		if echoed || !watching {
			break
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
			b.log.Warn("own offline state did not come back from the broker; deciding on what is known", "topic", r.own, "after", replicaEchoWait)
		case <-ctx.Done():
			return fmt.Errorf("wait for own bridge state: %w", ctx.Err())
		}
		break
	}

	r.sharedMu.Lock()
	defer r.sharedMu.Unlock()
	if r.othersOnline() {
		b.log.Debug("other replicas run; fleet2mqtt stays online", "topic", r.shared)
		return nil
	}
	return b.publishBridgeState(ctx, r.shared, PayloadOffline)
}

// ReplicaStates is the bridge as a replica's Home Assistant announcer
// drives it: after Home Assistant's birth message it republishes the
// values of the cars that stream to this replica only. A car that moved
// to another replica has newer values there, which this replica's would
// overwrite (and its connected would read false).
type ReplicaStates struct{ *Bridge }

// Republish republishes vin's values when its car streams to this
// replica (Streams), and does nothing otherwise.
func (s ReplicaStates) Republish(ctx context.Context, vin string) error {
	if !s.Streams(vin) {
		return nil
	}
	return s.Bridge.Republish(ctx, vin)
}
