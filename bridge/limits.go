package bridge

import (
	"sync/atomic"
	"time"
)

// refusedLogInterval is how often, at most, the bridge logs per car what it
// left out past the car's limits (maxSlots, maxNameTopics).
const refusedLogInterval = time.Minute

// Stats are the bridge's counters since it started.
type Stats struct {
	// FieldsRefused counts data items left out because their car already
	// has maxSlots distinct fields: each would have been a new retained
	// topic.
	FieldsRefused int64
	// NamesRefused counts alerts and errors left out because their car
	// already has maxNameTopics distinct alert and error names.
	NamesRefused int64
}

// refusedCounts are the bridge's counters of items left out on purpose.
type refusedCounts struct {
	fields, names atomic.Int64
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{FieldsRefused: b.refused.fields.Load(), NamesRefused: b.refused.names.Load()}
}

// refusedItems is what one car had left out and not logged yet, and when
// that was last logged. It is guarded by the vehicle's mu.
type refusedItems struct {
	fields, names int64
	loggedAt      time.Time
}

// refuseField notes a data item of v left out past maxSlots. v.mu is held.
func (b *Bridge) refuseField(v *vehicle) {
	b.refused.fields.Add(1)
	v.refused.fields++
}

// refuseNames notes n alerts or errors of v left out past maxNameTopics.
// v.mu is held.
func (b *Bridge) refuseNames(v *vehicle, n int) {
	b.refused.names.Add(int64(n))
	v.refused.names += int64(n)
}

// logRefused logs what v had left out since the last line, at most once
// per refusedLogInterval, so that a car that keeps sending unknown data
// costs one line a minute. v.mu is held.
func (b *Bridge) logRefused(v *vehicle) {
	r := &v.refused
	if r.fields == 0 && r.names == 0 {
		return
	}
	now := b.clock.Now()
	if !r.loggedAt.IsZero() && now.Sub(r.loggedAt) < refusedLogInterval {
		return
	}
	b.log.Warn("vehicle sends more distinct fields or alert and error names than the bridge keeps; left out (the records are acknowledged)",
		"vin", v.vin, "fields_left_out", r.fields, "names_left_out", r.names,
		"max_fields", maxSlots, "max_names", maxNameTopics)
	r.fields, r.names, r.loggedAt = 0, 0, now
}
