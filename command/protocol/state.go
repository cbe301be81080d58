package protocol

import (
	"bytes"
	"fmt"
	"time"
)

// State is what a Session needs to resume without a new handshake. Nothing
// in it is secret: K is derived again from the application's private key
// and the domain's public key, so a cached State can be written to disk.
type State struct {
	VehiclePublicKey []byte `json:"vehicle_public_key"`
	Epoch            []byte `json:"epoch"`
	Counter          uint32 `json:"counter"`
	// ClockZeroUnixMilli is the local time, in Unix milliseconds, at which
	// the domain's clock read zero.
	ClockZeroUnixMilli int64  `json:"clock_zero_unix_ms"`
	LastClock          uint32 `json:"last_clock"`
}

// State returns the session's resumable state; ok is false before a
// handshake.
func (s *Session) State() (st State, ok bool) {
	if !s.established {
		return State{}, false
	}
	return State{
		VehiclePublicKey:   bytes.Clone(s.vehicleKey),
		Epoch:              bytes.Clone(s.epoch),
		Counter:            s.counter,
		ClockZeroUnixMilli: s.clockZero.UnixMilli(),
		LastClock:          s.lastClock,
	}, true
}

// Restore resumes the session from a cached State. If the cache is stale
// the vehicle answers the next command with a fault carrying fresh session
// info, which costs no more than a handshake would have.
func (s *Session) Restore(st State) error {
	if len(st.Epoch) != EpochSize {
		return fmt.Errorf("cached session has a %d-byte epoch; want %d", len(st.Epoch), EpochSize)
	}
	k, err := SharedKey(s.priv, st.VehiclePublicKey)
	if err != nil {
		return fmt.Errorf("cached session: %w", err)
	}
	s.vehicleKey = bytes.Clone(st.VehiclePublicKey)
	s.k = k
	s.commandKey = CommandKey(k)
	s.epoch = bytes.Clone(st.Epoch)
	s.counter = st.Counter
	s.clockZero = time.UnixMilli(st.ClockZeroUnixMilli)
	s.lastClock = st.LastClock
	s.established = true
	return nil
}

// SkipCounter moves the session's counter forward to counter, so that the
// next command is signed with counter+1; it never moves it back. The
// command engine uses it to step over counters another process (sharing
// the cached session) may have used.
func (s *Session) SkipCounter(counter uint32) {
	if counter > s.counter {
		s.counter = counter
	}
}
