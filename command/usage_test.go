package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

func fixedClock(s string) func() time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return func() time.Time { return t }
}

// noFlush never writes on its own within a test: only Flush and Close do.
const noFlush = time.Hour

func TestCountersSurviveARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "commands", command.UsageFileName)
	opts := command.CountersOptions{Now: fixedClock("2026-12-05T10:00:00Z"), FlushDelay: noFlush}
	c := command.OpenCounters(path, nil, opts)
	c.CommandSent("VIN1")
	c.CommandSent("VIN1")
	c.WakeSent("VIN1")
	c.CommandSent("VIN2")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("written before the flush delay: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	// The restart: the counts go on from the file.
	c = command.OpenCounters(path, nil, opts)
	c.CommandSent("VIN1")
	want := map[string]command.Usage{"VIN1": {Commands: 3, Wakes: 1}, "VIN2": {Commands: 1}}
	if got := c.Usage("2026-12"); !equalUsage(got, want) {
		t.Errorf("after restart %v, want %v", got, want)
	}
	if got := c.Usage("2026-11"); len(got) != 0 {
		t.Errorf("another month: %v", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := command.OpenCounters(path, nil, opts).Usage("2026-12"); !equalUsage(got, want) {
		t.Errorf("in the file %v, want %v", got, want)
	}
}

// usageIn reads the current month's usage from a usage file.
func usageIn(path string) map[string]command.Usage {
	return command.OpenCounters(path, nil, command.CountersOptions{}).Usage(command.Month(time.Now()))
}

func equalUsage(a, b map[string]command.Usage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestCountersWrittenAfterTheDelay: without Flush, counts reach the file
// by themselves once the flush delay passed.
func TestCountersWrittenAfterTheDelay(t *testing.T) {
	path := filepath.Join(t.TempDir(), command.UsageFileName)
	c := command.OpenCounters(path, nil, command.CountersOptions{FlushDelay: time.Millisecond})
	c.CommandSent("VIN1")
	deadline := time.Now().Add(10 * time.Second) // a guard against hanging
	for {
		if u := usageIn(path)["VIN1"]; u.Commands == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the count never reached the file")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCountersOfTwoProcesses: counters on one file (serve and the
// command line) see each other's counts once written, and many writers at
// once lose none.
func TestCountersOfTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), command.UsageFileName)
	opts := command.CountersOptions{FlushDelay: noFlush}
	serve, cli := command.OpenCounters(path, nil, opts), command.OpenCounters(path, nil, opts)
	serve.CommandSent("VIN1")
	cli.CommandSent("VIN1")
	cli.WakeSent("VIN1")
	if err := cli.Flush(); err != nil {
		t.Fatal(err)
	}
	month := command.Month(time.Now())
	if got := serve.Usage(month)["VIN1"]; got != (command.Usage{Commands: 2, Wakes: 1}) {
		t.Errorf("serve sees %+v, want its own command and the command line's", got)
	}

	const writers, each = 8, 40
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			c := command.OpenCounters(path, nil, opts)
			for range each {
				c.CommandSent("VIN2")
				if err := c.Flush(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := serve.Close(); err != nil {
		t.Fatal(err)
	}
	got := command.OpenCounters(path, nil, opts).Usage(month)
	if got["VIN1"] != (command.Usage{Commands: 2, Wakes: 1}) || got["VIN2"].Commands != writers*each {
		t.Errorf("file holds %+v, want VIN1 2 commands 1 wake, VIN2 %d commands", got, writers*each)
	}
}

// TestCountersPruneOldMonths: the file keeps the current month and the
// twelve before it.
func TestCountersPruneOldMonths(t *testing.T) {
	path := filepath.Join(t.TempDir(), command.UsageFileName)
	old := `{"months":{"2025-11":{"VIN1":{"commands":5,"wakes":0}},"2025-12":{"VIN1":{"commands":6,"wakes":1}},"2026-11":{"VIN1":{"commands":7,"wakes":2}}}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	c := command.OpenCounters(path, nil, command.CountersOptions{Now: fixedClock("2026-12-01T00:00:00Z"), FlushDelay: noFlush})
	if got := c.Usage("2025-11")["VIN1"].Commands; got != 5 {
		t.Errorf("loaded %d commands in 2025-11, want 5", got)
	}
	c.CommandSent("VIN1")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var f struct {
		Months map[string]map[string]command.Usage `json:"months"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Months["2025-11"]; ok {
		t.Errorf("2025-11, thirteen months ago, not pruned: %s", data)
	}
	for month, n := range map[string]int{"2025-12": 6, "2026-11": 7, "2026-12": 1} {
		if f.Months[month]["VIN1"].Commands != n {
			t.Errorf("%s: %+v, want %d commands (%s)", month, f.Months[month]["VIN1"], n, data)
		}
	}
}

// TestCountersDamagedFile: a file that does not decode is reported and
// replaced; counting goes on.
func TestCountersDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), command.UsageFileName)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	c := command.OpenCounters(path, slog.New(slog.NewTextHandler(&log, nil)), command.CountersOptions{FlushDelay: noFlush})
	if !strings.Contains(log.String(), "unreadable") {
		t.Errorf("not reported: %q", log.String())
	}
	c.CommandSent("VIN1")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := usageIn(path)["VIN1"]; got.Commands != 1 {
		t.Errorf("after the write: %+v", got)
	}
}

// TestEnginesCountIntoOneDirectory: two engines on one session directory,
// each with counters of its own (serve and the command line), command the
// car at once; the file then holds every request the car was sent.
func TestEnginesCountIntoOneDirectory(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	dir := filepath.Join(r.dir, "commands")
	var wg sync.WaitGroup
	var counters []*command.Counters
	for range 2 {
		c := command.OpenCounters(filepath.Join(dir, command.UsageFileName), nil, command.CountersOptions{FlushDelay: time.Millisecond})
		counters = append(counters, c)
		cfg := r.config()
		cfg.Metrics = c
		e, err := command.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for _, name := range []string{"flash_lights", "honk_horn", "door_lock", "flash_lights"} {
				if res := run(t, e, name, ""); !res.OK {
					t.Errorf("%s: %s", name, res.Reason)
				}
			}
		})
	}
	wg.Wait()
	for _, c := range counters {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	signed, rest, wakes := r.car.Counts()
	got := command.OpenCounters(filepath.Join(dir, command.UsageFileName), nil, command.CountersOptions{}).Usage(command.Month(time.Now()))[testVIN]
	if got.Commands != signed+rest || got.Wakes != wakes || got.Commands < 8 {
		t.Errorf("counted %+v; the car was sent %d signed and %d REST commands, %d wakes", got, signed, rest, wakes)
	}
}

// TestCLICountsItsCommands: the command line counts into the session
// directory's file, where serve's counters see it.
func TestCLICountsItsCommands(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	keyFile := filepath.Join(t.TempDir(), "private-key.pem")
	if err := fleetapi.SavePrivateKey(keyFile, r.key); err != nil {
		t.Fatal(err)
	}
	env := cliEnv(t, r)
	resolve := env.Resolve
	env.Resolve = func(ctx context.Context, f command.CLIFlags) (command.Config, *slog.Logger, error) {
		cfg, log, err := resolve(ctx, f)
		cfg.Metrics = nil // as cmd/fleet2mqtt resolves it
		return cfg, log, err
	}
	serve := command.OpenCounters(filepath.Join(r.dir, "commands", command.UsageFileName), nil, command.CountersOptions{FlushDelay: noFlush})
	for range 2 {
		var out, errOut bytes.Buffer
		args := []string{"--key", keyFile, "--token-file", r.tokenFile, "--api", r.fake.BaseURL(fleetapi.RegionNA), testVIN, "flash_lights"}
		if code := command.RunCLI(context.Background(), args, &out, &errOut, env); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	}
	signed, _, _ := r.car.Counts()
	if got := serve.Usage(command.Month(time.Now()))[testVIN]; got.Commands != signed || signed != 3 {
		t.Errorf("serve sees %+v; the car was sent %d signed commands (a handshake and two commands)", got, signed)
	}
}
