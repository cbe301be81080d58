package command

import (
	"fmt"
	"sync"
	"time"
)

// RateLimit bounds how many commands (wake-ups included) one car is sent,
// so that an automation loop cannot burn Tesla credit: a token bucket of
// Burst tokens that refills at Commands per Per.
//
// The default, 20 commands per 10 minutes with a burst of 15, is well
// inside Tesla's own limits (30 commands and 3 wakes a minute per car) and
// costs at most about $86 a month per car even if used in full (Tesla
// bills 1,000 commands per US$1); a person pressing buttons never meets it,
// a loop meets it within seconds.
type RateLimit struct {
	// Commands per Per refill the bucket; 0 disables the limit.
	Commands int           `yaml:"commands"`
	Per      time.Duration `yaml:"per"`
	// Burst is how many commands may go back to back.
	Burst int `yaml:"burst"`
}

// DefaultRateLimit is the limit when none is configured.
var DefaultRateLimit = RateLimit{Commands: 20, Per: 10 * time.Minute, Burst: 15}

// Validate reports a limit that cannot work.
func (l RateLimit) Validate() error {
	if l.Commands < 0 || l.Burst < 0 || l.Per < 0 {
		return fmt.Errorf("rate limit: commands, per and burst must not be negative")
	}
	if l.Commands > 0 && (l.Per <= 0 || l.Burst <= 0) {
		return fmt.Errorf("rate limit: %d commands need a positive period and burst", l.Commands)
	}
	return nil
}

// bucket is one car's token bucket.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends a token, or says how long until one is available.
func (b *bucket) take(l RateLimit, now time.Time) (ok bool, wait time.Duration) {
	return b.check(l, now, true)
}

// spent says how long until a token is available (0: one is), spending
// none.
func (b *bucket) spent(l RateLimit, now time.Time) (wait time.Duration) {
	_, wait = b.check(l, now, false)
	return wait
}

func (b *bucket) check(l RateLimit, now time.Time, spend bool) (ok bool, wait time.Duration) {
	if l.Commands == 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rate := float64(l.Commands) / l.Per.Seconds() // tokens per second
	if b.last.IsZero() {
		b.tokens = float64(l.Burst)
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(float64(l.Burst), b.tokens+d*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		if spend {
			b.tokens--
		}
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// Metrics is told of everything Tesla bills: each command request to the
// Fleet API (signed_command, session handshakes included, or a REST
// command) and each wake_up. The lead wires it to Prometheus; Counters is
// a ready implementation that keeps monthly totals.
type Metrics interface {
	CommandSent(vin string)
	WakeSent(vin string)
}
