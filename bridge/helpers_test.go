package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// recorder is a Publisher that keeps copies of what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []pubsub.Message
	err  error // returned by Publish when set
}

func (r *recorder) Publish(_ context.Context, msgs []pubsub.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	for _, m := range msgs {
		m.Payload = slices.Clone(m.Payload)
		r.msgs = append(r.msgs, m)
	}
	return nil
}

func (r *recorder) take() []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

// discard is a Publisher that accepts everything and keeps nothing.
type discard struct{}

func (discard) Publish(context.Context, []pubsub.Message) error { return nil }

// line renders a message for comparisons and golden files.
func line(m pubsub.Message) string {
	return fmt.Sprintf("%s qos=%d retain=%t %s", m.Topic, m.QoS, m.Retain, m.Payload)
}

func lines(msgs []pubsub.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = line(m)
	}
	return out
}

// manifest is the part of testdata/vehicle-frames/manifest.json the bridge
// tests read.
type manifest struct {
	Generator struct {
		LiveConnectivityEvents struct {
			MQTTPublications []publication `json:"mqtt_publications"`
			Records          []struct {
				VIN     string `json:"vin"`
				Payload string `json:"payload_after_server_transforms_b64"`
			} `json:"records_on_connect_and_disconnect"`
		} `json:"live_connectivity_events"`
	} `json:"generator"`
	Cases []goldenCase `json:"cases"`
}

type goldenCase struct {
	Name        string `json:"name"`
	Topic       string `json:"topic"`
	VIN         string `json:"vin_from_client_cert"`
	PayloadFile string `json:"payload_file"`
	Live        struct {
		ServerClosed     bool          `json:"server_closed_connection"`
		MQTTPublications []publication `json:"mqtt_publications"`
	} `json:"live_server_run"`
}

type publication struct {
	Topic    string `json:"topic"`
	QoS      byte   `json:"qos"`
	Retained bool   `json:"retained"`
	Raw      string `json:"raw"`
}

func (p publication) line() string {
	return line(pubsub.Message{Topic: p.Topic, QoS: p.QoS, Retain: p.Retained, Payload: []byte(p.Raw)})
}

const framesDir = "../testdata/vehicle-frames"

func loadManifest(t testing.TB) manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(framesDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// record decodes a golden case's payload as the ingest server would. ok is
// false for cases without a decodable payload.
func (c goldenCase) record(t testing.TB) (rec *telemetry.Record, ok bool) {
	t.Helper()
	if c.PayloadFile == "" || c.Topic == "" {
		return nil, false
	}
	payload, err := os.ReadFile(filepath.Join(framesDir, c.PayloadFile))
	if err != nil {
		t.Fatal(err)
	}
	rec = new(telemetry.Record)
	if err := ingest.DecodePayload(telemetry.Topic(c.Topic), payload, rec); err != nil {
		return nil, false
	}
	rec.VIN = c.VIN
	return rec, true
}

// connectivityRecords decodes the records the reference server made when
// the test vehicle connected and disconnected.
func (m manifest) connectivityRecords(t testing.TB) []*telemetry.Record {
	t.Helper()
	var recs []*telemetry.Record
	for _, r := range m.Generator.LiveConnectivityEvents.Records {
		payload, err := base64.StdEncoding.DecodeString(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		rec := new(telemetry.Record)
		if err := ingest.DecodePayload(telemetry.TopicConnectivity, payload, rec); err != nil {
			t.Fatal(err)
		}
		rec.VIN = r.VIN
		recs = append(recs, rec)
	}
	return recs
}

// newTestBridge returns a bridge publishing into a recorder.
func newTestBridge(t testing.TB, cfg Config) (*Bridge, *recorder) {
	t.Helper()
	r := new(recorder)
	b, err := New(cfg, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, r
}

func diffLines(t *testing.T, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("messages differ\n got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
}
