package setup

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TestPresets: every preset names signals of the catalog once, its config
// validates as Tesla would check it, and "everything" is the whole
// catalog.
func TestPresets(t *testing.T) {
	sizes := map[string]int{}
	for _, p := range presets {
		if len(p.names) == 0 {
			t.Errorf("preset %s is empty", p.ID)
		}
		seen := map[string]bool{}
		for _, n := range p.names {
			if f, ok := telemetry.FieldByName(n); !ok || f == telemetry.FieldUnknown {
				t.Errorf("preset %s: %q is not in the catalog", p.ID, n)
			}
			if seen[n] {
				t.Errorf("preset %s names %s twice", p.ID, n)
			}
			seen[n] = true
		}
		cfg := fleetapi.TelemetryConfig{Hostname: testHost, Port: 443, CA: string(testCA(t)), Exp: time.Now().Add(time.Hour).Unix(),
			Fields: presetSelection(p, defaultInterval).config()}
		if err := cfg.Validate(time.Now()); err != nil {
			t.Errorf("preset %s: %v", p.ID, err)
		}
		sizes[p.ID] = len(p.names)
	}
	if !(sizes["essentials"] < sizes["everything"] && sizes["charging"] < sizes["everything"] && sizes["driving"] < sizes["everything"]) {
		t.Errorf("preset sizes %v", sizes)
	}
	if sizes["everything"] != len(telemetry.Catalog())-1 {
		t.Errorf("everything has %d signals, the catalog %d besides Unknown", sizes["everything"], len(telemetry.Catalog())-1)
	}
	for name := range defaultDeltas {
		f, ok := telemetry.FieldByName(name)
		info, _ := telemetry.Lookup(f)
		if !ok || !takesDelta(info) {
			t.Errorf("default delta for %s, which takes none", name)
		}
	}
}

func testCA(t *testing.T) []byte { return httptestCA(t) }

func TestParseSelection(t *testing.T) {
	tests := []struct {
		form     string
		fields   int
		problems []string
		delta    map[string]float64
	}{
		{"interval=60&field=Soc&delta.Soc=1&field=Gear&delta.Gear=5", 2, nil, map[string]float64{"Soc": 1}},
		{"interval=30&field=Soc&delta.Soc=0,5", 1, nil, map[string]float64{"Soc": 0.5}},
		{"interval=30&field=Soc&delta.Soc=0", 1, nil, map[string]float64{}},
		{"interval=abc&field=Soc", 1, []string{`The interval "abc" is not a whole number`}, nil},
		{"interval=0&field=Soc", 1, []string{"from 1 to 86400 seconds, not 0"}, nil},
		{"interval=60&field=Bogus", 0, []string{`"Bogus" is not a signal of the catalog`}, nil},
		{"interval=60&field=Unknown", 0, []string{`"Unknown" is not a signal`}, nil},
		{"interval=60&field=Soc&delta.Soc=-1", 1, []string{"minimum change of Soc must be a number of at least 0"}, nil},
		{"interval=60&field=Soc&delta.Soc=NaN", 1, []string{"minimum change of Soc"}, nil},
		{"interval=60", 0, []string{"Choose at least one signal"}, nil},
	}
	for _, tc := range tests {
		form, _ := url.ParseQuery(tc.form)
		sel, problems := parseSelection(form)
		if len(sel.Fields) != tc.fields {
			t.Errorf("%s: %d fields, want %d", tc.form, len(sel.Fields), tc.fields)
		}
		if len(problems) != len(tc.problems) {
			t.Errorf("%s: problems %q, want %q", tc.form, problems, tc.problems)
			continue
		}
		for i, want := range tc.problems {
			if !strings.Contains(problems[i], want) {
				t.Errorf("%s: problem %q, want %q", tc.form, problems[i], want)
			}
		}
		for name, want := range tc.delta {
			if d := sel.Fields[name]; d == nil || *d != want {
				t.Errorf("%s: delta of %s = %v, want %v", tc.form, name, d, want)
			}
		}
		if d, ok := sel.Fields["Gear"]; ok && d != nil {
			t.Errorf("%s: an enum got a delta", tc.form)
		}
	}
}

func TestEstimate(t *testing.T) {
	sel := selection{Interval: 60, Fields: map[string]*float64{"Soc": nil, "Gear": nil}}
	e := estimateOf(sel, 1)
	// 2 signals × 1440 a day × 30 days = 86,400: $0.58.
	if !strings.Contains(e.Text, "up to 86,400 signals a month per car") || !strings.Contains(e.Text, "$0.58") || e.Over {
		t.Errorf("estimate %+v", e)
	}
	e = estimateOf(selection{Interval: 1, Fields: sel.Fields}, 3)
	if !strings.Contains(e.Text, "3 cars: 15,552,000") || !e.Over {
		t.Errorf("estimate %+v", e)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %s", n, got)
		}
	}
}

// TestRecordSeen: concurrent callers, first and last times kept, the
// number of cars bounded.
func TestRecordSeen(t *testing.T) {
	w := &Wizard{}
	t0 := time.Unix(1000, 0)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				w.RecordSeen(testVIN, t0.Add(time.Duration(i*100+j)*time.Second))
			}
		})
	}
	wg.Wait()
	first, last := w.seen.times(testVIN)
	if !first.Equal(t0) || !last.Equal(t0.Add(799*time.Second)) {
		t.Errorf("first %v last %v, want %v and %v", first, last, t0, t0.Add(799*time.Second))
	}
	if f, _ := w.seen.times(testVIN2); !f.IsZero() {
		t.Error("a car never seen has a first record")
	}
	for i := range maxSeenCars + 10 {
		w.RecordSeen("VIN"+string(rune('A'+i%26))+strings.Repeat("x", i/26), t0)
	}
	if n := w.seen.count.Load(); n > maxSeenCars {
		t.Errorf("%d cars remembered", n)
	}
}

func BenchmarkRecordSeen(b *testing.B) {
	w := &Wizard{}
	now := time.Now()
	w.RecordSeen(testVIN, now)
	b.ReportAllocs()
	for b.Loop() {
		w.RecordSeen(testVIN, now)
	}
}
