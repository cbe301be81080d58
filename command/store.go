package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// sessionStore keeps each (VIN, domain) session's resumable state in
// <dir>/<VIN>-<domain>.json, mode 0600, replaced atomically. The state is
// protocol.State: the domain's public key, epoch, counter and clock, none
// of it secret (the session key is derived again from our private key).
// An empty dir keeps sessions in memory only.
//
// The directory is shared by every process that commands the cars with
// the same key (fleet2mqtt serve and `fleet2mqtt command`): the counter
// in a cached state is the highest counter any of them may have signed
// with, and reserve hands out blocks above it under the directory's lock
// (lockDir), so that no two processes ever sign with the same counter.
type sessionStore struct {
	dir string
}

func domainFileName(d protocol.Domain) string {
	switch d {
	case protocol.DomainVehicleSecurity:
		return "vcsec"
	case protocol.DomainInfotainment:
		return "infotainment"
	}
	return fmt.Sprintf("domain%d", int32(d))
}

func (s sessionStore) path(vin string, d protocol.Domain) (string, bool) {
	// A VIN is 17 letters and digits; anything that could leave the
	// directory is not stored.
	if s.dir == "" || vin == "" || strings.ContainsAny(vin, `/\.`) {
		return "", false
	}
	return filepath.Join(s.dir, vin+"-"+domainFileName(d)+".json"), true
}

// load returns the cached state, or ok false when there is none.
func (s sessionStore) load(vin string, d protocol.Domain) (st protocol.State, ok bool, err error) {
	p, use := s.path(vin, d)
	if !use {
		return st, false, nil
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read cached session: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, false, fmt.Errorf("cached session %s: %w", p, err)
	}
	return st, true, nil
}

// reserve takes the next block of n counters for st's session: under the
// directory's lock, the block starts above both st.Counter and the cached
// counter of the same session (the same vehicle key and epoch: another
// process may be signing in it), and the cache is written with the
// block's end. It returns from, the counter to continue after, and to,
// the last counter of the block. With an empty dir nothing is written
// and the block starts at st.Counter. When the cache cannot be written
// the block is still returned, with the error.
func (s sessionStore) reserve(vin string, d protocol.Domain, st protocol.State, n uint32) (from, to uint32, err error) {
	from = st.Counter
	if _, use := s.path(vin, d); !use {
		return from, from + min(n, ^uint32(0)-from), nil
	}
	unlock, err := lockDir(s.dir)
	if err != nil {
		return from, from + min(n, ^uint32(0)-from), fmt.Errorf("reserve counters: %w", err)
	}
	defer unlock()
	if cached, ok, _ := s.load(vin, d); ok && cached.Counter > from &&
		bytes.Equal(cached.Epoch, st.Epoch) && bytes.Equal(cached.VehiclePublicKey, st.VehiclePublicKey) {
		from = cached.Counter
	}
	to = from + min(n, ^uint32(0)-from)
	st.Counter = to
	return from, to, s.save(vin, d, st)
}

func (s sessionStore) save(vin string, d protocol.Domain, st protocol.State) error {
	p, use := s.path(vin, d)
	if !use {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("cache session: %w", err)
	}
	return fleetapi.WriteFileAtomic(p, data, 0o600)
}

// lockPath is the file lockDir locks in dir.
func lockPath(dir string) string { return filepath.Join(dir, ".lock") }
