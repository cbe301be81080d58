package simulate

import (
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// last returns the last value the model reported for f within steps.
func stepUntil(t *testing.T, v *vehicle, steps int, f telemetry.Field, want func(telemetry.Value) bool) telemetry.Value {
	t.Helper()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var last telemetry.Value
	for i := range steps {
		for _, d := range v.step(time.Second, now.Add(time.Duration(i)*time.Second)).data {
			if d.Field == f {
				last = d.Value
				if want(d.Value) {
					return d.Value
				}
			}
		}
	}
	t.Fatalf("%s never became what was wanted; last %v", f, last)
	return last
}

func ptr[T any](v T) *T { return &v }

func TestRemoteChargingFollows(t *testing.T) {
	v := newVehicle(ScenarioPark, 1)
	v.soc = 50
	r := NewRemote()
	r.Apply(RemoteChange{ChargeLimit: ptr(70)})
	r.Apply(RemoteChange{Charging: ptr(true)})
	c, ok := r.take()
	if !ok || *c.ChargeLimit != 70 || !*c.Charging {
		t.Fatalf("pending %+v", c)
	}
	var told tick
	v.applyRemote(c, &told)
	stepUntil(t, v, 5, fChargeLimitSoc, func(x telemetry.Value) bool { return x.Equal(telemetry.IntValue(70)) })
	stepUntil(t, v, 60, fDetailedChargeState, func(x telemetry.Value) bool { return x.Equal(chargeCharging) })

	v.applyRemote(RemoteChange{Charging: ptr(false), ChargingAmps: ptr(12)}, &told)
	stepUntil(t, v, 5, fDetailedChargeState, func(x telemetry.Value) bool { return x.Equal(chargeStopped) })
	// Once the stopped session ends, the plan resumes: parked.
	stepUntil(t, v, 600, fDetailedChargeState, func(x telemetry.Value) bool { return x.Equal(chargeDisconnect) })
	if _, more := r.take(); more {
		t.Error("a change is still pending after take")
	}
}

func TestRemoteOverridesLastUntilTheStoryMoves(t *testing.T) {
	v := newVehicle(ScenarioAlerts, 1)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	v.step(time.Second, now)
	v.home = false // parked away: unlocked (the driver got out), sentry armed, climate off
	v.step(time.Second, now)
	sent := func(f telemetry.Field) telemetry.Value { return v.rep.last[f].v }
	if !sent(fSentryMode).Equal(sentryArmed) || !sent(fLocked).Equal(telemetry.BoolValue(false)) || !sent(fHvacPower).Equal(hvacOff) {
		t.Fatalf("the story: sentry %v, locked %v, hvac %v", sent(fSentryMode), sent(fLocked), sent(fHvacPower))
	}
	var told tick
	v.applyRemote(RemoteChange{Locked: ptr(true), Sentry: ptr(false), Climate: ptr(true), DriverTemp: ptr(22.5)}, &told)
	for range 3 {
		v.step(time.Second, now)
		if !sent(fSentryMode).Equal(sentryOff) || !sent(fLocked).Equal(telemetry.BoolValue(true)) ||
			!sent(fHvacPower).Equal(hvacOn) || !sent(fHvacLeftTempRequest).Equal(telemetry.FloatValue(22.5)) {
			t.Fatalf("after the remote: sentry %v, locked %v, hvac %v, temp %v", sent(fSentryMode), sent(fLocked), sent(fHvacPower), sent(fHvacLeftTempRequest))
		}
	}
}

// TestRemoteWatch: the watcher gets the car's controls when they change,
// with what is pending shown as done.
func TestRemoteWatch(t *testing.T) {
	v := newVehicle(ScenarioDrive, 1)
	v.step(time.Second, time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	r := NewRemote()
	var got []Controls
	r.Watch(func(c Controls) { got = append(got, c) })
	r.report(v.controls())
	r.report(v.controls())
	if len(got) != 1 {
		t.Fatalf("%d reports of unchanged controls, want 1", len(got))
	}
	if c := got[0]; !c.Locked || !c.Climate || c.Charging || c.ChargeLimit != 80 {
		t.Errorf("a driving car's controls: %+v", c)
	}
	r.Apply(RemoteChange{Climate: ptr(false), ChargeLimit: ptr(65)})
	r.report(v.controls())
	if len(got) != 2 || got[1].Climate || got[1].ChargeLimit != 65 {
		t.Errorf("with a change pending: %+v", got)
	}
}
