package embedded

import (
	"sync"
	"sync/atomic"
)

// offlineBudget bounds the QoS 1 and 2 messages kept, in all, for
// persistent sessions whose clients are offline (max_offline_queued).
// Each such session keeps at most max_queued, but sessions are cheap to
// make: without a bound for all of them, clients that subscribe to
// everything with a persistent session and never come back (a script with
// a new client id on every start, say) would make the broker keep
// max_queued messages, some 2 KiB each, for every one of them. A message
// for an offline session is counted here when it is kept, by the bridge's
// path and mochi's alike, and the session's count is given back when it
// resumes (its client is online again, and its backlog bounds apply),
// expires or is replaced.
type offlineBudget struct {
	limit int64
	held  atomic.Int64 // messages kept for offline sessions, in all

	mu sync.Mutex
	by map[string]int64 // per client id
}

func newOfflineBudget(limit int) *offlineBudget {
	return &offlineBudget{limit: int64(limit), by: make(map[string]int64)}
}

// take counts one more message kept for the offline session of client
// id, and reports false, counting nothing, when the budget is spent.
func (o *offlineBudget) take(id string) bool {
	if o.held.Load() >= o.limit {
		return false // spent: the common case once it is, without the lock
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held.Load() >= o.limit {
		return false
	}
	o.by[id]++
	o.held.Add(1)
	return true
}

// giveBack returns one message taken for id that was not kept after all.
func (o *offlineBudget) giveBack(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by[id] > 0 {
		o.by[id]--
		o.held.Add(-1)
		if o.by[id] == 0 {
			delete(o.by, id)
		}
	}
}

// release returns everything taken for id: its session resumed, expired
// or was replaced.
func (o *offlineBudget) release(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := o.by[id]; n > 0 {
		o.held.Add(-n)
		delete(o.by, id)
	}
}

// Held returns how many messages are kept for offline sessions.
func (o *offlineBudget) Held() int64 { return o.held.Load() }
