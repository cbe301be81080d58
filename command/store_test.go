package command

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
)

// TestReserveIsExclusiveAcrossHolders has many holders, each with a store
// of its own on the same directory (as serve and the command line are),
// reserve counters of one session at once: every block must be distinct,
// and the cache must end at the sum of all blocks. Without the
// directory's lock, two read-modify-writes of the cache hand out the same
// block.
func TestReserveIsExclusiveAcrossHolders(t *testing.T) {
	dir := t.TempDir()
	st := protocol.State{VehiclePublicKey: bytes.Repeat([]byte{4}, 65), Epoch: bytes.Repeat([]byte{7}, protocol.EpochSize)}
	const holders, each, n = 8, 25, 16
	var (
		mu     sync.Mutex
		blocks [][2]uint32
		wg     sync.WaitGroup
	)
	for range holders {
		wg.Go(func() {
			s := sessionStore{dir: dir}
			for range each {
				from, to, err := s.reserve("VIN1", protocol.DomainInfotainment, st, n)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				blocks = append(blocks, [2]uint32{from, to})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(blocks, func(a, b [2]uint32) int { return int(a[0]) - int(b[0]) })
	for i, b := range blocks {
		if b[1]-b[0] != n {
			t.Fatalf("block %v is not %d counters", b, n)
		}
		if i > 0 && b[0] < blocks[i-1][1] {
			t.Fatalf("blocks %v and %v overlap: two holders would sign with the same counters", blocks[i-1], b)
		}
	}
	cached, ok, err := sessionStore{dir: dir}.load("VIN1", protocol.DomainInfotainment)
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if want := uint32(holders * each * n); cached.Counter != want {
		t.Errorf("cached counter %d, want %d", cached.Counter, want)
	}
}

// TestReserveStartsAboveTheCarAndTheCache: a block starts above the
// session's own counter and above the cache's, but only a cache of the
// same session (vehicle key and epoch) counts.
func TestReserveStartsAboveTheCarAndTheCache(t *testing.T) {
	s := sessionStore{dir: t.TempDir()}
	key := bytes.Repeat([]byte{4}, 65)
	epochA, epochB := bytes.Repeat([]byte{1}, protocol.EpochSize), bytes.Repeat([]byte{2}, protocol.EpochSize)
	d := protocol.DomainVehicleSecurity
	if from, to, err := s.reserve("VIN1", d, protocol.State{VehiclePublicKey: key, Epoch: epochA, Counter: 10}, 100); err != nil || from != 10 || to != 110 {
		t.Fatalf("first block (%d, %d] %v, want (10, 110]", from, to, err)
	}
	// The car's counter is ahead of the cache (a refreshed session).
	if from, to, _ := s.reserve("VIN1", d, protocol.State{VehiclePublicKey: key, Epoch: epochA, Counter: 500}, 100); from != 500 || to != 600 {
		t.Errorf("block (%d, %d], want (500, 600]", from, to)
	}
	// Another process's session, behind the cache.
	if from, to, _ := s.reserve("VIN1", d, protocol.State{VehiclePublicKey: key, Epoch: epochA, Counter: 3}, 100); from != 600 || to != 700 {
		t.Errorf("block (%d, %d], want (600, 700]", from, to)
	}
	// A new epoch (the car rebooted): the old counters do not count.
	if from, to, _ := s.reserve("VIN1", d, protocol.State{VehiclePublicKey: key, Epoch: epochB, Counter: 2}, 100); from != 2 || to != 102 {
		t.Errorf("block in a new epoch (%d, %d], want (2, 102]", from, to)
	}
	// Near the end of the counters the block is shorter.
	if from, to, _ := s.reserve("VIN1", d, protocol.State{VehiclePublicKey: key, Epoch: epochB, Counter: ^uint32(0) - 5}, 100); from != ^uint32(0)-5 || to != ^uint32(0) {
		t.Errorf("last block (%d, %d]", from, to)
	}
	// In memory only: nothing written, the block starts at the session.
	if from, to, err := (sessionStore{}).reserve("VIN1", d, protocol.State{Counter: 7}, 100); err != nil || from != 7 || to != 107 {
		t.Errorf("in memory (%d, %d] %v", from, to, err)
	}
}
