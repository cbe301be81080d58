// Package streamcost counts what each car actually streams, records and
// signals per signal, and estimates Tesla's monthly bill for it with the
// price table of package telemetry (the one the setup page's estimate of a
// selection uses).
//
// A signal is one datum of a data record: Tesla bills each signal a car
// streams. Alerts, errors and connectivity records are counted as records
// but not as signals.
//
// The estimate is the signals of the last 24 hours (hourly buckets) times
// BillingMonthDays, priced at SignalsPerDollar. A car seen for less than a
// day is extrapolated from the time since it was first seen, counted as
// at least one hour, so that the first minutes do not read as a fortune.
package streamcost

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// buckets are the hours of the window.
const buckets = 24

// fields are the signals counted one by one; a field numbered beyond the
// catalog is counted in the last slot.
const fields = int(telemetry.MaxField) + 2

// Meter counts every car's records and signals. It is safe for concurrent
// use; Observe allocates nothing once a car has been seen.
type Meter struct {
	mu   sync.RWMutex
	cars map[string]*car
}

// car is one car's counts.
type car struct {
	mu        sync.Mutex
	firstSeen time.Time
	hours     [buckets]bucket
	// Totals since the start, for counters.
	records uint64
	signals [fields]uint64
}

// bucket is one hour's counts.
type bucket struct {
	hour    int64 // Unix hour this bucket counts; 0: unused
	records uint32
	signals [fields]uint32
}

// New returns an empty meter.
func New() *Meter { return &Meter{cars: make(map[string]*car)} }

// Observe counts one record of a car that arrived at now.
func (m *Meter) Observe(rec *telemetry.Record, now time.Time) {
	if rec.VIN == "" {
		return
	}
	m.mu.RLock()
	c, ok := m.cars[rec.VIN]
	m.mu.RUnlock()
	if !ok {
		m.mu.Lock()
		if c, ok = m.cars[rec.VIN]; !ok {
			c = &car{firstSeen: now}
			m.cars[string([]byte(rec.VIN))] = c // the key must not share the record's memory
		}
		m.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bucket(now)
	b.records++
	c.records++
	if rec.Topic != telemetry.TopicV {
		return
	}
	for i := range rec.Data {
		f := slotOf(rec.Data[i].Field)
		b.signals[f]++
		c.signals[f]++
	}
}

func slotOf(f telemetry.Field) int {
	if f < 0 || int(f) >= fields-1 {
		return fields - 1
	}
	return int(f)
}

// bucket returns the bucket of now's hour, emptied when it last counted
// an older hour.
func (c *car) bucket(now time.Time) *bucket {
	h := now.Unix() / 3600
	b := &c.hours[h%buckets]
	if b.hour != h {
		*b = bucket{hour: h}
	}
	return b
}

// SignalCount is what one signal costs.
type SignalCount struct {
	Signal         string  `json:"signal"`
	PerDay         float64 `json:"per_day"`
	MonthlyDollars float64 `json:"monthly_dollars"`
}

// Estimate is what a car's stream costs.
type Estimate struct {
	VIN string `json:"-"`
	// MonthlyDollars is the estimated monthly bill in US$, before
	// Tesla's monthly credit (shared by the account's cars).
	MonthlyDollars float64 `json:"monthly_dollars"`
	RecordsPerDay  float64 `json:"records_per_day"`
	SignalsPerDay  float64 `json:"signals_per_day"`
	// ObservedHours is the time the estimate is made from: up to 24.
	ObservedHours float64 `json:"observed_hours"`
	// Top are the signals that cost most, most first.
	Top []SignalCount `json:"top_signals"`
	// BudgetDollars and OverBudget: the owner's monthly budget per car,
	// when set, and whether the estimate exceeds it.
	BudgetDollars float64 `json:"budget_dollars,omitempty"`
	OverBudget    bool    `json:"over_budget"`
	// Records and Signals count since fleet2mqtt started, by signal name.
	Records uint64            `json:"-"`
	Signals map[string]uint64 `json:"-"`
}

// topN is how many signals Top lists.
const topN = 5

// Estimates returns the estimate of every car at now, by VIN; budget (US$
// per month, 0 for none) marks the cars over it.
func (m *Meter) Estimates(now time.Time, budget float64) []Estimate {
	m.mu.RLock()
	vins := make([]string, 0, len(m.cars))
	for vin := range m.cars {
		vins = append(vins, vin)
	}
	m.mu.RUnlock()
	slices.Sort(vins)
	out := make([]Estimate, 0, len(vins))
	for _, vin := range vins {
		m.mu.RLock()
		c := m.cars[vin]
		m.mu.RUnlock()
		out = append(out, c.estimate(vin, now, budget))
	}
	return out
}

func (c *car) estimate(vin string, now time.Time, budget float64) Estimate {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := now.Unix() / 3600
	var records uint64
	var signals [fields]uint64
	for i := range c.hours {
		b := &c.hours[i]
		if b.hour == 0 || b.hour <= h-buckets || b.hour > h {
			continue
		}
		records += uint64(b.records)
		for f, n := range b.signals {
			signals[f] += uint64(n)
		}
	}
	observed := min(now.Sub(c.firstSeen), buckets*time.Hour)
	observed = max(observed, time.Hour)
	scale := float64(24*time.Hour) / float64(observed)
	e := Estimate{VIN: vin, ObservedHours: round(min(now.Sub(c.firstSeen).Hours(), buckets), 2),
		RecordsPerDay: round(float64(records)*scale, 0), Records: c.records, Signals: map[string]uint64{}}
	var total uint64
	var top []SignalCount
	for f, n := range signals {
		total += n
		if n > 0 {
			perDay := float64(n) * scale
			top = append(top, SignalCount{Signal: name(f), PerDay: round(perDay, 0), MonthlyDollars: round(dollars(perDay), 2)})
		}
	}
	for f, n := range c.signals {
		if n > 0 {
			e.Signals[name(f)] = n
		}
	}
	slices.SortFunc(top, func(a, b SignalCount) int {
		return cmp.Or(cmp.Compare(b.PerDay, a.PerDay), cmp.Compare(a.Signal, b.Signal))
	})
	e.Top = top[:min(len(top), topN)]
	if e.Top == nil {
		e.Top = []SignalCount{}
	}
	e.SignalsPerDay = round(float64(total)*scale, 0)
	e.MonthlyDollars = round(dollars(float64(total)*scale), 2)
	if budget > 0 {
		e.BudgetDollars, e.OverBudget = budget, e.MonthlyDollars > budget
	}
	return e
}

// dollars is the monthly bill of perDay signals a day.
func dollars(perDay float64) float64 {
	return perDay * telemetry.BillingMonthDays / telemetry.SignalsPerDollar
}

func name(slot int) string {
	if slot == fields-1 {
		return "other"
	}
	return telemetry.Field(slot).String()
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}
