package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/teslamate"
	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Sessions keeps the sessions that ended; package activity/history's
// Store is one. Append returns once the session is stored.
type Sessions interface {
	Append(activity.Session) error
}

// DerivedOptions configure Derived.
type DerivedOptions struct {
	// Activity holds the rules, places and prices; it must have passed
	// Validate. Required.
	Activity *activity.Config
	// TeslaMate publishes TeslaMate's topics too, when enabled.
	TeslaMate teslamate.Config
	// History keeps every session that ends; nil keeps none.
	History Sessions
	// StateDir keeps each car's tracker (<VIN>.json) across restarts; ""
	// keeps nothing.
	StateDir string
}

// Derived publishes what each car is doing, derived from its records by
// an activity.Tracker: status, place, drives and charging sessions (see
// the level constants), and optionally TeslaMate's layout. NewDerived
// attaches it to its Bridge: from then on Bridge.Handle feeds every record
// to the car's tracker and publishes the derived messages with the
// record's signals, in one call, before the frame is acknowledged. A
// session that ended is appended to the history then; when the history
// cannot be written (a full or read-only disk), the session waits in
// memory and is tried again at every Tick (see Unfiled): live data does
// not wait for the disk. Tick applies the rules that need time to pass.
// It is safe for concurrent use.
type Derived struct {
	b    *Bridge
	opts DerivedOptions
	ids  *teslamate.IDs // under mu

	mu   sync.RWMutex
	cars map[string]*derivedCar

	// failing counts the cars whose tracker could not be saved at the
	// last attempt (see SaveFailing); unfiled, the sessions that wait
	// for the history (see Unfiled).
	failing atomic.Int32
	unfiled atomic.Int32
}

// derivedCar is the derived state of one car. mu serialises its records,
// ticks and saves.
type derivedCar struct {
	mu sync.Mutex
	tr *activity.Tracker
	tm *teslamate.Car // nil without the TeslaMate layout
	// pending are changes not yet published (the publish failed); they
	// go out with the car's next record or tick.
	pending activity.Changes
	// dirty: the tracker changed since it was last saved; tickSavedAt:
	// when Tick last saved it (see valuesSaveInterval).
	dirty       bool
	tickSavedAt time.Time
	saveFailed  bool // the last attempt to save failed (counted in Derived.failing)
	// unfiled are sessions that ended and are not in the history yet,
	// oldest first: appending them failed (counted in Derived.unfiled).
	unfiled       []activity.Session
	historyFailed bool // appending to the history failed and has not succeeded since (logged once)
	// tmNext is the record time from which values alone may update the
	// TeslaMate layout again; tmStale: values changed since it was
	// updated (see teslaMateInterval).
	tmNext  time.Time
	tmStale bool

	status, since, place, placeEvent    string
	driveLast, driveEvent               string
	chargeLast, chargeEvent, snapshotAt string
}

// NewDerived returns the derived state publisher of b, with the trackers
// saved in opts.StateDir restored.
func NewDerived(b *Bridge, opts DerivedOptions) (*Derived, error) {
	if opts.Activity == nil {
		return nil, errors.New("derived state: no activity configuration")
	}
	d := &Derived{b: b, opts: opts, ids: teslamate.NewIDs(opts.TeslaMate), cars: make(map[string]*derivedCar)}
	if opts.StateDir != "" {
		if err := d.restore(); err != nil {
			return nil, err
		}
	}
	b.derived = d
	return d, nil
}

// restore makes the cars saved in the state directory.
func (d *Derived) restore() error {
	opts, b := d.opts, d.b
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("derived state directory: %w", err)
	}
	entries, err := os.ReadDir(opts.StateDir)
	if err != nil {
		return fmt.Errorf("derived state directory: %w", err)
	}
	for _, e := range entries {
		vin, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validVIN(vin) {
			continue
		}
		path := filepath.Join(opts.StateDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("derived state of %s: %w", vin, err)
		}
		c := d.newCar(vin)
		if err := c.tr.Restore(data); err != nil {
			// A snapshot this version cannot read costs the open
			// sessions, not the start.
			b.log.Warn("cannot restore a car's derived state; it starts afresh", "vin", vin, "file", path, "err", err)
			continue
		}
		d.cars[vin] = c
	}
	return nil
}

func (d *Derived) newCar(vin string) *derivedCar {
	n := d.b.cfg.Prefix + "/" + vin + "/"
	c := &derivedCar{
		tr:     activity.NewTracker(d.opts.Activity, vin),
		status: n + topic.StatusLevel, since: n + topic.StatusSinceLevel,
		place: n + topic.PlaceLevel, placeEvent: n + topic.PlaceEventLevel,
		driveLast: n + topic.DriveLastLevel, driveEvent: n + topic.DriveEventLevel,
		chargeLast: n + topic.ChargeLastLevel, chargeEvent: n + topic.ChargeEventLevel,
	}
	if d.opts.StateDir != "" {
		c.snapshotAt = filepath.Join(d.opts.StateDir, vin+".json")
	}
	if d.opts.TeslaMate.Enabled {
		c.tm = teslamate.NewCar(d.ids.Of(vin), d.opts.TeslaMate.Namespace)
		c.tr.KeepEveryValue()
	}
	return c
}

// car returns the state of vin, making it on first sight.
func (d *Derived) car(vin string) (*derivedCar, error) {
	d.mu.RLock()
	c, ok := d.cars[vin]
	d.mu.RUnlock()
	if ok {
		return c, nil
	}
	if !validVIN(vin) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidVIN, vin)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.cars[vin]; ok {
		return c, nil
	}
	c = d.newCar(strings.Clone(vin))
	d.cars[c.tr.VIN()] = c
	return c, nil
}

// Tick applies the rules that need time to pass (grace periods, timeouts,
// stale streams) to every car at now, publishes what changed and saves
// the trackers that changed, each at most once per valuesSaveInterval
// (sooner when the clock was set back).
func (d *Derived) Tick(ctx context.Context, now time.Time) error {
	var errs []error
	var saveErr error // the first car's; the others are counted
	unsaved := 0
	for _, c := range d.snapshotCars() {
		if d.b.rep != nil && !d.b.Streams(c.tr.VIN()) {
			// A replica leaves a car that streams elsewhere to the
			// replica it streams to, whose tracker is the one that
			// hears it (see Config.Replica).
			continue
		}
		c.mu.Lock()
		d.file(c) // sessions that wait for the history
		ch := c.tr.Tick(now)
		if c.tmStale {
			ch |= activity.ChangedValues // the layout's values that waited for the interval
			c.tmNext = time.Time{}
		}
		if err := d.publish(ctx, c, ch); err != nil {
			errs = append(errs, err)
		}
		if c.saveDue(now) {
			if err := d.save(c); err != nil {
				unsaved++
				saveErr = cmp.Or(saveErr, err)
			} else {
				c.tickSavedAt = now
			}
		}
		c.mu.Unlock()
	}
	switch {
	case unsaved == 1:
		errs = append(errs, saveErr)
	case unsaved > 1:
		errs = append(errs, fmt.Errorf("%d cars' derived state not saved (tried again at the next tick); the first: %w", unsaved, saveErr))
	}
	return errors.Join(errs...)
}

// saveDue reports whether Tick at now saves c: it changed, and Tick last
// saved it valuesSaveInterval ago, or never, or after now (the clock was
// set back). c.mu is held.
func (c *derivedCar) saveDue(now time.Time) bool {
	last := c.tickSavedAt
	return c.dirty && (last.IsZero() || now.Sub(last) >= valuesSaveInterval || now.Before(last))
}

// valuesSaveInterval is how often a car whose values alone changed has
// its tracker saved by Tick. A change of status, place or session is
// saved at once (see finish), and every change on shutdown (Save); values
// lost in a crash come again with the car's next records. Saving every
// streaming car's values at each tick cost two fsyncs per car every ten
// seconds: 40 a second with 200 cars, and a flash card's wear at home.
const valuesSaveInterval = time.Minute

// Republish publishes every car's retained derived topics again (after a
// restart, or when the broker lost its retained messages), and the
// TeslaMate layout in full. Replicas republish nothing.
func (d *Derived) Republish(ctx context.Context) error {
	if d.b.rep != nil {
		// A replica's saved state may be older than what the replica a
		// car streams to now published (see Config.Replica).
		return nil
	}
	var errs []error
	for _, c := range d.snapshotCars() {
		c.mu.Lock()
		if c.tm != nil {
			c.tm.Forget()
		}
		if st, _ := c.tr.Status(); st != activity.StatusUnknown {
			if err := d.publishAll(ctx, c); err != nil {
				errs = append(errs, err)
			}
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// SetPlaces replaces the places (such as after the owner added the car's
// position as a place on the setup page): every car's place is looked up
// again, and what changed is published. The other settings stay.
func (d *Derived) SetPlaces(ctx context.Context, places []activity.Place) error {
	cfg := *d.opts.Activity
	cfg.Places = append([]activity.Place(nil), places...)
	if err := cfg.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	d.opts.Activity = &cfg
	d.mu.Unlock()
	var errs []error
	for _, c := range d.snapshotCars() {
		c.mu.Lock()
		if err := d.publish(ctx, c, c.tr.Reconfigure(&cfg)); err != nil {
			errs = append(errs, err)
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Save writes every car's tracker that changed to the state directory,
// and appends the sessions that wait for the history (see Unfiled). Call
// it on shutdown, after the last record.
func (d *Derived) Save() error {
	var errs []error
	for _, c := range d.snapshotCars() {
		c.mu.Lock()
		errs = append(errs, d.save(c))
		if d.file(c); len(c.unfiled) > 0 {
			errs = append(errs, fmt.Errorf("%d sessions of %s could not be kept in the history", len(c.unfiled), c.tr.VIN()))
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Tracker calls f with vin's tracker under the car's lock, and reports
// whether the car is known. f must not keep the tracker.
func (d *Derived) Tracker(vin string, f func(*activity.Tracker)) bool {
	d.mu.RLock()
	c, ok := d.cars[vin]
	d.mu.RUnlock()
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c.tr)
	return true
}

func (d *Derived) snapshotCars() []*derivedCar {
	d.mu.RLock()
	defer d.mu.RUnlock()
	vins := make([]string, 0, len(d.cars))
	for vin := range d.cars {
		vins = append(vins, vin)
	}
	slices.Sort(vins)
	cars := make([]*derivedCar, len(vins))
	for i, vin := range vins {
		cars[i] = d.cars[vin]
	}
	return cars
}

// teslaMateInterval is the shortest time (of the car's clock) between two
// updates of a car's TeslaMate layout made by values alone: it formats
// every topic, which costs more than everything else a record does, and
// TeslaMate itself updates no faster. A change of status or place updates
// it at once; values that changed since follow with the car's next record
// after the interval, or the next Tick.
const teslaMateInterval = time.Second

// transitions are the changes that are saved at once: a process killed
// right after them must not lose them.
const transitions = activity.ChangedStatus | activity.ChangedPlace |
	activity.DriveStarted | activity.DriveEnded | activity.ChargeStarted | activity.ChargeEnded

// publish publishes the messages of ch (plus what is pending) in a batch
// of their own; see prepare and finish.
func (d *Derived) publish(ctx context.Context, c *derivedCar, ch activity.Changes) error {
	bt := getBatch()
	defer putBatch(bt)
	ch, err := d.prepare(c, bt, ch)
	if err == nil && len(bt.msgs) > 0 {
		if err = d.b.pub.Publish(ctx, bt.seal()); err != nil {
			err = fmt.Errorf("publish the derived state of %s: %w", c.tr.VIN(), err)
		}
	}
	d.finish(c, ch, err)
	return err
}

// prepare takes what a call to c's tracker changed, appends the sessions
// that ended to the history and the messages of ch and of what is
// pending to bt. It returns the changes the messages carry, to be handed
// to finish with the publish's outcome. c.mu is held.
func (d *Derived) prepare(c *derivedCar, bt *batch, ch activity.Changes) (activity.Changes, error) {
	if ch != 0 {
		c.dirty = true
	}
	ch |= c.pending
	if d.opts.History != nil && ch&(activity.DriveEnded|activity.ChargeEnded) != 0 {
		for _, kind := range [...]activity.Kind{activity.KindDrive, activity.KindCharge} {
			if ch&ended(kind) == 0 {
				continue
			}
			if s, ok := lastSession(c.tr, kind); ok {
				d.queueSession(c, s)
			}
		}
	}
	if !c.historyFailed { // once it failed, Tick tries again (every few seconds, not every record)
		d.file(c)
	}
	if ch&transitions == 0 {
		if ch == 0 || c.tm == nil {
			return 0, nil // nothing, or values only the TeslaMate layout shows
		}
		if at := c.tr.LastSeen(); !c.tmNext.IsZero() && at.Before(c.tmNext) {
			c.tmStale = true // the layout follows after teslaMateInterval
			return 0, nil
		}
	}
	d.build(c, bt, ch)
	return ch, nil
}

// maxUnfiled bounds the sessions of one car that wait for the history: a
// car ends a few a day, so this is days of a disk that cannot be written.
const maxUnfiled = 100

// queueSession adds s to the sessions of c that wait for the history,
// unless it is there already (changes published again after a failed
// publish end the same session again). c.mu is held.
func (d *Derived) queueSession(c *derivedCar, s activity.Session) {
	for _, u := range c.unfiled {
		if u.Kind == s.Kind && u.End.Equal(s.End) {
			return
		}
	}
	if len(c.unfiled) == maxUnfiled {
		d.b.log.Warn("the history cannot be written and too many sessions wait for it: the oldest is dropped",
			"vin", c.tr.VIN(), "kind", c.unfiled[0].Kind, "end", c.unfiled[0].End)
		c.unfiled = slices.Delete(c.unfiled, 0, 1)
		d.unfiled.Add(-1)
	}
	c.unfiled = append(c.unfiled, s)
	d.unfiled.Add(1)
}

// file appends the sessions of c that wait for the history, oldest first,
// and stops at the first that fails: it waits, with those after it, for
// the next Tick. The first failure of a car, and the history's recovery,
// are logged. c.mu is held.
func (d *Derived) file(c *derivedCar) {
	if len(c.unfiled) == 0 {
		return
	}
	for len(c.unfiled) > 0 {
		s := c.unfiled[0]
		if err := d.opts.History.Append(s); err != nil {
			if !c.historyFailed {
				c.historyFailed = true
				d.b.log.Warn("cannot keep a session in the history; it waits in memory and is tried again at every tick",
					"vin", c.tr.VIN(), "kind", s.Kind, "end", s.End, "err", err)
			}
			return
		}
		c.unfiled = slices.Delete(c.unfiled, 0, 1)
		d.unfiled.Add(-1)
	}
	c.unfiled = nil
	if c.historyFailed {
		c.historyFailed = false
		d.b.log.Info("the history is written again: every session that waited is in it", "vin", c.tr.VIN())
	}
}

// finish ends what prepare began: when the messages could not be
// published, their changes stay pending and
// go out with the car's next record or tick; once they are out, a change
// of status, place or session is saved at once.
func (d *Derived) finish(c *derivedCar, ch activity.Changes, err error) {
	if err != nil {
		c.pending = ch
		return
	}
	c.pending = 0
	if ch&transitions != 0 {
		if err := d.save(c); err != nil {
			d.b.log.Warn("cannot save a car's derived state", "vin", c.tr.VIN(), "err", err)
		}
	}
}

// observe is Bridge.Handle's part, under v.mu: it feeds rec to v's
// tracker and appends the derived messages to the record's batch, so that
// they are published with the signals, in the same call, before the frame
// is acknowledged. It returns the car with c.mu held; Bridge.Handle calls
// finish and unlocks it after the publish.
func (d *Derived) observe(v *vehicle, bt *batch, rec *telemetry.Record) (*derivedCar, activity.Changes, error) {
	c := v.derived
	if c == nil {
		var err error
		if c, err = d.car(v.vin); err != nil {
			return nil, 0, err
		}
		v.derived = c
	}
	c.mu.Lock()
	ch, err := d.prepare(c, bt, c.tr.Observe(rec))
	return c, ch, err
}

// publishAll publishes every retained derived topic of c.
func (d *Derived) publishAll(ctx context.Context, c *derivedCar) error {
	bt := getBatch()
	defer putBatch(bt)
	d.retained(c, bt, activity.ChangedStatus|activity.ChangedPlace|activity.DriveEnded|activity.ChargeEnded)
	d.teslaMate(c, bt)
	if len(bt.msgs) == 0 {
		return nil
	}
	if err := d.b.pub.Publish(ctx, bt.seal()); err != nil {
		return fmt.Errorf("publish the derived state of %s: %w", c.tr.VIN(), err)
	}
	return nil
}

// build appends the messages of ch: the retained topics that changed,
// then the events, then the TeslaMate topics that changed.
func (d *Derived) build(c *derivedCar, bt *batch, ch activity.Changes) {
	if d.b.native {
		d.retained(c, bt, ch)
		d.events(c, bt, ch)
	}
	if c.tm != nil && ch&(activity.ChangedValues|activity.ChangedStatus|activity.ChangedPlace) != 0 {
		d.teslaMate(c, bt)
		c.tmNext, c.tmStale = c.tr.LastSeen().Add(teslaMateInterval), false
	}
}

func (d *Derived) retained(c *derivedCar, bt *batch, ch activity.Changes) {
	qos, retain := d.b.cfg.QoS, d.b.cfg.Retain
	if ch&activity.ChangedStatus != 0 {
		st, since := c.tr.Status()
		if st != activity.StatusUnknown {
			bt.begin(c.status, qos, retain)
			bt.buf = append(bt.buf, st.String()...)
			bt.begin(c.since, qos, retain)
			bt.buf = since.UTC().AppendFormat(bt.buf, time.RFC3339)
		}
	}
	if ch&activity.ChangedPlace != 0 {
		bt.begin(c.place, qos, retain)
		bt.buf = append(bt.buf, c.tr.Place()...)
	}
	if ch&activity.DriveEnded != 0 {
		if s, ok := c.tr.LastDrive(); ok {
			bt.begin(c.driveLast, qos, retain)
			bt.buf = appendSession(bt.buf, "", &s)
		}
	}
	if ch&activity.ChargeEnded != 0 {
		if s, ok := c.tr.LastCharge(); ok {
			bt.begin(c.chargeLast, qos, retain)
			bt.buf = appendSession(bt.buf, "", &s)
		}
	}
}

// events appends the events of ch, not retained: an event is news once.
func (d *Derived) events(c *derivedCar, bt *batch, ch activity.Changes) {
	if ch&(transitions&^activity.ChangedStatus) == 0 {
		return
	}
	qos := d.b.cfg.QoS
	at := c.tr.LastSeen()
	if ch&activity.ChangedPlace != 0 {
		if prev := c.tr.PreviousPlace(); prev != "" {
			bt.begin(c.placeEvent, qos, false)
			bt.buf = appendPlaceEvent(bt.buf, "leave", prev, at)
		}
		if cur := c.tr.Place(); cur != "" {
			bt.begin(c.placeEvent, qos, false)
			bt.buf = appendPlaceEvent(bt.buf, "enter", cur, at)
		}
	}
	for _, kind := range [...]activity.Kind{activity.KindDrive, activity.KindCharge} {
		topic := c.driveEvent
		if kind == activity.KindCharge {
			topic = c.chargeEvent
		}
		// A session that ended and another that started in one record:
		// the end comes first.
		if ch&ended(kind) != 0 {
			if s, ok := lastSession(c.tr, kind); ok {
				bt.begin(topic, qos, false)
				bt.buf = appendSession(bt.buf, "ended", &s)
			}
		}
		if ch&started(kind) != 0 {
			bt.begin(topic, qos, false)
			bt.buf = append(bt.buf, `{"event_type":"started","place":`...)
			bt.buf = telemetry.AppendJSONString(bt.buf, c.tr.Place())
			bt.buf = append(bt.buf, `,"at":`...)
			bt.buf = telemetry.AppendJSONTime(bt.buf, at)
			bt.buf = append(bt.buf, '}')
		}
	}
}

func started(k activity.Kind) activity.Changes {
	if k == activity.KindDrive {
		return activity.DriveStarted
	}
	return activity.ChargeStarted
}

func ended(k activity.Kind) activity.Changes {
	if k == activity.KindDrive {
		return activity.DriveEnded
	}
	return activity.ChargeEnded
}

func lastSession(tr *activity.Tracker, k activity.Kind) (activity.Session, bool) {
	if k == activity.KindDrive {
		return tr.LastDrive()
	}
	return tr.LastCharge()
}

func (d *Derived) teslaMate(c *derivedCar, bt *batch) {
	if c.tm == nil {
		return
	}
	for _, m := range c.tm.Changed(teslamate.ViewOf(c.tr)) {
		bt.begin(m.Topic, d.b.cfg.QoS, m.Retain)
		bt.buf = append(bt.buf, m.Payload...)
	}
}

// appendPlaceEvent appends {"event_type":…,"place":…,"at":…}.
func appendPlaceEvent(dst []byte, event, place string, at time.Time) []byte {
	dst = append(dst, `{"event_type":"`...)
	dst = append(dst, event...)
	dst = append(dst, `","place":`...)
	dst = telemetry.AppendJSONString(dst, place)
	dst = append(dst, `,"at":`...)
	dst = telemetry.AppendJSONTime(dst, at)
	return append(dst, '}')
}

// appendSession appends s as JSON, with "event_type" first when event is
// set (Home Assistant's event entities read it).
func appendSession(dst []byte, event string, s *activity.Session) []byte {
	raw, err := json.Marshal(s)
	if err != nil || len(raw) < 2 {
		return append(dst, "{}"...)
	}
	if event == "" {
		return append(dst, raw...)
	}
	dst = append(dst, `{"event_type":"`...)
	dst = append(dst, event...)
	dst = append(dst, `",`...)
	return append(dst, raw[1:]...)
}

// save writes c's tracker to its file when it changed, atomically.
func (d *Derived) save(c *derivedCar) error {
	if c.snapshotAt == "" || !c.dirty {
		return nil
	}
	data, err := c.tr.Snapshot()
	if err != nil {
		return fmt.Errorf("save the derived state of %s: %w", c.tr.VIN(), err)
	}
	if err := atomicfile.Write(c.snapshotAt, data, 0o600); err != nil {
		if !c.saveFailed {
			c.saveFailed = true
			d.failing.Add(1)
		}
		return fmt.Errorf("save the derived state of %s: %w", c.tr.VIN(), err)
	}
	c.dirty = false
	if c.saveFailed {
		c.saveFailed = false
		d.failing.Add(-1)
	}
	return nil
}

// Unfiled returns how many sessions that ended wait for the history,
// which could not be written (see Derived): they are in memory only.
func (d *Derived) Unfiled() int { return int(d.unfiled.Load()) }

// SaveFailing returns how many cars' derived state could not be saved at
// the last attempt (a full or read-only disk): they are saved again at
// the next tick, and until then a restart would lose their sessions in
// progress.
func (d *Derived) SaveFailing() int { return int(d.failing.Load()) }
