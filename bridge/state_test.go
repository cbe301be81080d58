package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// everyState is the default configuration with a state object after every
// record that changes a value, for tests of its content.
func everyState() Config {
	cfg := DefaultConfig()
	cfg.StateInterval = 0
	return cfg
}

// fakeClock is a clock whose time moves only when the test says so; due
// timers run in advance, on the test's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) clock() clock { return clock{now: c.now, afterFunc: c.afterFunc} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped && slices.Contains(c.timers, t)
		t.stopped = true
		return was
	}
}

// advance moves the time on by d and runs the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.stopped {
			return true
		}
		if !t.at.After(c.t) {
			due = append(due, t)
			return true
		}
		return false
	})
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending is the number of timers that have neither run nor been stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

// states returns the payloads of the state objects in msgs, and how many
// other messages there are.
func states(msgs []pubsub.Message) (payloads []string, others int) {
	for _, m := range msgs {
		if m.Topic == "tesla/"+vin+"/state" {
			payloads = append(payloads, string(m.Payload))
		} else {
			others++
		}
	}
	return payloads, others
}

func socRecord(soc int64, more ...telemetry.Datum) *telemetry.Record {
	return dataRecord(append([]telemetry.Datum{datum(telemetry.FieldSoc, telemetry.IntValue(soc))}, more...)...)
}

// TestStateInterval follows the state object of one car through records
// that come faster than the interval: fields every time, the state object
// at most once an interval, and always its latest values in the end.
func TestStateInterval(t *testing.T) {
	c := newFakeClock()
	b, r := newTestBridge(t, DefaultConfig()) // a state object at most every second
	b.clock = c.clock()
	gear := datum(telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 5))
	steps := []struct {
		name    string
		advance time.Duration // before the record, if any
		rec     *telemetry.Record
		fields  int      // field messages expected
		want    []string // state objects expected
	}{
		{"first record: at once", 0, socRecord(1), 1, []string{`{"Soc":1}`}},
		{"within the interval: waits", 100 * time.Millisecond, socRecord(2), 1, nil},
		{"still waits", 100 * time.Millisecond, socRecord(3, gear), 2, nil},
		{"end of the interval: the latest values, once", 800 * time.Millisecond, nil, 0, []string{`{"Soc":3,"Gear":"D"}`}},
		{"nothing more", 5 * time.Second, nil, 0, nil},
		{"after a quiet interval: at once", 0, socRecord(4), 1, []string{`{"Soc":4,"Gear":"D"}`}},
		{"no change: no state object", 2 * time.Second, socRecord(4, gear), 2, nil},
		{"a change after a quiet interval: at once", 0, socRecord(5), 1, []string{`{"Soc":5,"Gear":"D"}`}},
		{"a change within it waits", 500 * time.Millisecond, socRecord(6), 1, nil},
		{"and goes out a second after the last", 499 * time.Millisecond, nil, 0, nil},
		{"exactly then", time.Millisecond, nil, 0, []string{`{"Soc":6,"Gear":"D"}`}},
	}
	for _, s := range steps {
		c.advance(s.advance)
		if s.rec != nil {
			handle(t, b, s.rec)
		}
		got, others := states(r.take())
		if !slices.Equal(got, s.want) || others != s.fields {
			t.Fatalf("%s: state objects %q and %d other messages, want %q and %d", s.name, got, others, s.want, s.fields)
		}
	}
	if n := c.pending(); n != 0 {
		t.Errorf("%d timers left", n)
	}
}

// TestStateEveryRecord: with state_interval 0 every record that changes a
// value publishes the state object right after its fields.
func TestStateEveryRecord(t *testing.T) {
	c := newFakeClock()
	b, r := newTestBridge(t, everyState())
	b.clock = c.clock()
	handle(t, b, socRecord(1))
	handle(t, b, socRecord(2))
	handle(t, b, socRecord(2)) // no change
	handle(t, b, socRecord(3))
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Soc qos=1 retain=true 1",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":1}`,
		"tesla/" + vin + "/Soc qos=1 retain=true 2",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":2}`,
		"tesla/" + vin + "/Soc qos=1 retain=true 2",
		"tesla/" + vin + "/Soc qos=1 retain=true 3",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":3}`,
	})
	if n := c.pending(); n != 0 {
		t.Errorf("%d timers with state_interval 0", n)
	}
}

// TestStateOffline: a clean shutdown publishes the state object that waits
// for its interval before the bridge says offline; its timer then does
// nothing.
func TestStateOffline(t *testing.T) {
	c := newFakeClock()
	b, r := newTestBridge(t, DefaultConfig())
	b.clock = c.clock()
	handle(t, b, socRecord(1))
	handle(t, b, socRecord(2))
	r.take()
	if err := b.Offline(context.Background()); err != nil {
		t.Fatal(err)
	}
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":2}`,
		"tesla/bridge/state qos=1 retain=true offline",
	})
	c.advance(time.Hour)
	if msgs := r.take(); len(msgs) != 0 {
		t.Errorf("after Offline: %q", lines(msgs))
	}
}

// TestStateAfterFailure: when a record's messages do not reach the broker
// (the record is not acknowledged and comes again), its state object is
// published again; so is a trailing state object whose publication
// failed, with the next record.
func TestStateAfterFailure(t *testing.T) {
	c := newFakeClock()
	b, r := newTestBridge(t, DefaultConfig())
	b.clock = c.clock()
	handle(t, b, socRecord(1))
	r.take()

	c.advance(2 * time.Second)
	r.err = errors.New("broker away")
	if err := b.Handle(context.Background(), socRecord(2)); err == nil {
		t.Fatal("Handle succeeded with a failing publisher")
	}
	r.err = nil
	handle(t, b, socRecord(2)) // the car sends the record again: same values
	c.advance(time.Second)
	got, _ := states(r.take())
	if !slices.Equal(got, []string{`{"Soc":2}`}) {
		t.Fatalf("after a failed record: state objects %q", got)
	}

	// A trailing publication that fails is made by the next record.
	c.advance(2 * time.Second)
	handle(t, b, socRecord(3))
	handle(t, b, socRecord(4))
	r.take()
	r.err = errors.New("broker away")
	c.advance(time.Second)
	r.err = nil
	if got, _ := states(r.take()); len(got) != 0 {
		t.Fatalf("state objects %q from a failing publisher", got)
	}
	c.advance(2 * time.Second)
	handle(t, b, socRecord(4, datum(telemetry.FieldGear, telemetry.Value{}))) // no change, but the state object is owed
	if got, _ := states(r.take()); !slices.Equal(got, []string{`{"Soc":4}`}) {
		t.Fatalf("state objects %q, want the owed one", got)
	}
}

// waiter is a Publisher that signals every state object it receives.
type waiter struct {
	recorder
	states chan string
}

func (w *waiter) Publish(ctx context.Context, msgs []pubsub.Message) error {
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/state") {
			w.states <- string(m.Payload)
		}
	}
	return w.recorder.Publish(ctx, msgs)
}

// TestStateTimer runs the trailing publication on the real clock: the
// latest values arrive without another record.
func TestStateTimer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateInterval = 20 * time.Millisecond
	w := &waiter{states: make(chan string, 16)}
	b, err := New(cfg, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	for soc := range int64(5) {
		handle(t, b, socRecord(soc))
	}
	for {
		select {
		case s := <-w.states:
			if s == `{"Soc":4}` {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the latest state object never arrived")
		}
	}
}

func TestStateIntervalValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateInterval = -time.Second
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "state_interval: ") {
		t.Errorf("negative interval: %v", err)
	}
	if got := DefaultConfig().StateInterval; got != time.Second {
		t.Errorf("default interval %v, want 1s", got)
	}
}

// TestStateTrailingAligned: the trailing state objects of cars whose
// intervals end within the same quarter interval go out together, at the
// end of that quarter, not each at its own moment.
func TestStateTrailingAligned(t *testing.T) {
	c := newFakeClock()
	c.t = c.t.Add(10 * time.Millisecond) // off the grid
	b, r := newTestBridge(t, DefaultConfig())
	b.clock = c.clock()
	const other = "5YJ3TESTVIN000002"
	otherRecord := func(soc int64) *telemetry.Record {
		rec := socRecord(soc)
		rec.VIN = other
		return rec
	}
	handle(t, b, socRecord(1)) // 12:00:00.010, at once
	c.advance(50 * time.Millisecond)
	handle(t, b, otherRecord(1)) // .060, at once
	c.advance(250 * time.Millisecond)
	handle(t, b, socRecord(2)) // due at 01.010: waits for 01.250
	c.advance(50 * time.Millisecond)
	handle(t, b, otherRecord(2)) // due at 01.060: waits for 01.250
	r.take()
	c.advance(1250*time.Millisecond - 360*time.Millisecond - time.Millisecond)
	if got := lines(r.take()); len(got) != 0 {
		t.Fatalf("before the grid's point: %q", got)
	}
	c.advance(time.Millisecond)
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":2}`,
		"tesla/" + other + `/state qos=1 retain=true {"Soc":2}`,
	})
}

// alignTrailing moves a due time on to the next quarter of the interval.
func TestAlignTrailing(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		now, wait, interval, want time.Duration
	}{
		{0, 1000 * ms, time.Second, 1000 * ms}, // on the grid already
		{10 * ms, 1000 * ms, time.Second, 1240 * ms},
		{10 * ms, 240 * ms, time.Second, 240 * ms},
		{10 * ms, 241 * ms, time.Second, 490 * ms},
		{7, 5, 2, 5}, // an interval too short for a grid
	} {
		if got := alignTrailing(time.Unix(0, int64(c.now)), c.wait, c.interval); got != c.want {
			t.Errorf("alignTrailing(%v, %v, %v) = %v, want %v", c.now, c.wait, c.interval, got, c.want)
		}
	}
}
