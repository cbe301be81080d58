package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Usage is one car's billed requests in one month.
type Usage struct {
	Commands int `json:"commands"`
	Wakes    int `json:"wakes"`
}

func (u Usage) plus(v Usage) Usage {
	return Usage{Commands: u.Commands + v.Commands, Wakes: u.Wakes + v.Wakes}
}

// months holds usage by month ("2026-12") and VIN.
type months map[string]map[string]Usage

func (m months) add(month, vin string, u Usage) {
	cars := m[month]
	if cars == nil {
		cars = make(map[string]Usage)
		m[month] = cars
	}
	cars[vin] = cars[vin].plus(u)
}

// UsageFileName is the file, in the session cache directory
// (Config.SessionDir), where OpenCounters keeps the monthly counts.
const UsageFileName = "usage.json"

// Defaults of CountersOptions.
const (
	// DefaultFlushDelay: counts are written at most this long after
	// they were made, so that a burst of commands costs one write.
	DefaultFlushDelay = 10 * time.Second
	// DefaultKeepMonths: the current month and the twelve before it.
	DefaultKeepMonths = 13
)

// CountersOptions configure OpenCounters.
type CountersOptions struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// FlushDelay is how long counts may wait in memory before they are
	// written; DefaultFlushDelay when 0.
	FlushDelay time.Duration
	// KeepMonths is how many months the file keeps, the current one
	// included; older ones are dropped when it is written.
	// DefaultKeepMonths when 0.
	KeepMonths int
}

// Counters counts billed requests per car per calendar month (UTC), for
// /metrics and the setup page. It is safe for concurrent use.
//
// Counters made by OpenCounters keep the counts in a file, so that they
// survive a restart and every process that commands the cars adds to the
// same counts (fleet2mqtt serve and `fleet2mqtt command`). Counts are
// written at most FlushDelay after they were made, and by Flush and
// Close. A write happens under the directory's lock (lockDir, shared with
// the session cache): it reads the file again, adds what was counted
// since the last write and replaces the file atomically, so that two
// processes never lose each other's counts. Usage reads the file again
// when another process changed it.
type Counters struct {
	now   func() time.Time
	path  string // "": in memory only
	delay time.Duration
	keep  int
	log   *slog.Logger

	mu      sync.Mutex
	saved   months      // the file as last read or written
	stamp   fs.FileInfo // of that file; nil before
	pending months      // counted here, not yet written
	timer   *time.Timer
	closed  bool
}

// NewCounters returns empty counters kept in memory only; now is time.Now
// when nil.
func NewCounters(now func() time.Time) *Counters {
	c := newCounters(nil, CountersOptions{Now: now})
	return c
}

func newCounters(log *slog.Logger, o CountersOptions) *Counters {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FlushDelay <= 0 {
		o.FlushDelay = DefaultFlushDelay
	}
	if o.KeepMonths <= 0 {
		o.KeepMonths = DefaultKeepMonths
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Counters{now: o.Now, delay: o.FlushDelay, keep: o.KeepMonths, log: log,
		saved: make(months), pending: make(months)}
}

// OpenCounters returns counters kept in path, normally
// <SessionDir>/UsageFileName, with the counts the file holds. A missing
// file starts at zero; an unreadable one is reported to log and counting
// goes on (the next write replaces it), as is a file that cannot be
// written; nil log discards. Close writes what is left.
func OpenCounters(path string, log *slog.Logger, o CountersOptions) *Counters {
	c := newCounters(log, o)
	c.path = path
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reloadLocked(); err != nil {
		c.log.Warn("vehicle command counts unreadable; counting from zero", "file", path, "err", err)
	}
	return c
}

// Month names the calendar month of t as Counters keys it ("2026-12").
func Month(t time.Time) string { return t.UTC().Format("2006-01") }

// CommandSent implements Metrics.
func (c *Counters) CommandSent(vin string) { c.count(vin, Usage{Commands: 1}) }

// WakeSent implements Metrics.
func (c *Counters) WakeSent(vin string) { c.count(vin, Usage{Wakes: 1}) }

func (c *Counters) count(vin string, u Usage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending.add(Month(c.now()), vin, u)
	if c.path != "" && c.timer == nil && !c.closed {
		c.timer = time.AfterFunc(c.delay, c.flushLater)
	}
}

func (c *Counters) flushLater() {
	if err := c.Flush(); err != nil {
		c.log.Warn("could not write the vehicle command counts; trying again later", "file", c.path, "err", err)
	}
}

// Usage returns every car's usage in month (see Month): what the file
// holds, read again when another process changed it, plus what this
// process counted since its last write.
func (c *Counters) Usage(month string) map[string]Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path != "" {
		if err := c.reloadLocked(); err != nil {
			c.log.Debug("vehicle command counts unreadable", "file", c.path, "err", err)
		}
	}
	out := maps.Clone(c.saved[month])
	if out == nil {
		out = make(map[string]Usage, len(c.pending[month]))
	}
	for vin, u := range c.pending[month] {
		out[vin] = out[vin].plus(u)
	}
	return out
}

// Flush writes the counts made since the last write now. Without a file
// it does nothing.
func (c *Counters) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.path == "" || len(c.pending) == 0 {
		return nil
	}
	err := c.writeLocked()
	if err != nil && !c.closed {
		// Keep the counts and try again later.
		c.timer = time.AfterFunc(c.delay, c.flushLater)
	}
	return err
}

// Close writes what is left; counts made afterwards stay in memory until
// the next Flush.
func (c *Counters) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Flush()
}

// usageFile is the file's content.
type usageFile struct {
	// Months: "2026-12" → VIN → usage.
	Months months `json:"months"`
}

// reloadLocked reads the file into saved when it changed since it was
// last read.
func (c *Counters) reloadLocked() error {
	fi, err := os.Stat(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.stamp != nil && os.SameFile(c.stamp, fi) && c.stamp.ModTime().Equal(fi.ModTime()) && c.stamp.Size() == fi.Size() {
		// Unchanged: every write replaces the file by a new one.
		return nil
	}
	m, err := readUsage(c.path)
	if err != nil {
		return err
	}
	c.saved, c.stamp = m, fi
	return nil
}

func readUsage(path string) (months, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return make(months), nil
	}
	if err != nil {
		return nil, err
	}
	var f usageFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Months == nil {
		f.Months = make(months)
	}
	return f.Months, nil
}

// writeLocked adds pending to the file under the directory's lock,
// dropping months older than keep, and replaces it atomically.
func (c *Counters) writeLocked() error {
	dir := filepath.Dir(c.path)
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := readUsage(c.path)
	if err != nil {
		// A damaged file: its counts are lost, ours are not.
		c.log.Warn("vehicle command counts unreadable; replacing the file", "file", c.path, "err", err)
		m = make(months)
	}
	for month, cars := range c.pending {
		for vin, u := range cars {
			m.add(month, vin, u)
		}
	}
	oldest := Month(time.Date(c.now().UTC().Year(), c.now().UTC().Month()-time.Month(c.keep-1), 1, 0, 0, 0, 0, time.UTC))
	for month := range m {
		if month < oldest {
			delete(m, month)
		}
	}
	data, err := json.Marshal(usageFile{Months: m})
	if err != nil {
		return err
	}
	if err := fleetapi.WriteFileAtomic(c.path, data, 0o600); err != nil {
		return err
	}
	c.saved, c.pending = m, make(months)
	if fi, err := os.Stat(c.path); err == nil {
		c.stamp = fi
	}
	return nil
}
