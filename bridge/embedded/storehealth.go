package embedded

import (
	"fmt"
	"sync"
	"time"
)

// Back-off of the log line about failing saves: the first failure is
// logged at once, then the interval between lines doubles up to the
// maximum, so that a full or read-only disk does not flood the log.
const (
	saveLogFirstInterval = time.Minute
	saveLogMaxInterval   = time.Hour
)

// PersistStatus is how keeping retained messages on disk goes.
type PersistStatus struct {
	// Enabled is Config.Persist.
	Enabled bool
	// Failing is set while the last save failed: retained messages that
	// changed since FailingSince are not on disk.
	Failing      bool
	FailingSince time.Time
	// LastError is the last save's error, "" when it succeeded.
	LastError string
	// Failures counts the saves that failed since the broker started.
	Failures int64
}

// Err says that retained messages are not on disk, when the last save
// failed (after Close: the final one, so the changes since FailingSince
// are lost); nil otherwise.
func (s PersistStatus) Err() error {
	if !s.Failing {
		return nil
	}
	return fmt.Errorf("retained MQTT messages not saved at shutdown (failing since %s): %s",
		s.FailingSince.Format(time.RFC3339), s.LastError)
}

// saveHealth follows the store's saves for the log, /healthz and the
// metrics. It is safe for concurrent use.
type saveHealth struct {
	mu       sync.Mutex
	failing  bool
	since    time.Time
	lastErr  string
	failures int64
	loggedAt time.Time     // when the failure was last logged
	interval time.Duration // until the next line
}

// saved notes a save's outcome at now. It reports what to log: a failure
// (at once, then backing off), or that saving works again.
func (h *saveHealth) saved(err error, now time.Time) (logFailure, logRecovered bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		logRecovered = h.failing
		h.failing, h.lastErr, h.interval = false, "", 0
		return false, logRecovered
	}
	h.failures++
	h.lastErr = err.Error()
	if !h.failing {
		h.failing, h.since = true, now
		h.loggedAt, h.interval = now, saveLogFirstInterval
		return true, false
	}
	if now.Sub(h.loggedAt) >= h.interval {
		h.loggedAt = now
		h.interval = min(2*h.interval, saveLogMaxInterval)
		return true, false
	}
	return false, false
}

func (h *saveHealth) status() PersistStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return PersistStatus{Enabled: true, Failing: h.failing, FailingSince: h.since, LastError: h.lastErr, Failures: h.failures}
}

// Persistence reports how keeping retained messages on disk goes.
func (b *Broker) Persistence() PersistStatus {
	if b.store == nil {
		return PersistStatus{}
	}
	return b.store.health.status()
}

// saveNow saves what changed and notes the outcome, logging a failure as
// the back-off allows (see saveHealth); it returns the save's error.
func (b *Broker) saveNow() error {
	b.fan.flushRetained()
	err := b.store.save(b.server.Topics.Retained.GetAll)
	logFailure, logRecovered := b.store.health.saved(err, time.Now())
	switch {
	case logFailure:
		st := b.store.health.status()
		b.log.Error("could not save retained MQTT messages; they are kept in memory and saved again every persist interval (this line backs off)",
			"error", err, "failures", st.Failures, "failing_since", st.FailingSince.Format(time.RFC3339))
	case logRecovered:
		b.log.Info("retained MQTT messages saved again")
	}
	return err
}
