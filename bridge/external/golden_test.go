package external

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// recording passes messages on to the client and keeps copies.
type recording struct {
	next bridge.Publisher
	mu   sync.Mutex
	msgs []bridge.Message
}

func (r *recording) Publish(ctx context.Context, msgs []bridge.Message) error {
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
	recs, reference := goldenRecords(t)
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

// goldenRecords decodes the payloads of the golden vehicle frames, as the
// ingest server does, and returns the messages the reference server
// published for them.
func goldenRecords(t *testing.T) (recs []*telemetry.Record, reference []string) {
	t.Helper()
	dir := "../../testdata/vehicle-frames"
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases []struct {
			Topic       string `json:"topic"`
			TxID        string `json:"txid"`
			VIN         string `json:"vin_from_client_cert"`
			PayloadFile string `json:"payload_file"`
			Live        struct {
				ServerClosed bool `json:"server_closed_connection"`
				Publications []struct {
					Topic string `json:"topic"`
					Raw   string `json:"raw"`
				} `json:"mqtt_publications"`
			} `json:"live_server_run"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Cases {
		if c.PayloadFile == "" || c.Live.ServerClosed {
			continue
		}
		payload, err := os.ReadFile(filepath.Join(dir, c.PayloadFile))
		if err != nil {
			t.Fatal(err)
		}
		rec := new(telemetry.Record)
		if err := ingest.DecodePayload(telemetry.Topic(c.Topic), payload, rec); err != nil {
			continue // the corrupt payload and topics that are not published
		}
		rec.VIN, rec.TxID = c.VIN, c.TxID
		recs = append(recs, rec)
		for _, p := range c.Live.Publications {
			reference = append(reference, p.Topic+" "+p.Raw)
		}
	}
	if len(recs) < 10 {
		t.Fatalf("only %d golden records", len(recs))
	}
	return recs, reference
}
