package announce

import (
	"container/heap"
	"time"
)

// The announcer's work per wake-up is proportional to the cars with news,
// not to the fleet: Observe queues a car when it first has news since Run
// last looked (pending), and Run keeps the cars that are due for an
// announcement in a heap ordered by when (dueQueue). A record that brings
// nothing new costs Observe a few loads and no wake-up at all.

// enqueue hands c to Run's next collect.
func (a *Announcer) enqueue(c *car) {
	a.pendMu.Lock()
	a.pending = append(a.pending, c)
	a.pendMu.Unlock()
}

// takePending returns the cars queued since the last call. The slice is
// valid until the next call.
func (r *runner) takePending() []*car {
	r.pendMu.Lock()
	r.pending, r.spare = r.spare[:0], r.pending
	r.pendMu.Unlock()
	return r.spare
}

// schedule puts c in the queue of due cars at r.due(c), or takes it out
// when it is not due; call it after changing c.first, c.last or
// c.retryAt.
func (r *runner) schedule(c *car) {
	at := r.due(c)
	switch {
	case at.IsZero() && c.queued > 0:
		heap.Remove(&r.queue, c.queued-1)
	case at.IsZero():
	case c.queued > 0:
		c.dueAt = at
		heap.Fix(&r.queue, c.queued-1)
	default:
		c.dueAt = at
		heap.Push(&r.queue, c)
	}
}

// nextDue returns when the first car is due, zero when none is.
func (r *runner) nextDue() time.Time {
	if len(r.queue) == 0 {
		return time.Time{}
	}
	return r.queue[0].dueAt
}

// popDue takes the cars due at now out of the queue, appended to dst.
func (r *runner) popDue(dst []*car, now time.Time) []*car {
	for len(r.queue) > 0 && !now.Before(r.queue[0].dueAt) {
		dst = append(dst, heap.Pop(&r.queue).(*car))
	}
	return dst
}

// dueQueue is a heap of cars by due time; car.queued is a car's index
// in it plus one (zero: not queued).
type dueQueue []*car

func (q dueQueue) Len() int           { return len(q) }
func (q dueQueue) Less(i, j int) bool { return q[i].dueAt.Before(q[j].dueAt) }
func (q dueQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].queued, q[j].queued = i+1, j+1
}

func (q *dueQueue) Push(x any) {
	c := x.(*car)
	*q = append(*q, c)
	c.queued = len(*q)
}

func (q *dueQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	c.queued = 0
	return c
}
