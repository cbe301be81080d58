package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const goldenDir = "../testdata/vehicle-frames"

const testVIN = "5YJ3TESTVIN000001"

// recorder is a Sink that keeps copies of what it is given and can be told
// to fail.
type recorder struct {
	mu      sync.Mutex
	records []telemetry.Record
	fail    error
	notify  chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1024)} }

func (r *recorder) Handle(_ context.Context, rec *telemetry.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil && rec.Topic != telemetry.TopicConnectivity {
		return r.fail
	}
	c := *rec
	c.Data = append([]telemetry.Datum(nil), rec.Data...)
	c.Alerts = append([]telemetry.Alert(nil), rec.Alerts...)
	c.Errors = append([]telemetry.VehicleError(nil), rec.Errors...)
	r.records = append(r.records, c)
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

// byTopic returns the records of one topic seen so far.
func (r *recorder) byTopic(topic telemetry.Topic) []telemetry.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []telemetry.Record
	for _, rec := range r.records {
		if rec.Topic == topic {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testServer struct {
	srv    *Server
	sink   *recorder
	pki    *certs.Bundle
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startServer(t *testing.T, mutate func(*Config), opts ...Option) *testServer {
	t.Helper()
	sink := newRecorder()
	ts := startServerWithSink(t, sink, mutate, opts...)
	ts.sink = sink
	return ts
}

// startServerWithSink starts a server that hands its records to sink.
func startServerWithSink(t *testing.T, sink Sink, mutate func(*Config), opts ...Option) *testServer {
	t.Helper()
	pki, err := certs.NewBundle([]string{"127.0.0.1", "localhost"}, testVIN)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg, &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}, sink, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, pki: pki, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

func (ts *testServer) clientTLS(cert *tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ts.pki.ServerCA.Cert)
	c := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// dial connects as a car with the given client certificate.
func (ts *testServer) dial(t *testing.T, cert *tls.Certificate) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: ts.clientTLS(cert), HandshakeTimeout: 5 * time.Second}
	h := http.Header{}
	h.Set("X-TXID", "00000000-0000-4000-8000-000000000001")
	h.Set("X-Network-Interface", "wifi")
	h.Set("Version", "1.0.0")
	ws, resp, err := d.Dial("wss://"+ts.addr+"/", h)
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

func (ts *testServer) car(t *testing.T) *websocket.Conn {
	t.Helper()
	cert := ts.pki.Vehicles[testVIN]
	ws, _, err := ts.dial(t, &cert)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return ws
}

// exchange sends one binary frame and reads one response.
func exchange(t *testing.T, ws *websocket.Conn, frame []byte) []byte {
	t.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readResponse(t, ws)
}

func readResponse(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if kind != websocket.BinaryMessage {
		t.Fatalf("response is message type %d, want binary", kind)
	}
	return msg
}

// goldenCase is the part of a manifest case these tests use.
type goldenCase struct {
	Name      string `json:"name"`
	File      string `json:"file"`
	Topic     string `json:"topic"`
	TxID      string `json:"txid"`
	Responses []struct {
		File    string `json:"file"`
		Kind    string `json:"kind"`
		Decoded struct {
			TxID  string `json:"txid"`
			Topic string `json:"topic"`
			Type  int    `json:"message_type"`
		} `json:"decoded"`
	} `json:"expected_server_responses"`
	Live struct {
		Closed bool `json:"server_closed_connection"`
	} `json:"live_server_run"`
}

func loadManifest(t *testing.T) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(goldenDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m.Cases
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenFrames replays every golden frame over one mTLS WebSocket and
// checks each response against the reference server's, field by field and
// byte for byte.
func TestGoldenFrames(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	for _, c := range loadManifest(t) {
		t.Run(c.Name, func(t *testing.T) {
			var frame []byte
			switch {
			case c.Name == "18_behavior_oversize":
				frame = make([]byte, MaxFrameSize+1)
			case c.Name == "19_behavior_text_frame", c.Name == "20_behavior_datum_without_value":
				t.Skip("covered by its own test below")
			case c.File == "":
				t.Fatalf("case %s has no frame", c.Name)
			default:
				frame = readGolden(t, c.File)
			}
			got := exchange(t, ws, frame)
			if len(c.Responses) == 0 {
				t.Fatalf("manifest lists no response for %s", c.Name)
			}
			// The reference answers an ack-typed frame twice (a defect);
			// we answer once, with its first response.
			want := c.Responses[0]
			f, err := envelope.Parse(got)
			if err != nil {
				t.Fatalf("our response does not parse: %v", err)
			}
			if string(f.TxID) != want.Decoded.TxID || string(f.Topic) != want.Decoded.Topic || int(f.Type) != want.Decoded.Type {
				t.Errorf("response txid=%q topic=%q type=%d, want txid=%q topic=%q type=%d",
					f.TxID, f.Topic, f.Type, want.Decoded.TxID, want.Decoded.Topic, want.Decoded.Type)
			}
			if want.Kind == "error" && string(f.Stream.Payload) != envelope.ErrorText {
				t.Errorf("error payload %q, want %q", f.Stream.Payload, envelope.ErrorText)
			}
			if ref := readGolden(t, want.File); !bytes.Equal(got, ref) {
				t.Errorf("response differs from the reference bytes\n got %x\nwant %x", got, ref)
			}
		})
	}

	// The connection survived every malformed frame: a valid one is still
	// acknowledged.
	ack := exchange(t, ws, readGolden(t, "01_v_scalar_types.bin"))
	if f, err := envelope.Parse(ack); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("after the malformed frames: response %x (%v), want an ack", ack, err)
	}

	v := ts.sink.byTopic(telemetry.TopicV)
	for _, rec := range v {
		if rec.VIN != testVIN {
			t.Errorf("record %s has VIN %q, want %q from the certificate", rec.TxID, rec.VIN, testVIN)
		}
	}
	var spoof *telemetry.Record
	for i := range v {
		if v[i].TxID == "txid-15-spoof" {
			spoof = &v[i]
		}
	}
	if spoof == nil {
		t.Fatal("the spoofed-sender frame was not handed to the sink")
	}
	if got := ts.sink.byTopic(telemetry.TopicAlerts); len(got) != 1 || len(got[0].Alerts) != 3 {
		t.Errorf("alerts records: %+v, want one with 3 alerts", got)
	}
	if got := ts.sink.byTopic(telemetry.TopicErrors); len(got) != 1 || len(got[0].Errors) != 2 {
		t.Errorf("errors records: %+v, want one with 2 errors", got)
	}
	st := ts.srv.Stats()
	if st.Unacknowledged != 0 {
		t.Errorf("stats: %+v, want nothing unacknowledged", st)
	}
}

func TestDatumWithoutValueIsAcknowledged(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	resp := exchange(t, ws, readGolden(t, "20_behavior_datum_without_value.bin"))
	f, err := envelope.Parse(resp)
	if err != nil || f.Type != envelope.TypeStreamAck || string(f.TxID) != "txid-20-novalue" {
		t.Fatalf("response %x (%v), want the ack of txid-20-novalue", resp, err)
	}
	recs := ts.sink.byTopic(telemetry.TopicV)
	if len(recs) != 1 {
		t.Fatalf("got %d V records, want 1", len(recs))
	}
	for _, d := range recs[0].Data {
		if d.Value.Kind() == telemetry.KindNone {
			return
		}
	}
	t.Errorf("record %+v has no datum without a value", recs[0].Data)
}

func TestTextFrameClosesConnection(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	if err := ws.WriteMessage(websocket.TextMessage, readGolden(t, "01_v_scalar_types.bin")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
		t.Fatalf("read after a text frame: %v, want close 1003", err)
	}
	if n := len(ts.sink.byTopic(telemetry.TopicV)); n != 0 {
		t.Errorf("a text frame produced %d records", n)
	}
}

// TestAckOnlyAfterHandled: a record the sink cannot handle is not
// acknowledged; when the car sends it again and the sink accepts it, it is.
func TestAckOnlyAfterHandled(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	ts.sink.setFail(errors.New("broker away"))
	frame := readGolden(t, "01_v_scalar_types.bin")
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the record to be refused", func() bool { return ts.srv.Stats().Unacknowledged == 1 })
	_ = ws.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, msg, err := ws.ReadMessage(); err == nil {
		t.Fatalf("got response %x for an unhandled record, want none", msg)
	}
	// A read deadline breaks a gorilla connection for good: reconnect, as a
	// car would, and resend.
	ws.Close()
	ts.sink.setFail(nil)
	ws = ts.car(t)
	resp := exchange(t, ws, frame)
	if f, err := envelope.Parse(resp); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("resent frame: response %x (%v), want an ack", resp, err)
	}
	if n := len(ts.sink.byTopic(telemetry.TopicV)); n != 1 {
		t.Errorf("sink has %d V records, want 1", n)
	}
}

func TestClientCertificates(t *testing.T) {
	ts := startServer(t, nil)

	other, err := certs.NewVehicleAuthority() // same name, not trusted
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := other.IssueVehicle(testVIN)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no certificate", func(t *testing.T) {
		_, resp, err := ts.dial(t, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial without a certificate: %v (response %v), want 401", err, respStatus(resp))
		}
	})
	t.Run("untrusted authority", func(t *testing.T) {
		_, resp, err := ts.dial(t, &untrusted)
		if err == nil {
			t.Fatalf("dial with a certificate from an untrusted authority succeeded (%v)", respStatus(resp))
		}
	})
	t.Run("trusted authority with an unknown issuer name", func(t *testing.T) {
		odd, err := certs.NewAuthority("Some Other CA")
		if err != nil {
			t.Fatal(err)
		}
		pool := ts.pki.VehicleCA.Pool()
		pool.AddCert(odd.Cert)
		ts2 := startServerWithPool(t, pool)
		cert, err := odd.IssueVehicle(testVIN)
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := ts2.dial(t, &cert)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial with an unknown issuer: %v (response %v), want 403", err, respStatus(resp))
		}
		if ts2.srv.Stats().Refused != 1 {
			t.Errorf("stats %+v, want one refusal", ts2.srv.Stats())
		}
	})
	t.Run("plain request on the vehicle port", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: ts.clientTLS(nil)}}
		resp, err := client.Get("https://" + ts.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET / without upgrade: %d, want 400", resp.StatusCode)
		}
	})
	if n := len(ts.sink.byTopic(telemetry.TopicConnectivity)); n != 0 {
		t.Errorf("refused connections produced %d connectivity records", n)
	}
}

// lockedBuffer is a log destination that connections may write to
// concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDeviceIDRefusedAtUpgrade connects with certificates from the trusted
// vehicle authority whose common names cannot be a level of an MQTT topic:
// each is refused at the upgrade with 403, counted and logged, and nothing
// reaches the sink; a car with a proper name is served afterwards.
func TestDeviceIDRefusedAtUpgrade(t *testing.T) {
	logs := &lockedBuffer{}
	ts := startServer(t, nil, withLogger(slog.New(slog.NewTextHandler(logs, nil))))
	for i, cn := range []string{
		"+/#",
		"+",
		"#",
		"5YJ3E1EA0SF00000+",
		"tesla/5YJ3E1EA0SF000001",
		"5YJ3E1EA0SF000001\x00",
		"$SYS",
		"5YJ3E1EA0SF 000001",
		"5YJ3E1EA0SFÄ00001",
		strings.Repeat("5", 65),
	} {
		t.Run(strconv.Quote(cn), func(t *testing.T) {
			cert, err := ts.pki.VehicleCA.IssueVehicle(cn)
			if err != nil {
				t.Fatal(err)
			}
			before := logs.String()
			ws, resp, err := ts.dial(t, &cert)
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				if ws != nil {
					ws.Close()
				}
				t.Fatalf("dial as %q: %v (response %v), want 403", cn, err, respStatus(resp))
			}
			if got := ts.srv.Stats().Refused; got != int64(i+1) {
				t.Errorf("refused %d, want %d", got, i+1)
			}
			line := strings.TrimPrefix(logs.String(), before)
			if !strings.Contains(line, "vehicle refused") || !strings.Contains(line, ErrInvalidDeviceID.Error()) {
				t.Errorf("log does not say why %q was refused: %q", cn, line)
			}
			if strings.Count(line, "\n") != 1 || strings.ContainsRune(line, 0) {
				t.Errorf("the refusal is not one log line without control characters: %q", line)
			}
		})
	}
	ts.sink.mu.Lock()
	n := len(ts.sink.records)
	ts.sink.mu.Unlock()
	if n != 0 {
		t.Errorf("refused cars produced %d records", n)
	}
	ws := ts.car(t)
	waitFor(t, "the proper car's connectivity record", func() bool {
		return len(ts.sink.byTopic(telemetry.TopicConnectivity)) == 1
	})
	ws.Close()
}

func startServerWithPool(t *testing.T, pool *x509.CertPool) *testServer {
	t.Helper()
	ts := startServer(t, nil)
	ts.cancel()
	<-ts.done
	ts.done <- nil // let the first server's cleanup pass
	srv, err := New(ts.srv.cfg, &tls.Config{Certificates: []tls.Certificate{ts.pki.Server}, ClientCAs: pool}, ts.sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts2 := &testServer{srv: srv, sink: ts.sink, pki: ts.pki, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts2.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-ts2.done })
	return ts2
}

func respStatus(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Status
}

func TestConnectivityRecords(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	waitFor(t, "the connect record", func() bool { return len(ts.sink.byTopic(telemetry.TopicConnectivity)) == 1 })
	ws.Close()
	waitFor(t, "the disconnect record", func() bool { return len(ts.sink.byTopic(telemetry.TopicConnectivity)) == 2 })
	recs := ts.sink.byTopic(telemetry.TopicConnectivity)
	for i, want := range []telemetry.Status{telemetry.StatusConnected, telemetry.StatusDisconnected} {
		c := recs[i].Connectivity
		if recs[i].VIN != testVIN || c.Status != want || c.ConnectionID != "00000000-0000-4000-8000-000000000001" || c.NetworkInterface != "wifi" {
			t.Errorf("record %d: VIN %q %+v, want %s from the upgrade headers", i, recs[i].VIN, c, want)
		}
	}
	waitFor(t, "the connection count to drop", func() bool { return ts.srv.Stats().Connected == 0 })
}

// TestIdleTimeout: a car that answers pings stays; one that neither sends
// nor answers is dropped after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.PingInterval = 20 * time.Millisecond
		c.IdleTimeout = 150 * time.Millisecond
	})
	// This car reads, so its client answers pings.
	alive := ts.car(t)
	pongs := make(chan struct{}, 100)
	alive.SetPingHandler(func(data string) error {
		select {
		case pongs <- struct{}{}:
		default:
		}
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	msgs := make(chan []byte, 1)
	go func() {
		for {
			_, msg, err := alive.ReadMessage()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- msg
		}
	}()
	// This one never reads, so it never answers a ping.
	_ = ts.car(t)

	waitFor(t, "the silent car to be dropped", func() bool { return ts.srv.Stats().Connected == 1 })
	// The live car has answered pings across several idle periods.
	for i := 0; i < 20; i++ {
		select {
		case <-pongs:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d pings reached the live car", i)
		}
	}
	if got := ts.srv.Stats().Connected; got != 1 {
		t.Fatalf("%d cars connected, want the one that answers pings", got)
	}
	if err := alive.WriteMessage(websocket.BinaryMessage, readGolden(t, "01_v_scalar_types.bin")); err != nil {
		t.Fatal(err)
	}
	resp := <-msgs
	if f, err := envelope.Parse(resp); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("live car after idle periods: %x (%v), want an ack", resp, err)
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	ts := startServer(t, nil)
	ws := ts.car(t)
	exchange(t, ws, readGolden(t, "01_v_scalar_types.bin"))
	ts.cancel()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("read during shutdown: %v, want close 1001", err)
	}
	if err := <-ts.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	ts.done <- nil
	recs := ts.sink.byTopic(telemetry.TopicConnectivity)
	if len(recs) != 2 || recs[1].Connectivity.Status != telemetry.StatusDisconnected {
		t.Errorf("connectivity records %+v, want connect then disconnect", recs)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Listen = "" }, "vehicle.listen: must be set"},
		{func(c *Config) { c.Listen = "443" }, `vehicle.listen: "443" is not host:port`},
		{func(c *Config) { c.PingInterval = 0 }, "vehicle.ping_interval: 0s must be positive"},
		{func(c *Config) { c.IdleTimeout = c.PingInterval }, "vehicle.idle_timeout: 30s must be longer"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := configerr.Prefix("vehicle", cfg.Validate())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// withLogger makes a test server log to l.
func withLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }
