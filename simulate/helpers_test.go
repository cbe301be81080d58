package simulate

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// recordingSink keeps copies of the records it is given. It refuses the
// first failFirst records of topics V, alerts and errors.
type recordingSink struct {
	mu        sync.Mutex
	records   []telemetry.Record
	failFirst int
	failed    []string // txids refused
}

func (s *recordingSink) Handle(_ context.Context, rec *telemetry.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.Topic != telemetry.TopicConnectivity && len(s.failed) < s.failFirst {
		s.failed = append(s.failed, rec.TxID)
		return errSinkDown
	}
	c := *rec
	c.Data = append([]telemetry.Datum(nil), rec.Data...)
	c.Alerts = append([]telemetry.Alert(nil), rec.Alerts...)
	c.Errors = append([]telemetry.VehicleError(nil), rec.Errors...)
	s.records = append(s.records, c)
	return nil
}

type sinkError string

func (e sinkError) Error() string { return string(e) }

const errSinkDown = sinkError("broker away")

// byTopic returns copies of the records of one topic seen so far.
func (s *recordingSink) byTopic(topic telemetry.Topic) []telemetry.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []telemetry.Record
	for _, r := range s.records {
		if r.Topic == topic {
			out = append(out, r)
		}
	}
	return out
}

// testServer is a real ingest server on loopback with a development PKI.
type testServer struct {
	srv *ingest.Server
	pki *certs.Bundle
	url string
}

const testVIN = "5YJ3TESTVIN000001"

func startServer(t *testing.T, sink ingest.Sink) *testServer {
	t.Helper()
	pki, err := certs.NewBundle([]string{"127.0.0.1", "localhost"}, testVIN)
	if err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, pki, sink)
}

func startServerWith(t *testing.T, pki *certs.Bundle, sink ingest.Sink) *testServer {
	t.Helper()
	return startServerAt(t, pki, sink, "127.0.0.1:0")
}

func startServerAt(t *testing.T, pki *certs.Bundle, sink ingest.Sink, addr string, mutate ...func(*ingest.Config)) *testServer {
	t.Helper()
	cfg := ingest.DefaultConfig()
	cfg.Listen = addr
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := ingest.New(cfg, &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{srv: srv, pki: pki, url: "wss://" + ln.Addr().String() + "/"}
}

// carConfig returns the configuration of a car with the test VIN's
// certificate.
func (ts *testServer) carConfig() CarConfig {
	return CarConfigFor(CarConfig{URL: ts.url, TLS: &tls.Config{RootCAs: ts.pki.ServerCA.Pool()}},
		Identity{VIN: testVIN, Certificate: ts.pki.Vehicles[testVIN]})
}

func (ts *testServer) car(t *testing.T, mutate func(*CarConfig)) *Car {
	t.Helper()
	cfg := ts.carConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	car, err := NewCar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return car
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kindSuits reports whether a normalised value has the kind the catalog
// gives its field.
func kindSuits(k telemetry.Kind, v telemetry.ValueKind) bool {
	switch k {
	case telemetry.KindString:
		return v == telemetry.KindStringValue
	case telemetry.KindBool:
		return v == telemetry.KindBoolValue
	case telemetry.KindInt, telemetry.KindLong:
		return v == telemetry.KindIntValue
	case telemetry.KindDouble:
		return v == telemetry.KindFloatValue
	case telemetry.KindEnum:
		return v == telemetry.KindEnumValue
	case telemetry.KindLocation:
		return v == telemetry.KindLocationValue
	case telemetry.KindDoors:
		return v == telemetry.KindDoorsValue
	case telemetry.KindTireLocation:
		return v == telemetry.KindTiresValue
	case telemetry.KindTime:
		return v == telemetry.KindTimeValue
	}
	return false
}
