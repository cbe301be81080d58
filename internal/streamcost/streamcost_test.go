package streamcost

import (
	"math"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

var t0 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

func record(vin string, fields ...telemetry.Field) *telemetry.Record {
	rec := &telemetry.Record{VIN: vin, Topic: telemetry.TopicV}
	for _, f := range fields {
		rec.Data = append(rec.Data, telemetry.Datum{Field: f, Value: telemetry.FloatValue(1)})
	}
	return rec
}

// A car that sends Location and VehicleSpeed every second and Soc every
// minute for two days: the estimate is the last day's signals.
func TestEstimateOfASteadyCar(t *testing.T) {
	m := New()
	every := record("A", telemetry.FieldLocation, telemetry.FieldVehicleSpeed)
	minute := record("A", telemetry.FieldSoc)
	for s := 0; s < 2*86400; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		m.Observe(every, now)
		if s%60 == 0 {
			m.Observe(minute, now)
		}
	}
	m.Observe(&telemetry.Record{VIN: "A", Topic: telemetry.TopicAlerts}, t0.Add(2*86400*time.Second))
	est := m.Estimates(t0.Add(2*86400*time.Second), 30)
	if len(est) != 1 {
		t.Fatalf("%d cars", len(est))
	}
	e := est[0]
	// The window is the last 24 hours (the current hour holds one record).
	wantSignals := 2.0*86400 + 1440 - 2*3600 - 60 // the hour that just began replaced its bucket of yesterday
	if math.Abs(e.SignalsPerDay-wantSignals) > 2 {
		t.Errorf("signals per day %v, want about %v", e.SignalsPerDay, wantSignals)
	}
	if want := math.Round(e.SignalsPerDay*telemetry.BillingMonthDays/telemetry.SignalsPerDollar*100) / 100; e.MonthlyDollars != want || e.MonthlyDollars < 30 {
		t.Errorf("monthly dollars %v, want %v (over 30)", e.MonthlyDollars, want)
	}
	if !e.OverBudget || e.BudgetDollars != 30 {
		t.Errorf("budget %v over %v", e.BudgetDollars, e.OverBudget)
	}
	if len(e.Top) != 3 || e.Top[0].Signal != "Location" || e.Top[1].Signal != "VehicleSpeed" || e.Top[2].Signal != "Soc" {
		t.Errorf("top %+v", e.Top)
	}
	if e.Signals["Location"] != 2*86400 || e.Records != 2*86400+2*1440+1 {
		t.Errorf("totals: records %d, Location %d", e.Records, e.Signals["Location"])
	}
}

// A car seen for ten minutes is extrapolated from an hour, not from ten
// minutes.
func TestEstimateOfANewCar(t *testing.T) {
	m := New()
	for s := range 600 {
		m.Observe(record("B", telemetry.FieldSoc), t0.Add(time.Duration(s)*time.Second))
	}
	e := m.Estimates(t0.Add(10*time.Minute), 0)[0]
	if e.SignalsPerDay != 600*24 || e.OverBudget || e.BudgetDollars != 0 {
		t.Errorf("%+v", e)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	m := New()
	rec := record("C", telemetry.FieldSoc, telemetry.FieldLocation, telemetry.Field(5000))
	m.Observe(rec, t0)
	if n := testing.AllocsPerRun(100, func() { m.Observe(rec, t0) }); n != 0 {
		t.Errorf("%v allocations per record", n)
	}
	if got := m.Estimates(t0, 0)[0].Signals["other"]; got != 102 { // one Observe, then AllocsPerRun's warm-up and 100 runs
		t.Errorf("a field beyond the catalog counted %d times", got)
	}
}

// BenchmarkObserve is the meter's cost per record: a 20-signal record of
// a car already seen.
func BenchmarkObserve(b *testing.B) {
	m := New()
	fields := make([]telemetry.Field, 20)
	for i := range fields {
		fields[i] = telemetry.Field(i + 1)
	}
	rec := record("D", fields...)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		m.Observe(rec, now)
	}
}
