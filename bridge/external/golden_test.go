package external

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/golden"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// recording passes messages on to the client and keeps copies.
type recording struct {
	next pubsub.Publisher
	mu   sync.Mutex
	msgs []pubsub.Message
}

func (r *recording) Publish(ctx context.Context, msgs []pubsub.Message) error {
	r.mu.Lock()
	for _, m := range msgs {
		m.Payload = slices.Clone(m.Payload)
		r.msgs = append(r.msgs, m)
	}
	r.mu.Unlock()
	return r.next.Publish(ctx, msgs)
}

// TestGoldenThroughMosquitto runs every golden vehicle record through the
// bridge, with both layouts on, into a real mosquitto through this client,
// and checks that a QoS 1 subscriber receives every message the bridge
// published, and that the compatibility messages equal what Tesla's
// reference server published for the same frames.
func TestGoldenThroughMosquitto(t *testing.T) {
	broker := testenv.Mosquitto(t)
	sub := subscribe(t, broker.URL(), "#", 0)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)

	cfg := bridge.DefaultConfig()
	cfg.Compat.Enabled = true
	cfg.StateInterval = 0
	rec := &recording{next: c}
	br, err := bridge.New(cfg, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, reference := golden.Records(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, r := range recs {
		if err := br.Handle(ctx, r); err != nil {
			t.Fatalf("Handle %s: %v", r.TxID, err)
		}
	}

	// Every message arrives, as published.
	want := map[string]int{}
	var compat []string
	for _, m := range rec.msgs {
		want[m.Topic+" "+string(m.Payload)]++
		if strings.HasPrefix(m.Topic, cfg.Compat.Base+"/") {
			compat = append(compat, m.Topic+" "+string(m.Payload))
		}
	}
	sub.waitFor(t, "every message of the golden records", func(msgs []received) bool {
		got := map[string]int{}
		for _, m := range msgs {
			got[m.topic+" "+m.payload]++
		}
		for k, n := range want {
			if got[k] < n {
				return false
			}
		}
		return true
	})
	slices.Sort(compat)
	slices.Sort(reference)
	if !slices.Equal(compat, reference) {
		t.Errorf("compatibility layout differs from the reference server's output\n got %q\nwant %q", compat, reference)
	}
	for _, k := range []string{
		"tesla/5YJ3TESTVIN000001/Soc 79.125",
		"tesla/5YJ3TESTVIN000001/Gear D",
		"tesla/5YJ3TESTVIN000001/PackCurrent 0.0015",
		"tesla/5YJ3TESTVIN000001/ChargeAmps None",
	} {
		if want[k] == 0 {
			t.Errorf("the bridge published no %q", k)
		}
	}
}
