package simulate

import (
	"strconv"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Remote carries what a playing car is told from outside, such as the
// vehicle commands the fake Fleet API applies (fleetapitest's
// OnCarChange), so that its stream follows: start charging and the car
// charges; set the charge limit and ChargeLimitSoc changes. Changes are
// applied at the car's next step; a sleeping car wakes up for them. Its
// methods are safe for concurrent use.
type Remote struct {
	mu      sync.Mutex
	pending RemoteChange
	wake    chan struct{}
	watch   func(Controls)
	told    *Controls // last given to watch
}

// Controls is the state of the controls a command changes, as the car's
// stream last said it: the simulated car's own state, which whoever
// commands it (the fake Fleet API's car) follows through Watch.
type Controls struct {
	Locked         bool    // Locked
	Climate        bool    // HvacPower on
	DriverTemp     float64 // HvacLeftTemperatureRequest, °C
	Sentry         bool    // SentryMode armed (or anything but off)
	Charging       bool    // DetailedChargeState Starting or Charging
	ChargeLimit    int     // ChargeLimitSoc, percent
	ChargingAmps   int     // the AC current requested (ChargeCurrentRequest)
	ChargePortOpen bool    // ChargePortDoorOpen
}

// RemoteChange is one change; nil fields stay as they are.
type RemoteChange struct {
	// Charging starts a charging session at home (AC) or stops the one
	// in progress.
	Charging *bool
	// ChargeLimit is the charge limit in percent (ChargeLimitSoc).
	ChargeLimit *int
	// ChargingAmps is the current requested from the wall connector
	// (ChargeCurrentRequest), which sets the AC charging power.
	ChargingAmps *int
	// Climate turns the HVAC on or off (HvacPower); DriverTemp is the
	// requested temperature in °C (HvacLeftTemperatureRequest).
	Climate    *bool
	DriverTemp *float64
	// Locked and Sentry: Locked, SentryMode.
	Locked, Sentry *bool
	// ChargePortOpen opens or closes the charge port door
	// (ChargePortDoorOpen).
	ChargePortOpen *bool
}

// NewRemote returns a Remote with nothing pending.
func NewRemote() *Remote { return &Remote{wake: make(chan struct{}, 1)} }

// Apply queues a change for the car's next step, merged with what is
// pending.
func (r *Remote) Apply(c RemoteChange) {
	r.mu.Lock()
	p := &r.pending
	p.Charging = pick(c.Charging, p.Charging)
	p.ChargeLimit = pick(c.ChargeLimit, p.ChargeLimit)
	p.ChargingAmps = pick(c.ChargingAmps, p.ChargingAmps)
	p.Climate = pick(c.Climate, p.Climate)
	p.DriverTemp = pick(c.DriverTemp, p.DriverTemp)
	p.Locked = pick(c.Locked, p.Locked)
	p.Sentry = pick(c.Sentry, p.Sentry)
	p.ChargePortOpen = pick(c.ChargePortOpen, p.ChargePortOpen)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func pick[T any](newer, older *T) *T {
	if newer != nil {
		return newer
	}
	return older
}

// Watch makes fn receive the car's controls after each step in which
// they changed, and once after its first step: the car is the one source
// of truth, and a commanded fake follows it. What is pending is shown as
// already done, so that a command applied a moment before a step is not
// undone by that step's report. fn runs on the car's goroutine and must
// not block; a second Watch replaces the first.
func (r *Remote) Watch(fn func(Controls)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watch, r.told = fn, nil
}

// report gives the watcher the car's controls c, with what is pending
// over them, if they changed since the last report.
func (r *Remote) report(c Controls) {
	if r == nil {
		return
	}
	r.mu.Lock()
	p := r.pending
	set(&c.Locked, p.Locked)
	set(&c.Climate, p.Climate)
	set(&c.DriverTemp, p.DriverTemp)
	set(&c.Sentry, p.Sentry)
	set(&c.Charging, p.Charging)
	set(&c.ChargeLimit, p.ChargeLimit)
	set(&c.ChargingAmps, p.ChargingAmps)
	set(&c.ChargePortOpen, p.ChargePortOpen)
	fn := r.watch
	if fn == nil || (r.told != nil && *r.told == c) {
		r.mu.Unlock()
		return
	}
	r.told = &c
	r.mu.Unlock()
	fn(c)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// take returns and clears what is pending.
func (r *Remote) take() (RemoteChange, bool) {
	if r == nil {
		return RemoteChange{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.pending
	r.pending = RemoteChange{}
	return c, c != RemoteChange{}
}

// woken is ready when a change arrived; nil for a nil Remote.
func (r *Remote) woken() <-chan struct{} {
	if r == nil {
		return nil
	}
	return r.wake
}

// remoteOverrides are the remote changes in force in the model: they last
// until the car's own story changes the same thing (a new phase).
type remoteOverrides struct {
	climate    *bool
	driverTemp *float64
	locked     *bool
	sentry     *bool
	chargePort *bool
}

// applyRemote applies a change to the model.
func (v *vehicle) applyRemote(c RemoteChange, t *tick) {
	if c.ChargeLimit != nil {
		v.limit, v.userLimit = *c.ChargeLimit, *c.ChargeLimit
		t.notes = append(t.notes, "remote: charge limit "+strconv.Itoa(*c.ChargeLimit)+"%")
	}
	if c.ChargingAmps != nil {
		v.amps = float64(*c.ChargingAmps)
		t.notes = append(t.notes, "remote: charging amps "+strconv.Itoa(*c.ChargingAmps))
	}
	if c.Climate != nil {
		v.remote.climate = c.Climate
	}
	if c.DriverTemp != nil {
		v.remote.driverTemp = c.DriverTemp
	}
	if c.Locked != nil {
		v.remote.locked = c.Locked
	}
	if c.Sentry != nil {
		v.remote.sentry = c.Sentry
	}
	if c.ChargePortOpen != nil {
		v.remote.chargePort = c.ChargePortOpen
	}
	if c.Charging == nil {
		return
	}
	charging := v.current().kind == phaseCharge && (v.charge.Equal(chargeStarting) || v.charge.Equal(chargeCharging))
	switch {
	case *c.Charging && !charging:
		// Charge now, at home: the plan resumes once the session ends.
		v.interrupt = &phase{kind: phaseCharge}
		v.in, v.fresh = 0, true
		v.remoteStart = true
		t.notes = append(t.notes, "remote: charge start")
	case !*c.Charging && charging:
		v.charge, v.chargeIn, v.chargeKW = chargeStopped, 0, 0
		t.notes = append(t.notes, "remote: charge stop")
	}
}

// current is the phase the car is in: a remote charge, else the plan's.
func (v *vehicle) current() phase {
	if v.interrupt != nil {
		return *v.interrupt
	}
	return v.plan[v.idx]
}

// reportRemote reports the remote changes in force over what the story
// says.
func (v *vehicle) reportRemote() {
	r, o := &v.rep, v.remote
	if o.climate != nil {
		if *o.climate {
			r.add(fHvacPower, hvacOn)
		} else {
			r.add(fHvacPower, hvacOff)
		}
	}
	if o.driverTemp != nil {
		r.add(fHvacLeftTempRequest, telemetry.FloatValue(*o.driverTemp))
	}
	if o.locked != nil {
		r.add(fLocked, telemetry.BoolValue(*o.locked))
	}
	if o.sentry != nil {
		if *o.sentry {
			r.add(fSentryMode, sentryArmed)
		} else {
			r.add(fSentryMode, sentryOff)
		}
	}
	if o.chargePort != nil {
		r.add(fChargePortDoorOpen, telemetry.BoolValue(*o.chargePort))
	}
}

// controls is the state of the controls as the stream last said it; a
// temperature not yet said is the one the car asks for when driving.
func (v *vehicle) controls() Controls {
	last := func(f telemetry.Field) telemetry.Value { return v.rep.last[f].v }
	charge, sentry, temp := last(fDetailedChargeState), last(fSentryMode), last(fHvacLeftTempRequest)
	c := Controls{
		Locked:         last(fLocked).Bool(),
		Climate:        last(fHvacPower).Equal(hvacOn),
		DriverTemp:     21,
		Sentry:         sentry.Valid() && !sentry.Equal(sentryOff),
		Charging:       charge.Equal(chargeStarting) || charge.Equal(chargeCharging),
		ChargeLimit:    v.limit,
		ChargingAmps:   int(v.amps),
		ChargePortOpen: last(fChargePortDoorOpen).Bool(),
	}
	if temp.Valid() {
		c.DriverTemp = temp.Float()
	}
	return c
}
