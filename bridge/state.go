package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// deferredStateTimeout bounds the publication of a state object that waited
// for its interval: it has no record, and so no deadline of its own.
const deferredStateTimeout = 30 * time.Second

// stateSchedule is when a vehicle's state object (<prefix>/<VIN>/state)
// was last published and whether a newer one waits. It is guarded by the
// vehicle's mu.
//
// The state object repeats every field's latest value, so it is by far
// the largest message of a record. It is published with a data record
// that changed a value, unless the last one went out less than
// Config.StateInterval ago; then it waits for the end of the interval and
// goes out once, with the values of that moment (a trailing publication,
// on a grid shared by all cars: see alignTrailing), so that the latest
// values always arrive. The field topics, published
// with every record before the car's frame is acknowledged, are the
// acknowledged data; the state object is derived from them.
type stateSchedule struct {
	dirty bool        // a value changed since the state object was last published
	at    time.Time   // when it was last published
	timer *stateTimer // the pending trailing publication, if any
}

// stateTimer is one scheduled trailing publication.
type stateTimer struct{ stop func() bool }

// clock is the time the state interval is measured in; the zero value is
// the real time. Tests replace it.
type clock struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) (stop func() bool)
}

func (c clock) Now() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	if c.afterFunc != nil {
		return c.afterFunc(d, f)
	}
	return time.AfterFunc(d, f).Stop
}

// stateChanged notes that a value of the state object changed.
func (v *vehicle) stateChanged() { v.state.dirty, v.unsaved = true, true }

// stateUnsent notes that a record's messages did not reach the broker:
// the state object may not have either, so the next record sends it.
func (v *vehicle) stateUnsent() {
	for i := range v.slots {
		if v.slots[i].json != nil {
			v.state.dirty = true
			return
		}
	}
}

// stateDue adds the state object to bt when a value changed and the last
// one is at least StateInterval old; when it is younger, it schedules the
// trailing publication instead. v.mu is held.
func (b *Bridge) stateDue(v *vehicle, bt *batch) {
	st := &v.state
	if !st.dirty {
		return
	}
	now := b.clock.Now()
	if iv := b.cfg.StateInterval; iv > 0 && !st.at.IsZero() {
		if wait := st.at.Add(iv).Sub(now); wait > 0 {
			if st.timer == nil {
				t := new(stateTimer)
				wait = alignTrailing(now, wait, iv)
				t.stop = b.clock.AfterFunc(wait, func() { b.publishDeferredState(v, t) })
				st.timer = t
			}
			return
		}
	}
	b.appendStateMessage(v, bt, now)
}

// alignTrailing moves a trailing publication due wait after now on to the
// next multiple of a quarter of interval (of the wall clock), so that the
// trailing publications of cars that stream at once go out together, in
// one wake-up of the process, instead of each in a wake-up of its own
// (200 a second with 200 cars that send more often than the interval).
// The state object comes at most interval/4 later for it.
func alignTrailing(now time.Time, wait, interval time.Duration) time.Duration {
	grid := interval / 4
	if grid <= 0 {
		return wait
	}
	due := now.Add(wait)
	at := due.Truncate(grid)
	if at.Before(due) {
		at = at.Add(grid)
	}
	return at.Sub(now)
}

// appendStateMessage adds the state object to bt and notes it published
// at now. v.mu is held.
func (b *Bridge) appendStateMessage(v *vehicle, bt *batch, now time.Time) {
	bt.begin(v.stateTopic, b.cfg.QoS, b.cfg.Retain)
	bt.buf = v.appendState(bt.buf)
	st := &v.state
	st.dirty, st.at = false, now
	if st.timer != nil {
		st.timer.stop()
		st.timer = nil
	}
}

// publishDeferredState is the trailing publication t of v's state object.
func (b *Bridge) publishDeferredState(v *vehicle, t *stateTimer) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state.timer != t {
		return // published with a record meanwhile, or flushed
	}
	v.state.timer = nil
	ctx, cancel := context.WithTimeout(context.Background(), deferredStateTimeout)
	defer cancel()
	if err := b.publishState(ctx, v); err != nil {
		b.log.Debug("state object not published; the vehicle's next record sends it", "vin", v.vin, "error", err)
	}
}

// publishState publishes v's state object now if a value changed since it
// was last published. v.mu is held.
func (b *Bridge) publishState(ctx context.Context, v *vehicle) error {
	if !v.state.dirty || !b.cfg.StateTopic || !b.native {
		return nil
	}
	bt := getBatch()
	defer putBatch(bt)
	b.appendStateMessage(v, bt, b.clock.Now())
	if err := b.pub.Publish(ctx, bt.seal()); err != nil {
		v.state.dirty = true
		return fmt.Errorf("publish state of %s: %w", v.vin, err)
	}
	return nil
}

// flushStates publishes at once every state object that waits for the
// end of its interval, so that a clean shutdown leaves the latest values
// on the broker.
func (b *Bridge) flushStates(ctx context.Context) error {
	b.mu.RLock()
	vehicles := make([]*vehicle, 0, len(b.vehicles))
	for _, v := range b.vehicles {
		vehicles = append(vehicles, v)
	}
	b.mu.RUnlock()
	var errs []error
	for _, v := range vehicles {
		v.mu.Lock()
		err := b.publishState(ctx, v)
		v.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
