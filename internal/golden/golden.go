// Package golden reads the golden vehicle frames of testdata/vehicle-frames
// for tests: the records the ingest server decodes from them and what
// Tesla's reference server published for them over MQTT.
package golden

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Dir is the directory of the golden frames.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "vehicle-frames")
}

// Records decodes the payloads of the golden frames that the reference
// server published, as the ingest server does, with the VIN of the client
// certificate and the frame's txid. reference lists every message the
// reference server published for them, as "topic payload".
func Records(t testing.TB) (recs []*telemetry.Record, reference []string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(Dir(), "manifest.json"))
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
		payload, err := os.ReadFile(filepath.Join(Dir(), c.PayloadFile))
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
