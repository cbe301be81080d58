package setup

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// store owns what the wizard remembers: the state behind one lock, saved
// atomically to state.json by every update, and the application's key
// pair, which is written once and read without a lock. Nothing else in the
// package locks the state or writes its file.
type store struct {
	dir string

	mu sync.Mutex
	st *state

	key atomic.Pointer[appKey]
}

// appKey is the application's key pair with the forms of its public half
// the wizard needs.
type appKey struct {
	private   *ecdsa.PrivateKey
	publicPEM []byte
	// hex is the uncompressed point in hex, as the checks record it.
	hex string
}

func newAppKey(key *ecdsa.PrivateKey) (*appKey, error) {
	pemBytes, err := fleetapi.MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("setup key: %w", err)
	}
	hexKey, err := fleetapi.PublicKeyHex(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("setup key: %w", err)
	}
	return &appKey{private: key, publicPEM: pemBytes, hex: hexKey}, nil
}

// errNoSave, returned by an update function, keeps its changes in memory
// without writing the file: bookkeeping (a poll's time, an answer whose
// check is still running) that the next saved update carries along.
var errNoSave = errors.New("setup: change kept in memory")

// openStore loads the state and the key pair from dir, creating dir (mode
// 0700) on the first start.
func openStore(dir string) (*store, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	s := &store{dir: dir}
	var err error
	if s.st, err = loadState(join(dir, stateFile)); err != nil {
		return nil, err
	}
	if _, statErr := os.Stat(join(dir, keyFile)); statErr == nil {
		key, err := fleetapi.LoadPrivateKey(join(dir, keyFile))
		if err != nil {
			return nil, fmt.Errorf("setup key: %w", err)
		}
		k, err := newAppKey(key)
		if err != nil {
			return nil, err
		}
		s.key.Store(k)
	}
	return s, nil
}

// update runs fn on the state under the lock and then saves the state
// atomically (mode 0600). When fn fails, its error is returned and nothing
// is saved; fn must then leave the state as it found it, except that
// errNoSave keeps fn's changes in memory and update returns nil. When the
// save fails the changes stay in memory (the next update saves them) and
// the error, a local file failure (fleetapi.IsLocal), is returned.
func (s *store) update(fn func(*state) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := fn(s.st); err != nil {
		if errors.Is(err, errNoSave) {
			return nil
		}
		return err
	}
	return s.st.save(join(s.dir, stateFile))
}

// read runs fn on the state under the lock. fn must not change the state
// nor keep pointers into it.
func (s *store) read(fn func(*state)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.st)
}

// appKey returns the application's key pair, nil until it exists.
func (s *store) appKey() *appKey { return s.key.Load() }

// createKey loads the key pair from its file, creating the file first when
// there is none, and reports whether it did.
func (s *store) createKey() (created bool, err error) {
	key, created, err := fleetapi.LoadOrCreateKey(join(s.dir, keyFile))
	if err != nil {
		return false, err
	}
	k, err := newAppKey(key)
	if err != nil {
		return false, err
	}
	s.key.Store(k)
	return created, nil
}

// tokens is where the owner's OAuth tokens are kept, rotated atomically by
// fleetapi before they are used.
func (s *store) tokens() fleetapi.FileTokenStore {
	return fleetapi.FileTokenStore{Path: join(s.dir, tokenFile)}
}

// tokenSaved reports whether the owner's tokens are on disk.
func (s *store) tokenSaved() bool {
	_, err := os.Stat(join(s.dir, tokenFile))
	return err == nil
}
