package history

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
)

const vin = "5YJ3E7EB0KF000001"

func p(v float64) *float64 { return &v }

func drive(end time.Time, km float64) activity.Session {
	return activity.Session{Kind: activity.KindDrive, VIN: vin, Start: end.Add(-30 * time.Minute), End: end,
		DurationMin: 30, EndReason: activity.EndParked, StartPlace: "Home", EndPlace: "Work",
		DistanceKm: p(km), EnergyUsedKWh: p(km * 0.15)}
}

func charge(end time.Time, kwh, cost float64) activity.Session {
	return activity.Session{Kind: activity.KindCharge, VIN: vin, Start: end.Add(-2 * time.Hour), End: end,
		DurationMin: 120, EndReason: activity.EndComplete, StartPlace: "Home", EndPlace: "Home",
		EnergyAddedKWh: p(kwh), EnergyUsedKWh: p(kwh * 1.1), Cost: p(cost), Currency: "EUR"}
}

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var (
	feb = time.Date(2026, 2, 27, 18, 0, 0, 0, time.UTC)
	mar = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
)

func fill(t *testing.T, s *Store) {
	t.Helper()
	for _, ses := range []activity.Session{
		drive(feb, 10), charge(feb.Add(3*time.Hour), 20, 6),
		drive(mar, 12.5), drive(mar.Add(9*time.Hour), 12.5), charge(mar.Add(12*time.Hour), 10, 1),
	} {
		if err := s.Append(ses); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListNewestFirstWithFilters(t *testing.T) {
	s, _ := open(t)
	fill(t, s)
	if err := s.Append(drive(mar, 12.5)); err != nil { // the same session again
		t.Fatal(err)
	}
	all, err := s.List(vin, Filter{})
	if err != nil || len(all) != 5 {
		t.Fatalf("List = %d sessions, %v; want 5", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].End.After(all[i-1].End) {
			t.Errorf("session %d ends after session %d: not newest first", i, i-1)
		}
	}
	drives, _ := s.List(vin, Filter{Kind: activity.KindDrive})
	if len(drives) != 3 {
		t.Errorf("drives = %d, want 3", len(drives))
	}
	march, _ := s.List(vin, Filter{From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: mar.Add(12 * time.Hour)})
	if len(march) != 2 || !march[0].End.Equal(mar.Add(9*time.Hour)) {
		t.Errorf("March before the charge = %d sessions (%v), want the two drives", len(march), march)
	}
	last, _ := s.List(vin, Filter{Kind: activity.KindCharge, Limit: 1})
	if len(last) != 1 || !last[0].End.Equal(mar.Add(12*time.Hour)) {
		t.Errorf("last charge = %v", last)
	}
	if other, err := s.List("OTHER", Filter{}); err != nil || len(other) != 0 {
		t.Errorf("unknown car: %v %v", other, err)
	}
}

func TestMonthly(t *testing.T) {
	s, _ := open(t)
	fill(t, s)
	months, err := s.Monthly(vin, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	want := []Month{
		{Month: "2026-02", Drives: 1, DistanceKm: 10, DriveMinutes: 30, DriveEnergyKWh: 1.5, Charges: 1, EnergyAddedKWh: 20, EnergyUsedKWh: 22, Cost: 6},
		{Month: "2026-03", Drives: 2, DistanceKm: 25, DriveMinutes: 60, DriveEnergyKWh: 3.75, Charges: 1, EnergyAddedKWh: 10, EnergyUsedKWh: 11, Cost: 1},
	}
	if fmt.Sprint(months) != fmt.Sprint(want) {
		t.Errorf("Monthly =\n%v\nwant\n%v", months, want)
	}
	// A drive that ends at 20:00 UTC on 28 February ends on 1 March in Tokyo.
	if err := s.Append(drive(time.Date(2026, 2, 28, 20, 0, 0, 0, time.UTC), 5)); err != nil {
		t.Fatal(err)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	m, _ := s.Monthly(vin, tokyo)
	if len(m) != 2 || m[0].Drives != 1 || m[1].Drives != 3 || m[1].DistanceKm != 30 {
		t.Errorf("Monthly in Tokyo = %v, want the late February drive in March", m)
	}
	if m, _ := s.Monthly(vin, time.UTC); m[0].Drives != 2 {
		t.Errorf("Monthly in UTC = %v, want the late February drive in February", m)
	}
}

func TestExports(t *testing.T) {
	s, _ := open(t)
	fill(t, s)
	var buf bytes.Buffer
	if err := s.WriteCSV(&buf, vin, Filter{}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 || rows[0][0] != "kind" || rows[0][8] != "distance_km" {
		t.Fatalf("CSV has %d rows, header %v", len(rows), rows[0])
	}
	if got := strings.Join(rows[1], ","); got != "charge,"+vin+",2026-03-02T18:00:00Z,2026-03-02T20:00:00Z,120,complete,Home,Home,,,,,,11,10,,,,,false,1,EUR" {
		t.Errorf("newest CSV row = %s", got)
	}
	buf.Reset()
	if err := s.WriteJSON(&buf, vin, Filter{Kind: activity.KindDrive}); err != nil {
		t.Fatal(err)
	}
	var back []activity.Session
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back) != 3 || *back[2].DistanceKm != 10 {
		t.Errorf("JSON export: %v, %d sessions", err, len(back))
	}
	buf.Reset()
	s.WriteJSON(&buf, "OTHER", Filter{})
	if strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("JSON export of a car without sessions = %q, want []", buf.String())
	}
}

func TestPrune(t *testing.T) {
	s, _ := open(t)
	fill(t, s)
	n, err := s.Prune(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	left, _ := s.List(vin, Filter{})
	if len(left) != 3 || left[len(left)-1].End.Before(mar) {
		t.Errorf("after prune: %v", left)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	_, path := open(t)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open = %v, want in use", err)
	}
}

// TestAppendSurvivesSIGKILL runs this test binary again as a child that
// appends a session, says so on stdout and waits; the parent kills it with
// SIGKILL, reopens the file and finds the session.
func TestAppendSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv("HISTORY_CRASH_CHILD"); path != "" {
		s, err := Open(path)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if err := s.Append(charge(mar, 42, 4.2)); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("appended")
		time.Sleep(time.Hour) // killed long before
		return
	}
	path := filepath.Join(t.TempDir(), "history.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "HISTORY_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "appended" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.List(vin, Filter{})
	if err != nil || len(got) != 1 || *got[0].EnergyAddedKWh != 42 {
		t.Fatalf("after SIGKILL: %v, %v; want the appended charge", got, err)
	}
}
