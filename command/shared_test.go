package command_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// countingTransport records the counter of every signed command it
// carries, per domain.
type countingTransport struct {
	command.Transport
	mu       sync.Mutex
	counters map[string][]uint32 // domain → counters signed
}

func (c *countingTransport) SignedCommand(ctx context.Context, vin string, message []byte) ([]byte, error) {
	var m universalmessage.RoutableMessage
	if err := proto.Unmarshal(message, &m); err != nil {
		return nil, err
	}
	if hmac := m.GetSignatureData().GetHMAC_PersonalizedData(); hmac != nil {
		c.mu.Lock()
		if c.counters == nil {
			c.counters = make(map[string][]uint32)
		}
		d := m.GetToDestination().GetDomain().String()
		c.counters[d] = append(c.counters[d], hmac.GetCounter())
		c.mu.Unlock()
	}
	return c.Transport.SignedCommand(ctx, vin, message)
}

// TestTwoProcessesNeverShareACounter: serve and the command line share
// the session cache. Two engines on one cache directory take turns
// commanding the car, each resuming the session the other cached; no
// counter may be signed by both (the car would refuse the second as a
// replay), and every command is executed.
func TestTwoProcessesNeverShareACounter(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	var ta, tb countingTransport
	ta.Transport, tb.Transport = r.owner, r.owner
	engines := make([]*command.Engine, 2)
	for i, tr := range []*countingTransport{&ta, &tb} {
		cfg := r.config()
		cfg.Transport = tr
		e, err := command.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		engines[i] = e
	}
	// A, B, A, B, …: each engine's session falls behind the other's, is
	// refreshed from the car's fault, and reserves counters again.
	for i := range 8 {
		for _, name := range []string{"flash_lights", "door_lock"} { // infotainment, vehicle security
			mustOK(t, run(t, engines[i%2], name, ""))
		}
	}
	for domain, a := range ta.counters {
		b := tb.counters[domain]
		if len(a) == 0 || len(b) == 0 {
			t.Fatalf("%s: engine A signed %v, B %v: both should have", domain, a, b)
		}
		for _, c := range a {
			if slices.Contains(b, c) {
				t.Errorf("%s: counter %d signed by both engines (A %v, B %v)", domain, c, a, b)
			}
		}
	}
	if st := r.car.State(); st.Flashes != 8 {
		t.Errorf("%d flashes, want 8", st.Flashes)
	}
}

// TestConcurrentEnginesShareTheCache: two engines on one cache directory
// command the car at the same moment; every command is executed (a
// command whose counter the other engine overtook is refreshed and
// retried), and no counter is signed twice.
func TestConcurrentEnginesShareTheCache(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	trs := []*countingTransport{{Transport: r.owner}, {Transport: r.owner}}
	var wg sync.WaitGroup
	for _, tr := range trs {
		cfg := r.config()
		cfg.Transport = tr
		e, err := command.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range 10 {
				if res := run(t, e, "flash_lights", ""); !res.OK {
					t.Errorf("flash_lights: %s (fault %s)", res.Reason, res.Fault)
				}
			}
		})
	}
	wg.Wait()
	// Within an engine counters only grow: any counter seen twice was
	// signed by both.
	seen := make(map[string]bool)
	for _, tr := range trs {
		for domain, cs := range tr.counters {
			for _, c := range cs {
				k := fmt.Sprint(domain, " ", c)
				if seen[k] {
					t.Errorf("%s counter %d signed twice", domain, c)
				}
				seen[k] = true
			}
		}
	}
	if st := r.car.State(); st.Flashes != 20 {
		t.Errorf("%d flashes, want 20", st.Flashes)
	}
}
