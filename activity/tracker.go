package activity

import (
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Changes tells what a call to a Tracker changed, so that the caller
// publishes only that. The zero value means nothing changed.
type Changes uint16

// Changes a Tracker reports.
const (
	// ChangedStatus: Status() has a new status and since.
	ChangedStatus Changes = 1 << iota
	// ChangedPlace: the car entered Place() or left PreviousPlace() (or both).
	ChangedPlace
	// DriveStarted and DriveEnded: a drive began; LastDrive() holds the
	// summary of the one that ended.
	DriveStarted
	DriveEnded
	// ChargeStarted and ChargeEnded: likewise for charging sessions
	// (LastCharge()).
	ChargeStarted
	ChargeEnded
	// ChangedValues: a kept signal (see Kept) has a new value.
	ChangedValues
)

// Has reports whether c holds every change of w.
func (c Changes) Has(w Changes) bool { return c&w == w }

// Shift states and detailed charge states the rules read, by protocol
// number (spec/value_enums.tsv).
const (
	gearP = 2
	gearR = 3
	gearN = 4
	gearD = 5

	chargeDisconnected = 1
	chargeNoPower      = 2
	chargeStarting     = 3
	chargeCharging     = 4
	chargeComplete     = 5
	chargeStopped      = 6
)

// Tracker derives what one car is doing from its records: status, place,
// drives and charging sessions. It is not safe for concurrent use: the
// caller serialises calls per car, as the bridge does with a car's
// records. Observe and Tick allocate nothing unless a session ends.
type Tracker struct {
	cfg    *Config
	vin    string
	values Values
	st     state
	// place is the index of st.Place in cfg.Places, -1 for none.
	place int
	// keep is how many of viewFields the tracker keeps: the rules'
	// (ruleFields), or all of them (KeepEveryValue).
	keep int
	// from is where the car was before the record at hand.
	from from
}

// from is the place and location before the record at hand, when the
// record changed the location (set).
type from struct {
	set   bool
	place string
	loc   telemetry.Value
}

// state is what a Tracker must remember across a restart (see Snapshot).
type state struct {
	Status Status    `json:"status"`
	Since  time.Time `json:"since,omitzero"`
	// Connected reports whether the car's stream is open.
	Connected bool `json:"connected"`
	// LastRecordAt is the time of the latest data record (the car's clock).
	LastRecordAt time.Time `json:"last_record_at,omitzero"`
	// LastSeen is the latest time anything was heard from the car.
	LastSeen      time.Time    `json:"last_seen,omitzero"`
	Place         string       `json:"place"`
	PreviousPlace string       `json:"previous_place"`
	Drive         *openSession `json:"drive,omitempty"`
	Charge        *openSession `json:"charge,omitempty"`
	LastDrive     *Session     `json:"last_drive,omitempty"`
	LastCharge    *Session     `json:"last_charge,omitempty"`
}

// NewTracker returns the tracker of the car vin. cfg must have passed
// Validate and must not change while trackers use it.
func NewTracker(cfg *Config, vin string) *Tracker {
	return &Tracker{cfg: cfg, vin: vin, place: -1, keep: ruleFields}
}

// Reconfigure makes the tracker use cfg (validated, not changed while
// trackers use it) from now on, such as after the owner added a place.
// The place the car is at is looked up again from its latest location;
// the returned changes say whether it changed.
func (t *Tracker) Reconfigure(cfg *Config) Changes {
	t.cfg = cfg
	t.place = -1
	for i := range cfg.Places {
		if cfg.Places[i].Name == t.st.Place {
			t.place = i
		}
	}
	if t.place < 0 && t.st.Place != "" {
		t.st.PreviousPlace, t.st.Place = t.st.Place, ""
		return ChangedPlace | t.locate()
	}
	return t.locate()
}

// KeepEveryValue makes the tracker keep the latest value of every signal
// Kept lists, for a layout that shows them (package teslamate). By
// default it keeps only the signals its rules read, which costs less per
// record.
func (t *Tracker) KeepEveryValue() { t.keep = len(viewFields) }

// VIN returns the car's VIN.
func (t *Tracker) VIN() string { return t.vin }

// Status returns the car's status and since when it holds.
func (t *Tracker) Status() (Status, time.Time) { return t.st.Status, t.st.Since }

// LastSeen returns when the car was last heard from (its clock): the
// time of the record that made the latest change.
func (t *Tracker) LastSeen() time.Time { return t.st.LastSeen }

// Place returns the name of the place the car is at, or "".
func (t *Tracker) Place() string { return t.st.Place }

// PreviousPlace returns the place the car left at the latest
// ChangedPlace, or "" when it entered a place from nowhere.
func (t *Tracker) PreviousPlace() string { return t.st.PreviousPlace }

// LastDrive returns the summary of the latest drive that ended.
func (t *Tracker) LastDrive() (Session, bool) { return deref(t.st.LastDrive) }

// LastCharge returns the summary of the latest charging session that ended.
func (t *Tracker) LastCharge() (Session, bool) { return deref(t.st.LastCharge) }

func deref(s *Session) (Session, bool) {
	if s == nil {
		return Session{}, false
	}
	return *s, true
}

// Driving and Charging report whether a drive or a charging session is
// open (a drive stays open during a short stop, see Config.DriveGrace).
func (t *Tracker) Driving() bool  { return t.st.Drive != nil }
func (t *Tracker) Charging() bool { return t.st.Charge != nil }

// Values returns the latest values of the kept signals (see
// KeepEveryValue). The caller must not keep the pointer across calls that
// change the tracker.
func (t *Tracker) Values() *Values { return &t.values }

// Observe takes one record of the car and returns what changed. Records
// older than the latest data record (a resend of what was already seen)
// change nothing; a record sent twice changes nothing the second time.
func (t *Tracker) Observe(rec *telemetry.Record) Changes {
	switch rec.Topic {
	case telemetry.TopicV:
		return t.data(recordTime(rec), rec.Data)
	case telemetry.TopicConnectivity:
		at := rec.Connectivity.CreatedAt
		if at.IsZero() {
			at = recordTime(rec)
		}
		switch rec.Connectivity.Status {
		case telemetry.StatusConnected:
			return t.Connected(at)
		case telemetry.StatusDisconnected:
			return t.Disconnected(at)
		}
	}
	return 0
}

// recordTime is when the car made rec, or when it arrived.
func recordTime(rec *telemetry.Record) time.Time {
	if !rec.CreatedAt.IsZero() {
		return rec.CreatedAt
	}
	return rec.ReceivedAt
}

// Connected notes that the car opened its stream at at.
func (t *Tracker) Connected(at time.Time) Changes {
	t.st.Connected = true
	t.seen(at)
	return t.evaluate(at)
}

// Disconnected notes that the car's stream closed at at. A drive waiting
// in P for its grace period ends now: a car that closes its stream has
// parked.
func (t *Tracker) Disconnected(at time.Time) Changes {
	t.st.Connected = false
	t.seen(at)
	var ch Changes
	if d := t.st.Drive; d != nil && !d.PausedAt.IsZero() {
		ch |= t.endDrive(d.PausedAt, EndParked)
	}
	return ch | t.evaluate(at)
}

// Tick applies the rules that depend on time passing without records:
// grace periods, the drive timeout, stale streams and the update timeout.
// Call it periodically (every few seconds to a minute) with the current
// time.
func (t *Tracker) Tick(now time.Time) Changes {
	return t.expire(now) | t.evaluate(now)
}

func (t *Tracker) seen(at time.Time) {
	if at.After(t.st.LastSeen) {
		t.st.LastSeen = at
	}
}

// data applies a data record made at at.
func (t *Tracker) data(at time.Time, data []telemetry.Datum) Changes {
	if at.Before(t.st.LastRecordAt) {
		return 0
	}
	var ch Changes
	if t.pending() || at.Sub(t.st.LastRecordAt) >= t.cfg.DriveTimeout {
		ch = t.expire(at) // a gap may have ended a drive before this record
	}
	t.st.LastRecordAt = at
	// A drive that starts with this record starts where the car was
	// before it: a car that streams its location every few seconds is
	// already down the road in the record whose gear says D. t.from
	// holds that place when the record moves the car.
	t.from.set = false
	t.seen(at)
	touched := false // a rule's input changed
	if !t.st.Connected {
		t.st.Connected = true // data proves the stream is up, even without its connectivity record
		touched = true
	}
	located := false
	invalid := telemetry.InvalidValue() // kept for a float that is NaN or infinite
	for i := range data {
		d := &data[i]
		si, ok := slot(d.Field)
		if !ok || si >= t.keep {
			continue
		}
		v := &d.Value
		switch v.Kind() {
		case telemetry.KindNone:
			continue
		case telemetry.KindFloatValue:
			if f := v.Float(); f-f != 0 { // NaN or infinite
				v = &invalid
			}
		}
		kept := &t.values.v[si]
		if kept.Equal(*v) {
			continue
		}
		if needsDetach(v) {
			w := v.Detach()
			v = &w
		}
		if si == vLocation && !t.from.set {
			t.from = from{set: true, place: t.st.Place, loc: *kept}
		}
		*kept = *v
		ch |= ChangedValues
		if si == vSpeed || si >= vACEnergyIn && si <= vFastCharger {
			t.accumulate(at, si)
		}
		switch si {
		case vLocation:
			located = true
		case vGear, vChargeState, vInstallPercent:
			touched = true
		case vSpeed:
			touched = touched || t.values.enum(vGear) < 0 // the speed stands in for the gear
		}
	}
	if located {
		ch |= t.locate()
	}
	if !touched && !t.pending() && ch&(DriveEnded|ChargeEnded) == 0 {
		// No rule's input changed, no grace period runs and no session
		// just timed out: no session can open or end. Only the open
		// sessions' latest record moves.
		if d := t.st.Drive; d != nil {
			d.LastAt = at
		}
		if c := t.st.Charge; c != nil {
			c.LastAt = at
		}
		switch t.st.Status {
		case StatusDriving, StatusCharging, StatusParked, StatusUpdating:
			// A record from a car that streams keeps these: only a
			// rule's input, or time without records, changes them.
			return ch
		}
		return ch | t.evaluate(at)
	}
	return ch | t.transitions(at) | t.evaluate(at)
}

// pending reports whether a grace period runs (a drive waiting in P, a
// charge stopped), which a record may end even when it changes nothing.
func (t *Tracker) pending() bool {
	return t.st.Drive != nil && !t.st.Drive.PausedAt.IsZero() ||
		t.st.Charge != nil && !t.st.Charge.PausedAt.IsZero()
}

// accumulate folds the new value of slot si into the open sessions.
func (t *Tracker) accumulate(at time.Time, si int) {
	if d := t.st.Drive; d != nil && si == vSpeed {
		if s, ok := t.values.num(vSpeed); ok {
			d.MaxSpeedMph = max(d.MaxSpeedMph, s)
		}
	}
	c := t.st.Charge
	if c == nil {
		return
	}
	switch si {
	case vACEnergyIn, vDCEnergyIn:
		v, ok := t.values.num(si)
		if !ok {
			return
		}
		price, priced := t.cfg.price(t.place, at)
		if si == vACEnergyIn {
			c.AC.add(v, price, priced)
		} else {
			c.DC.add(v, price, priced)
		}
	case vACPower, vDCPower:
		if p, ok := t.values.num(si); ok {
			c.MaxPowerKW = max(c.MaxPowerKW, p)
			if si == vDCPower && p > 0 {
				c.Fast = true
			}
		}
	case vFastCharger:
		if t.values.v[vFastCharger].Bool() {
			c.Fast = true
		}
	}
}

// locate updates the place from the latest location.
func (t *Tracker) locate() Changes {
	v := t.values.v[vLocation]
	if v.Kind() != telemetry.KindLocationValue {
		return 0
	}
	lat, lon := v.Location()
	i := matchPlace(t.cfg.Places, t.place, lat, lon)
	if i == t.place {
		return 0
	}
	t.st.PreviousPlace = t.st.Place
	t.place = i
	t.st.Place = ""
	if i >= 0 {
		t.st.Place = t.cfg.Places[i].Name
	}
	return ChangedPlace
}

// moving reports whether the car is in a driving gear; a car that does
// not stream its gear counts as moving when its speed is above zero.
func (t *Tracker) moving() bool {
	switch t.values.enum(vGear) {
	case gearR, gearN, gearD:
		return true
	case gearP:
		return false
	}
	s, ok := t.values.num(vSpeed)
	return ok && s > 0
}

func (t *Tracker) chargeState() int32 { return t.values.enum(vChargeState) }

// charging reports whether the car says it is charging now.
func (t *Tracker) charging() bool {
	cs := t.chargeState()
	return cs == chargeStarting || cs == chargeCharging
}

// transitions opens and ends sessions by the latest values at at.
func (t *Tracker) transitions(at time.Time) Changes {
	var ch Changes
	if d := t.st.Drive; d == nil {
		if t.moving() {
			d := t.open(KindDrive, at)
			if l := t.from.loc; t.from.set && l.Kind() == telemetry.KindLocationValue {
				lat, lon := l.Location()
				d.StartPlace, d.StartLoc = t.from.place, &Location{Latitude: lat, Longitude: lon}
			}
			t.st.Drive = d
			ch |= DriveStarted
		}
	} else {
		d.LastAt = at
		switch {
		case t.moving():
			d.PausedAt = time.Time{}
		case t.values.enum(vGear) == gearP && d.PausedAt.IsZero():
			d.PausedAt = at
		}
		if !d.PausedAt.IsZero() && at.Sub(d.PausedAt) >= t.cfg.DriveGrace {
			ch |= t.endDrive(d.PausedAt, EndParked)
		}
	}
	if c := t.st.Charge; c == nil {
		if t.charging() {
			t.st.Charge = t.open(KindCharge, at)
			ch |= ChargeStarted
		}
	} else {
		c.LastAt = at
		switch t.chargeState() {
		case chargeStarting, chargeCharging:
			c.PausedAt = time.Time{}
		case chargeComplete:
			ch |= t.endCharge(at, EndComplete)
		case chargeDisconnected:
			ch |= t.endCharge(at, EndUnplugged)
		case chargeStopped, chargeNoPower:
			if c.PausedAt.IsZero() {
				c.PausedAt = at
			}
			if at.Sub(c.PausedAt) >= t.cfg.ChargeGrace {
				ch |= t.endCharge(c.PausedAt, EndStopped)
			}
		}
	}
	return ch
}

// expire ends sessions whose grace period or timeout passed by now.
func (t *Tracker) expire(now time.Time) Changes {
	var ch Changes
	if d := t.st.Drive; d != nil {
		switch {
		case !d.PausedAt.IsZero() && now.Sub(d.PausedAt) >= t.cfg.DriveGrace:
			ch |= t.endDrive(d.PausedAt, EndParked)
		case now.Sub(d.LastAt) >= t.cfg.DriveTimeout:
			ch |= t.endDrive(d.LastAt, EndTimeout)
		}
	}
	if c := t.st.Charge; c != nil && !c.PausedAt.IsZero() && now.Sub(c.PausedAt) >= t.cfg.ChargeGrace {
		ch |= t.endCharge(c.PausedAt, EndStopped)
	}
	return ch
}

// open starts a session at at with the latest values as its start.
func (t *Tracker) open(kind Kind, at time.Time) *openSession {
	o := &openSession{Kind: kind, Start: at, LastAt: at, StartPlace: t.st.Place, StartLoc: t.location()}
	o.OdoStart = t.reading(vOdometer)
	o.SocStart = t.soc()
	o.BattStart = t.reading(vEnergyRemaining)
	if kind == KindCharge {
		// The counters' values now are the baseline; they reset when the
		// session begins, which add reads as counting from zero.
		if v, ok := t.values.num(vACEnergyIn); ok {
			o.AC.Prev, o.AC.HasPrev = v, true
		}
		if v, ok := t.values.num(vDCEnergyIn); ok {
			o.DC.Prev, o.DC.HasPrev = v, true
		}
		if p, ok := t.values.num(vDCPower); ok && p > 0 {
			o.Fast = true
		}
		o.Fast = o.Fast || t.values.v[vFastCharger].Bool()
		for _, si := range [...]int{vACPower, vDCPower} {
			if p, ok := t.values.num(si); ok {
				o.MaxPowerKW = max(o.MaxPowerKW, p)
			}
		}
	} else if s, ok := t.values.num(vSpeed); ok {
		o.MaxSpeedMph = s
	}
	return o
}

func (t *Tracker) reading(si int) reading {
	v, ok := t.values.num(si)
	return reading{V: v, OK: ok}
}

// soc is the state of charge shown to the driver, else the usable one.
func (t *Tracker) soc() reading {
	if r := t.reading(vBatteryLevel); r.OK {
		return r
	}
	return t.reading(vSoc)
}

func (t *Tracker) location() *Location {
	v := t.values.v[vLocation]
	if v.Kind() != telemetry.KindLocationValue {
		return nil
	}
	lat, lon := v.Location()
	return &Location{Latitude: lat, Longitude: lon}
}

func (t *Tracker) close(o *openSession, end time.Time, reason string) *Session {
	o.OdoEnd = t.reading(vOdometer)
	o.SocEnd = t.soc()
	o.BattEnd = t.reading(vEnergyRemaining)
	s := o.summary(t.vin, end, t.st.Place, t.location(), reason, t.cfg.Currency)
	return &s
}

func (t *Tracker) endDrive(end time.Time, reason string) Changes {
	t.st.LastDrive = t.close(t.st.Drive, end, reason)
	t.st.Drive = nil
	return DriveEnded
}

func (t *Tracker) endCharge(end time.Time, reason string) Changes {
	t.st.LastCharge = t.close(t.st.Charge, end, reason)
	t.st.Charge = nil
	return ChargeEnded
}

// status applies the status rules at now.
func (t *Tracker) status(now time.Time) Status {
	silent := now.Sub(t.st.LastSeen)
	if p, ok := t.values.num(vInstallPercent); ok && p > 0 && p < 100 {
		if silent < t.cfg.UpdateTimeout {
			return StatusUpdating
		}
		return StatusOffline
	}
	streaming := t.st.Connected && (t.cfg.StaleAfter <= 0 || silent < t.cfg.StaleAfter)
	active := (t.st.Drive != nil && t.st.Drive.PausedAt.IsZero()) || t.charging()
	switch {
	case !streaming && active:
		return StatusOffline // a car does not sleep while driving or charging
	case !streaming:
		return StatusAsleep
	case t.st.Drive != nil:
		return StatusDriving
	case t.charging():
		return StatusCharging
	}
	return StatusParked
}

func (t *Tracker) evaluate(at time.Time) Changes {
	s := t.status(at)
	if s == t.st.Status {
		return 0
	}
	t.st.Status, t.st.Since = s, at
	return ChangedStatus
}
