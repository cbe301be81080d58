package simulate

import (
	"reflect"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

var modelClock = time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)

// runModel steps a fresh vehicle n times by dt and returns every tick.
func runModel(s Scenario, seed uint64, n int, dt time.Duration) []tick {
	v := newVehicle(s, seed)
	now := modelClock
	out := make([]tick, 0, n)
	for range n {
		t := v.step(dt, now)
		out = append(out, t)
		now = now.Add(dt + t.sleep)
	}
	return out
}

func TestModelDeterministic(t *testing.T) {
	for _, s := range Scenarios {
		a := runModel(s, 7, 500, 5*time.Second)
		b := runModel(s, 7, 500, 5*time.Second)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: the same seed played two different stories", s)
		}
		c := runModel(s, 8, 500, 5*time.Second)
		if reflect.DeepEqual(a, c) {
			t.Errorf("%s: seeds 7 and 8 played the same story", s)
		}
	}
}

// TestModelValuesSuitTheCatalog: over a long run of every scenario, each
// signal has its field's kind and encodes, typed and as a legacy string.
func TestModelValuesSuitTheCatalog(t *testing.T) {
	for _, s := range Scenarios {
		seen := map[telemetry.Field]bool{}
		for _, tk := range runModel(s, 1, 3000, 10*time.Second) {
			for _, d := range tk.data {
				info, ok := telemetry.Lookup(d.Field)
				if !ok {
					t.Fatalf("%s: unknown field %v", s, d.Field)
				}
				if !kindSuits(info.Kind, d.Value.Kind()) {
					t.Fatalf("%s: %s = %v is %v, the catalog says %v", s, info.Name, d.Value, d.Value.Kind(), info.Kind)
				}
				for _, legacy := range []bool{false, true} {
					if _, err := EncodeValue(d.Field, d.Value, legacy); err != nil {
						t.Fatalf("%s: %s: %v", s, info.Name, err)
					}
				}
				seen[d.Field] = true
			}
		}
		if len(seen) < 20 {
			t.Errorf("%s: only %d distinct signals", s, len(seen))
		}
	}
}

// values collects the values of one field over a run.
func values(ticks []tick, f telemetry.Field) []telemetry.Value {
	var out []telemetry.Value
	for _, tk := range ticks {
		for _, d := range tk.data {
			if d.Field == f {
				out = append(out, d.Value)
			}
		}
	}
	return out
}

func TestModelStories(t *testing.T) {
	t.Run("drive", func(t *testing.T) {
		ticks := runModel(ScenarioDrive, 3, 2000, time.Second)
		odo := values(ticks, fOdometer)
		for i := 1; i < len(odo); i++ {
			if odo[i].Float() < odo[i-1].Float() {
				t.Fatalf("odometer went back from %v to %v", odo[i-1], odo[i])
			}
		}
		if len(odo) < 2 || odo[len(odo)-1].Float()-odo[0].Float() < 5 {
			t.Errorf("odometer %v → %v: want several miles in 2000 s", odo[0], odo[len(odo)-1])
		}
		if n := len(distinct(values(ticks, fLocation))); n < 100 {
			t.Errorf("%d distinct locations, want the car to move", n)
		}
		speeds := values(ticks, fVehicleSpeed)
		if maxFloat(speeds) < 20 || maxFloat(speeds) > 60 {
			t.Errorf("top speed %v mph, want a town drive", maxFloat(speeds))
		}
		gears := distinct(values(ticks, fGear))
		if len(gears) != 2 {
			t.Errorf("gears %v, want D and P (a stop after each lap)", gears)
		}
		for _, h := range values(ticks, fGpsHeading) {
			if h.Float() < 0 || h.Float() >= 360 {
				t.Fatalf("heading %v out of range", h)
			}
		}
	})
	t.Run("charge", func(t *testing.T) {
		ticks := runModel(ScenarioCharge, 3, 3000, 10*time.Second)
		states := distinct(values(ticks, fDetailedChargeState))
		for _, want := range []telemetry.Value{chargeStarting, chargeCharging, chargeComplete, chargeDisconnect} {
			if !contains(states, want) {
				t.Errorf("charge states %v lack %v", states, want)
			}
		}
		soc := values(ticks, fSoc)
		rising := 0
		for i := 1; i < len(soc); i++ {
			if soc[i].Float() > soc[i-1].Float() {
				rising++
			}
		}
		if rising < 50 {
			t.Errorf("state of charge rose %d times, want a charging curve", rising)
		}
		if maxFloat(values(ticks, fChargerVoltage)) < 200 || maxFloat(values(ticks, fTimeToFullCharge)) <= 0 {
			t.Error("no charger voltage or time to full while charging")
		}
	})
	t.Run("park", func(t *testing.T) {
		ticks := runModel(ScenarioPark, 3, 200, 10*time.Second)
		sleeps := 0
		for _, tk := range ticks {
			if tk.sleep > 0 {
				sleeps++
			}
		}
		if sleeps < 2 {
			t.Errorf("fell asleep %d times in 200 ticks, want at least twice", sleeps)
		}
		if g := distinct(values(ticks, fGear)); len(g) != 1 || !g[0].Equal(gearP) {
			t.Errorf("gears %v while parked, want P", g)
		}
	})
	t.Run("alerts", func(t *testing.T) {
		ticks := runModel(ScenarioAlerts, 3, 200, 10*time.Second)
		var raised, ended, errs int
		for _, tk := range ticks {
			for _, rec := range tk.alerts {
				for _, a := range rec {
					if a.Active() {
						raised++
					} else {
						ended++
					}
				}
			}
			errs += len(tk.errors)
		}
		if raised == 0 || ended == 0 || errs == 0 {
			t.Errorf("%d alerts raised, %d ended, %d error records: want some of each", raised, ended, errs)
		}
	})
}

func distinct(vs []telemetry.Value) []telemetry.Value {
	var out []telemetry.Value
	for _, v := range vs {
		if !contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func contains(vs []telemetry.Value, v telemetry.Value) bool {
	for _, w := range vs {
		if w.Equal(v) {
			return true
		}
	}
	return false
}

func maxFloat(vs []telemetry.Value) float64 {
	m := 0.0
	for _, v := range vs {
		m = max(m, v.Float())
	}
	return m
}
