//go:build hardening

package hardening

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Areas of the table, in the order the document shows them.
const (
	areaLoad    = "Load"
	areaFaults  = "Faults"
	areaHostile = "Hostile input"
	areaAccess  = "Access"
	areaFuzz    = "Fuzzing"
)

var areas = []string{areaLoad, areaFaults, areaHostile, areaAccess, areaFuzz}

// row is one case of the table: what was tried, what must hold, whether it
// held (its test did not fail) and what was measured.
type row struct {
	area, name, tried, holds string

	mu       sync.Mutex
	figures  []string
	problems []string
	ran      bool
	held     bool
}

// report is the table of the whole run, and its totals.
type report struct {
	mu      sync.Mutex
	rows    []*row
	notes   []string
	elapsed time.Duration

	carsHeld  atomic.Int64 // most cars connected at once
	acked     atomic.Int64 // records acknowledged in cases that account for delivery
	delivered atomic.Int64 // of those, delivered to a subscriber
	faults    atomic.Int64 // faults injected
	attacks   atomic.Int64 // hostile connections, requests and packets
	fuzzExecs atomic.Int64
}

var table report

// trial adds the running test to the table. Its result is whether the
// test passed, read when the test ends.
func trial(t *testing.T, area, tried, holds string) *row {
	t.Helper()
	r := &row{area: area, name: t.Name(), tried: tried, holds: holds}
	table.mu.Lock()
	table.rows = append(table.rows, r)
	table.mu.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ran, r.held = true, !t.Failed()
	})
	return r
}

// figure notes something measured.
func (r *row) figure(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, fmt.Sprintf(format, args...))
}

// errorf fails the test and keeps the reason for the table.
func (r *row) errorf(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	if len(r.problems) < 5 {
		r.problems = append(r.problems, msg)
	}
	r.mu.Unlock()
	t.Error(msg)
}

// fatalf fails the test at once and keeps the reason for the table.
func (r *row) fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.problems = append(r.problems, msg)
	r.mu.Unlock()
	t.Fatal(msg)
}

// note adds a paragraph to the document's notes (once).
func (rep *report) note(text string) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if !slices.Contains(rep.notes, text) {
		rep.notes = append(rep.notes, text)
	}
}

// addCars records n cars connected at once.
func (rep *report) addCars(n int64) {
	for {
		old := rep.carsHeld.Load()
		if n <= old || rep.carsHeld.CompareAndSwap(old, n) {
			return
		}
	}
}

// finish prints the table and, with update, writes it to path.
func (rep *report) finish(update bool, path string) error {
	doc := rep.markdown()
	fmt.Println()
	fmt.Print(doc)
	if !update {
		return nil
	}
	if err := os.MkdirAll(strings.TrimSuffix(path, "/hardening.md"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

func (rep *report) markdown() string {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var b bytes.Buffer
	b.WriteString("# Hardening: what was tried and what held\n\n")
	b.WriteString("This table is written by the hardening suite (`internal/hardening`), not by hand:\n\n")
	b.WriteString("```sh\ngo test -tags hardening -timeout 15m ./internal/hardening/ -update\n```\n\n")
	b.WriteString("It drives the real fleet2mqtt binary on loopback (and the setup page in-process against the\n")
	b.WriteString("fake Tesla where the binary cannot reach one). A case holds when its test passes; a case that\n")
	b.WriteString("does not hold fails the suite and is listed under *Did not hold*.\n\n")
	scope := "full run"
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() != "" {
		scope = "partial run (-run " + f.Value.String() + ")"
	}
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %d CPUs, %s, %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		rep.elapsed.Round(time.Second), scope)

	b.WriteString("## Figures\n\n| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| cars held at once | %d |\n", rep.carsHeld.Load())
	fmt.Fprintf(&b, "| records acknowledged / delivered, where delivery is accounted | %d / %d |\n", rep.acked.Load(), rep.delivered.Load())
	fmt.Fprintf(&b, "| faults injected | %d |\n", rep.faults.Load())
	fmt.Fprintf(&b, "| attacks tried (connections, requests, packets) | %d |\n", rep.attacks.Load())
	fmt.Fprintf(&b, "| fuzz executions | %d |\n", rep.fuzzExecs.Load())
	held, failed := 0, 0
	for _, r := range rep.rows {
		r.mu.Lock()
		if r.ran && r.held {
			held++
		} else if r.ran {
			failed++
		}
		r.mu.Unlock()
	}
	fmt.Fprintf(&b, "| cases held / did not hold | %d / %d |\n\n", held, failed)

	b.WriteString("## Did not hold\n\n")
	if failed == 0 {
		b.WriteString("Everything held.\n\n")
	}
	for _, r := range rep.rows {
		r.mu.Lock()
		if r.ran && !r.held {
			fmt.Fprintf(&b, "- **%s** (%s): %s\n", r.name, r.area, cell(r.holds))
			for _, p := range r.problems {
				fmt.Fprintf(&b, "  - %s\n", cell(p))
			}
		}
		r.mu.Unlock()
	}
	if failed > 0 {
		b.WriteString("\n")
	}

	for _, a := range areas {
		var rows []*row
		for _, r := range rep.rows {
			if r.area == a {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n| case | tried | must hold | result | figures |\n|---|---|---|---|---|\n", a)
		for _, r := range rows {
			r.mu.Lock()
			result := "held"
			switch {
			case !r.ran:
				result = "not run"
			case !r.held:
				result = "**did not hold**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(strings.TrimPrefix(r.name, "Test")), cell(r.tried), cell(r.holds), result, cell(strings.Join(r.figures, "; ")))
			r.mu.Unlock()
		}
		b.WriteString("\n")
	}
	if before, err := os.ReadFile("before-after.md"); err == nil {
		b.WriteString("## Before and after\n\n")
		b.Write(before)
		b.WriteString("\n")
	}
	if len(rep.notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range rep.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}
