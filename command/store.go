package command

import (
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

func (s sessionStore) remove(vin string, d protocol.Domain) {
	if p, use := s.path(vin, d); use {
		_ = os.Remove(p)
	}
}
