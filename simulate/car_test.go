package simulate

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// runCar runs car until the test ends.
func runCar(t *testing.T, car *Car) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- car.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return cancel
}

// ackLog records, per txid, how often the car saw it acknowledged.
type ackLog struct {
	mu   sync.Mutex
	acks map[string]int
}

func (l *ackLog) onAck(m *Message, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acks == nil {
		l.acks = map[string]int{}
	}
	l.acks[m.TxID]++
}

func (l *ackLog) check(t *testing.T, sent []*Message) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range sent {
		if n := l.acks[m.TxID]; n != 1 {
			t.Errorf("record %s acknowledged %d times from the car's view, want once", m.TxID, n)
		}
	}
	if len(l.acks) != len(sent) {
		t.Errorf("%d records acknowledged, want %d", len(l.acks), len(sent))
	}
}

// sendN sends n small V records.
func sendN(t *testing.T, car *Car, n int) []*Message {
	t.Helper()
	var out []*Message
	for i := range n {
		m, err := car.SendData(context.Background(), []telemetry.Datum{{Field: fOdometer, Value: telemetry.FloatValue(float64(1000 + i))}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// checkSinkSaw: the sink holds every record, and those the car sent again
// carry the resend mark.
func checkSinkSaw(t *testing.T, sink *recordingSink, sent []*Message, wantResent bool) {
	t.Helper()
	got := map[string]telemetry.Record{}
	for _, r := range sink.byTopic(telemetry.TopicV) {
		got[r.TxID] = r
	}
	resent := 0
	for _, m := range sent {
		r, ok := got[m.TxID]
		if !ok {
			t.Errorf("sink never saw record %s", m.TxID)
			continue
		}
		if r.VIN != testVIN || len(r.Data) != 1 || !r.Data[0].Value.Equal(m.Data[0].Value) {
			t.Errorf("sink record %+v does not match what was sent (%v)", r, m.Data)
		}
		if r.Resend {
			resent++
		}
	}
	if wantResent && resent == 0 {
		t.Error("no record reached the sink marked as a resend")
	}
}

// TestResendAfterTimeout: records the server leaves unacknowledged (its
// sink is down for the first ones) are sent again on the same connection
// once overdue; in the end each is acknowledged exactly once from the car's
// view, and the sink has them all.
func TestResendAfterTimeout(t *testing.T) {
	const k, n = 5, 20
	sink := &recordingSink{failFirst: k}
	ts := startServer(t, sink)
	var acks ackLog
	car := ts.car(t, func(c *CarConfig) {
		c.AckTimeout = 100 * time.Millisecond
		c.OnAck = acks.onAck
	})
	runCar(t, car)
	sent := sendN(t, car, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := car.Flush(ctx); err != nil {
		t.Fatalf("records still pending: %d (%v)", car.Pending(), err)
	}
	acks.check(t, sent)
	checkSinkSaw(t, sink, sent, true)
	st := car.Stats()
	if st.Sent != n || st.Acked != n || st.Resent < k || st.Connects != 1 || st.Rejected != 0 {
		t.Errorf("stats %+v: want %d sent and acknowledged, at least %d resent on one connection", st, n, k)
	}
	if srv := ts.srv.Stats(); srv.Unacknowledged != k {
		t.Errorf("server left %d records unacknowledged, want %d", srv.Unacknowledged, k)
	}
}

// TestResendAfterReconnect: without resends on timeout, what the server
// did not acknowledge is sent again when the car connects next.
func TestResendAfterReconnect(t *testing.T) {
	const k, n = 3, 10
	sink := &recordingSink{failFirst: k}
	ts := startServer(t, sink)
	var acks ackLog
	car := ts.car(t, func(c *CarConfig) {
		c.AckTimeout = -1
		c.OnAck = acks.onAck
	})
	// Records made while the car is offline wait for the connection.
	sent := sendN(t, car, n)
	stop := runCar(t, car)
	waitFor(t, "the unrefused records to be acknowledged", func() bool { return car.Stats().Acked == n-k })
	if car.Pending() != k {
		t.Fatalf("%d records pending, want the %d refused ones", car.Pending(), k)
	}
	stop()
	waitFor(t, "the car to disconnect", func() bool { return !car.Connected() })
	runCar(t, car)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := car.Flush(ctx); err != nil {
		t.Fatalf("records still pending after reconnecting: %d", car.Pending())
	}
	acks.check(t, sent)
	checkSinkSaw(t, sink, sent, true)
	if st := car.Stats(); st.Connects != 2 || st.Resent != k {
		t.Errorf("stats %+v: want two connections and %d resends", st, k)
	}
}

// TestReconnectsWithBackoff: a car whose server is not there yet keeps
// trying, and delivers what it queued once the server is up.
func TestReconnectsWithBackoff(t *testing.T) {
	pki, err := certs.NewBundle([]string{"127.0.0.1"}, testVIN)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there for now

	ts := &testServer{pki: pki, url: "wss://" + addr + "/"}
	cfg := ts.carConfig()
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 40*time.Millisecond
	car, err := NewCar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCar(t, car)
	sent := sendN(t, car, 3)
	waitFor(t, "a failed connection attempt", func() bool { return car.Err() != nil })
	if car.Connected() || car.Stats().Written != 0 {
		t.Fatalf("connected to nothing: %+v", car.Stats())
	}
	sink := &recordingSink{}
	startServerAt(t, pki, sink, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := car.Flush(ctx); err != nil {
		t.Fatalf("records pending after the server came up: %d", car.Pending())
	}
	checkSinkSaw(t, sink, sent, false)
}

// TestAnswersPings: a car that sends nothing but answers the server's
// pings stays connected across many idle timeouts.
func TestAnswersPings(t *testing.T) {
	pki, err := certs.NewBundle([]string{"127.0.0.1"}, testVIN)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerAt(t, pki, &recordingSink{}, "127.0.0.1:0", func(c *ingest.Config) {
		c.PingInterval, c.IdleTimeout = 20*time.Millisecond, 500*time.Millisecond
	})
	car := ts.car(t, nil)
	runCar(t, car)
	// Pings over three idle timeouts.
	waitFor(t, "many pings", func() bool { return car.Stats().Pings >= 75 })
	if st := car.Stats(); st.Connects != 1 || ts.srv.Stats().Connections != 1 {
		t.Errorf("car stats %+v, server %+v: want one connection kept alive by pongs", st, ts.srv.Stats())
	}
	// Still usable.
	sent := sendN(t, car, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := car.Flush(ctx); err != nil {
		t.Fatalf("record %s not acknowledged", sent[0].TxID)
	}
}

func TestNewCarValidates(t *testing.T) {
	good := CarConfig{URL: "wss://127.0.0.1:8443/", VIN: testVIN, TLS: &tlsWithCert}
	for _, tc := range []struct {
		mutate func(*CarConfig)
		want   string
	}{
		{func(c *CarConfig) { c.URL = "ws://127.0.0.1:8443/" }, "scheme must be wss"},
		{func(c *CarConfig) { c.URL = "wss:///" }, "no host"},
		{func(c *CarConfig) { c.VIN = "" }, "car vin"},
		{func(c *CarConfig) { c.TLS = &tls.Config{} }, "client certificate is required"},
		{func(c *CarConfig) { c.MinBackoff, c.MaxBackoff = time.Minute, time.Second }, "exceeds maximum"},
	} {
		c := good
		tc.mutate(&c)
		if _, err := NewCar(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewCar(%+v) = %v, want an error containing %q", c, err, tc.want)
		}
	}
	if _, err := NewCar(good); err != nil {
		t.Errorf("NewCar(good) = %v", err)
	}
}

// TestRefusedIdentity: a certificate the server does not accept is
// reported by Err with the server's answer, and the car keeps trying.
func TestRefusedIdentity(t *testing.T) {
	ts := startServer(t, &recordingSink{})
	odd, err := certs.NewAuthority("Some Other CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := odd.IssueVehicle(testVIN)
	if err != nil {
		t.Fatal(err)
	}
	cfg := CarConfigFor(ts.carConfig(), Identity{VIN: testVIN, Certificate: cert})
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	car, err := NewCar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCar(t, car)
	waitFor(t, "two refused attempts", func() bool { return car.Err() != nil && car.Stats().Connects == 0 && ts.srv.Stats().Connections == 0 })
	if err := car.Err(); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("Err() = %v, want the refused connection", err)
	}
}

func TestDuplicateTxID(t *testing.T) {
	car, err := NewCar(CarConfig{URL: "wss://127.0.0.1:1/", VIN: testVIN, TLS: &tlsWithCert, Window: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := car.NewMessage(telemetry.TopicV, nil, time.Now())
	if err := car.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	dup := &Message{Topic: m.Topic, TxID: m.TxID, MessageID: m.MessageID, frame: m.frame}
	if err := car.Send(context.Background(), dup); !errors.Is(err, ErrDuplicateTxID) {
		t.Fatalf("second Send of the same txid = %v, want ErrDuplicateTxID", err)
	}
	// The refused record gave its window slot back: one more fits.
	if err := car.Send(context.Background(), car.NewMessage(telemetry.TopicV, nil, time.Now())); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := car.Send(ctx, car.NewMessage(telemetry.TopicV, nil, time.Now())); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send into a full window = %v, want it to wait", err)
	}
	if n := car.Pending(); n != 2 {
		t.Errorf("%d pending, want 2", n)
	}
}
