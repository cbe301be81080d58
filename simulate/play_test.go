package simulate

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// play runs a scenario against a real ingest server until cond holds on
// what the server's sink received, then stops the car.
func play(t *testing.T, cfg PlayConfig, legacy bool, what string, cond func(*recordingSink) bool) *recordingSink {
	t.Helper()
	sink := &recordingSink{}
	ts := startServer(t, sink)
	car := ts.car(t, func(c *CarConfig) { c.LegacyStrings = legacy })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Play(ctx, car, cfg) }()
	waitFor(t, what, func() bool { return cond(sink) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Play: %v", err)
	}
	if car.Stats().Rejected != 0 {
		t.Errorf("the server refused records: %+v", car.Stats())
	}
	checkKinds(t, sink)
	return sink
}

// checkKinds: every signal the server decoded has its field's kind.
func checkKinds(t *testing.T, sink *recordingSink) {
	t.Helper()
	for _, rec := range sink.byTopic(telemetry.TopicV) {
		if rec.VIN != testVIN {
			t.Errorf("record from %q, want %s", rec.VIN, testVIN)
		}
		for _, d := range rec.Data {
			info, _ := telemetry.Lookup(d.Field)
			if !kindSuits(info.Kind, d.Value.Kind()) {
				t.Errorf("%s = %v arrived as %v, want %v", info.Name, d.Value, d.Value.Kind(), info.Kind)
			}
		}
	}
}

// series returns the values of field f, in the order the server got them.
func series(sink *recordingSink, f telemetry.Field) []telemetry.Value {
	var out []telemetry.Value
	for _, rec := range sink.byTopic(telemetry.TopicV) {
		for _, d := range rec.Data {
			if d.Field == f {
				out = append(out, d.Value)
			}
		}
	}
	return out
}

func TestPlayDrive(t *testing.T) {
	sink := play(t, PlayConfig{Scenario: ScenarioDrive, Seed: 1, Speed: 100}, false, "the car to move",
		func(s *recordingSink) bool {
			return len(distinct(series(s, fLocation))) >= 5 && len(series(s, fOdometer)) >= 5
		})
	odo := series(sink, fOdometer)
	for i := 1; i < len(odo); i++ {
		if odo[i].Float() < odo[i-1].Float() {
			t.Fatalf("odometer went back from %v to %v", odo[i-1], odo[i])
		}
	}
	if odo[len(odo)-1].Float() <= odo[0].Float() {
		t.Errorf("odometer %v → %v: want it to grow", odo[0], odo[len(odo)-1])
	}
	if g := series(sink, fGear); len(g) == 0 || !g[0].Equal(gearD) {
		t.Errorf("gear %v, want D while driving", g)
	}
	if len(series(sink, fGpsHeading)) == 0 || maxFloat(series(sink, fVehicleSpeed)) <= 0 {
		t.Error("no heading or no speed while driving")
	}
}

func TestPlayCharge(t *testing.T) {
	sink := play(t, PlayConfig{Scenario: ScenarioCharge, Seed: 1, Speed: 1000}, false, "the charge to progress",
		func(s *recordingSink) bool {
			return contains(series(s, fDetailedChargeState), chargeCharging) && len(distinct(series(s, fSoc))) >= 4
		})
	if st := series(sink, fDetailedChargeState); !st[0].Equal(chargeStarting) {
		t.Errorf("charge states %v, want Starting first", st)
	}
	soc := series(sink, fSoc)
	if soc[len(soc)-1].Float() <= soc[0].Float() {
		t.Errorf("state of charge %v → %v: want it to rise", soc[0], soc[len(soc)-1])
	}
	if maxFloat(series(sink, fChargerVoltage)) < 200 || maxFloat(series(sink, fChargeAmps)) <= 0 ||
		maxFloat(series(sink, fTimeToFullCharge)) <= 0 {
		t.Error("no charger voltage, current or time to full while charging")
	}
	if maxFloat(series(sink, fACChargingPower))+maxFloat(series(sink, fDCChargingPower)) <= 0 {
		t.Error("no charging power")
	}
}

func TestPlayPark(t *testing.T) {
	sink := play(t, PlayConfig{Scenario: ScenarioPark, Seed: 1, Speed: 5000}, false, "the car to sleep and wake up",
		func(s *recordingSink) bool {
			var c, d int
			for _, r := range s.byTopic(telemetry.TopicConnectivity) {
				switch r.Connectivity.Status {
				case telemetry.StatusConnected:
					c++
				case telemetry.StatusDisconnected:
					d++
				}
			}
			return c >= 2 && d >= 1 && len(s.byTopic(telemetry.TopicV)) >= 3
		})
	if g := distinct(series(sink, fGear)); len(g) != 1 || !g[0].Equal(gearP) {
		t.Errorf("gears %v, want P", g)
	}
	if l := series(sink, fLocked); len(l) == 0 {
		t.Error("no lock state while parked")
	}
}

func TestPlayAlerts(t *testing.T) {
	sink := play(t, PlayConfig{Scenario: ScenarioAlerts, Seed: 1, Speed: 1000}, false, "alerts raised and cleared, and an error",
		func(s *recordingSink) bool {
			var raised, ended bool
			for _, r := range s.byTopic(telemetry.TopicAlerts) {
				for _, a := range r.Alerts {
					raised = raised || a.Active()
					ended = ended || !a.Active()
				}
			}
			return raised && ended && len(s.byTopic(telemetry.TopicErrors)) > 0
		})
	for _, r := range sink.byTopic(telemetry.TopicAlerts) {
		for _, a := range r.Alerts {
			if a.Name == "" || len(a.Audiences) == 0 || a.StartedAt.IsZero() {
				t.Errorf("alert %+v lacks a name, audience or start", a)
			}
		}
	}
	for _, r := range sink.byTopic(telemetry.TopicErrors) {
		if len(r.Errors) == 0 || r.Errors[0].Name == "" || len(r.Errors[0].Tags) == 0 {
			t.Errorf("error record %+v lacks a name or tags", r)
		}
	}
}

func TestPlayMixed(t *testing.T) {
	play(t, PlayConfig{Scenario: ScenarioMixed, Seed: 2, Speed: 100}, false, "the day to start with a drive",
		func(s *recordingSink) bool { return len(distinct(series(s, fLocation))) >= 3 })
}

// TestPlayLegacyStrings: fields below 179 go out as strings, as older
// firmware sends them, and the server turns them back into typed values;
// fields from 179 on stay typed.
func TestPlayLegacyStrings(t *testing.T) {
	sink := play(t, PlayConfig{Scenario: ScenarioDrive, Seed: 1, Speed: 100}, true, "a few records",
		func(s *recordingSink) bool { return len(s.byTopic(telemetry.TopicV)) >= 5 })
	var fromString, typed int
	for _, rec := range sink.byTopic(telemetry.TopicV) {
		for _, d := range rec.Data {
			_, raw := d.Value.Raw()
			switch k := d.Value.Kind(); {
			case d.Field >= FirstTypedField:
				if raw {
					t.Errorf("%v (≥ 179) arrived as a string", d.Field)
				}
				typed++
			case k == telemetry.KindDoorsValue || k == telemetry.KindTimeValue || k == telemetry.KindStringValue:
			default:
				if !raw {
					t.Errorf("%v = %v arrived typed, want a legacy string", d.Field, d.Value)
				}
				fromString++
			}
		}
	}
	if fromString == 0 || typed == 0 {
		t.Errorf("%d values from strings, %d typed: want both", fromString, typed)
	}
	loc := series(sink, fLocation)
	if len(loc) == 0 {
		t.Fatal("no location")
	}
	raw, _ := loc[0].Raw()
	lat, lon := loc[0].Location()
	if raw[0] != '(' || math.Abs(lat-37.4) > 0.1 || math.Abs(lon+122.15) > 0.1 {
		t.Errorf("location %q → %v, %v: want the legacy form near Palo Alto", raw, lat, lon)
	}
}

func TestPlayConfigValidate(t *testing.T) {
	for _, cfg := range []PlayConfig{
		{Scenario: "fly"},
		{Speed: -1},
		{Speed: math.NaN()},
		{Interval: -time.Second},
	} {
		if err := Play(context.Background(), nil, cfg); err == nil {
			t.Errorf("Play(%+v) accepted", cfg)
		}
	}
}

func TestTiming(t *testing.T) {
	for _, tc := range []struct {
		speed           float64
		interval        time.Duration
		real, simulated time.Duration
	}{
		{1, time.Second, time.Second, time.Second},
		{10, time.Second, 100 * time.Millisecond, time.Second},
		{1000, time.Second, 10 * time.Millisecond, 10 * time.Second},
		{0.5, time.Second, 2 * time.Second, time.Second},
	} {
		p := PlayConfig{Speed: tc.speed, Interval: tc.interval}
		if r, s := p.timing(); r != tc.real || s != tc.simulated {
			t.Errorf("speed %v interval %v: every %v covering %v, want %v covering %v", tc.speed, tc.interval, r, s, tc.real, tc.simulated)
		}
	}
}
