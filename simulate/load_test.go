package simulate

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// countingSink accepts everything and counts V records.
type countingSink struct{ v atomic.Int64 }

func (s *countingSink) Handle(_ context.Context, rec *telemetry.Record) error {
	if rec.Topic == telemetry.TopicV {
		s.v.Add(1)
	}
	return nil
}

func loadConfig(t *testing.T, ts *testServer, cars int) LoadConfig {
	t.Helper()
	ids, reused, err := Identities(ts.pki, cars)
	if err != nil || reused {
		t.Fatalf("Identities: %v (reused %v)", err, reused)
	}
	return LoadConfig{URL: ts.url, TLS: &tls.Config{RootCAs: ts.pki.ServerCA.Pool()}, Identities: ids}
}

func checkLoadResult(t *testing.T, res *LoadResult, cars, records int) {
	t.Helper()
	want := int64(cars * records)
	if !res.Complete || res.Records != want || res.Rejected != 0 {
		t.Errorf("result %+v: want all %d records acknowledged", res, want)
	}
	if !(res.AckP50Ms > 0 && res.AckP50Ms <= res.AckP90Ms && res.AckP90Ms <= res.AckP99Ms && res.AckP99Ms <= res.AckMaxMs) {
		t.Errorf("latencies p50 %v, p90 %v, p99 %v, max %v: want positive and ordered", res.AckP50Ms, res.AckP90Ms, res.AckP99Ms, res.AckMaxMs)
	}
	if res.Seconds <= 0 || res.RecordsPerSec <= 0 || res.FrameBytes < 200 {
		t.Errorf("seconds %v, records/s %v, frame %d bytes: want positive figures", res.Seconds, res.RecordsPerSec, res.FrameBytes)
	}
	var text, js bytes.Buffer
	if err := res.WriteText(&text); err != nil || !strings.Contains(text.String(), "records/s") {
		t.Errorf("text report %q (%v)", text.String(), err)
	}
	if err := res.WriteJSON(&js); err != nil || bytes.Count(js.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("JSON report %q (%v), want one line", js.String(), err)
	}
	var back LoadResult
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Records != res.Records || back.AckP99Ms != res.AckP99Ms {
		t.Errorf("JSON report does not read back: %v", err)
	}
}

// TestLoadAgainstIngest drives a real ingest server with a sink that
// does nothing and checks that the figures add up; it asserts no timing.
func TestLoadAgainstIngest(t *testing.T) {
	const cars, records = 4, 150
	sink := &countingSink{}
	ts := startServer(t, sink)
	cfg := loadConfig(t, ts, cars)
	cfg.Inflight, cfg.Records = 8, records
	cfg.ServerPID = os.Getpid() // the server runs in this process
	cfg.BrokerPID = os.Getpid() // as would a broker
	res, err := RunLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkLoadResult(t, res, cars, records)
	if got := sink.v.Load(); got != cars*records {
		t.Errorf("sink saw %d records, want %d", got, cars*records)
	}
	if res.Fields != 20 || res.Inflight != 8 {
		t.Errorf("result %+v: want 20 fields, 8 in flight", res)
	}
	s := res.Server
	if s == nil || s.CPUSeconds < 0 || s.RSSIdleMB <= 0 || s.PeakRSSMB < s.RSSEndMB || s.PID != os.Getpid() {
		t.Errorf("server figures %+v: want sane values", s)
	}
	if br := res.Broker; br == nil || br.PID != os.Getpid() || br.CPUSeconds < 0 {
		t.Errorf("broker figures %+v: want sane values", br)
	}
	// Each car sent distinct txids: the server acknowledged every frame once.
	if st := ts.srv.Stats(); st.Acks != cars*records || st.Unacknowledged != 0 {
		t.Errorf("server stats %+v", st)
	}
}

// TestLoadConnectOnly: no records, only connections (for memory per car).
func TestLoadConnectOnly(t *testing.T) {
	ts := startServer(t, &countingSink{})
	cfg := loadConfig(t, ts, 3)
	res, err := RunLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 0 || res.Cars != 3 || !res.Complete {
		t.Errorf("result %+v", res)
	}
	if ts.srv.Stats().Connections != 3 {
		t.Errorf("server saw %d connections, want 3", ts.srv.Stats().Connections)
	}
}

// publishingSink publishes every signal of a V record to a real broker as
// a message of its own, tesla/<VIN>/<Field>, as fleet2mqtt does, except
// those drop picks (drop may be nil).
func publishingSink(t *testing.T, addr string, drop func(vin string, d telemetry.Datum) bool) ingest.Sink {
	pub := dialPublisher(t, addr)
	return ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		if rec.Topic != telemetry.TopicV {
			return nil
		}
		for _, d := range rec.Data {
			if drop != nil && drop(rec.VIN, d) {
				continue
			}
			if _, err := pub.Publish(ctx, &paho.Publish{
				Topic: "tesla/" + rec.VIN + "/" + d.Field.String(), QoS: 1, Payload: d.Value.AppendText(nil),
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestLoadCountsMQTT: a server whose sink publishes every signal to a real
// mosquitto as a message of its own; the load driver's subscriber counts
// exactly one message per signal and matches all to their records.
func TestLoadCountsMQTT(t *testing.T) {
	broker := testenv.Mosquitto(t)
	const cars, records, fields = 2, 40, 7
	ts := startServer(t, publishingSink(t, broker.Addr, nil))
	cfg := loadConfig(t, ts, cars)
	cfg.Inflight, cfg.Records, cfg.Fields = 2, records, fields
	cfg.MQTT = MQTTOptions{Addr: broker.Addr, Topic: "tesla/#", QoS: 1}
	cfg.Settle = 300 * time.Millisecond
	res, err := RunLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkLoadResult(t, res, cars, records)
	m := res.MQTT
	if m == nil || m.Messages != cars*records*fields || m.PerRecord != fields || m.MessagesSec <= 0 {
		t.Fatalf("mqtt %+v: want exactly %d messages", m, cars*records*fields)
	}
	want := DeliveryResult{MarkerField: "Odometer", Expected: cars * records * fields, Delivered: cars * records * fields, Ratio: 1}
	if d := m.Delivery; d == nil || *d != want {
		t.Errorf("delivery %+v, want %+v", d, want)
	}
}

// TestLoadDetectsLoss: a sink that leaves out one message of one record.
// The run fails, says which share arrived, and, when the lost message is
// the record's marker, that one record is missing.
func TestLoadDetectsLoss(t *testing.T) {
	broker := testenv.Mosquitto(t)
	const cars, records, fields = 2, 30, 5
	for _, lose := range []telemetry.Field{telemetry.FieldOdometer, telemetry.FieldSoc} {
		t.Run(lose.String(), func(t *testing.T) {
			var victim atomic.Pointer[string]
			var dropped atomic.Int32
			sink := publishingSink(t, broker.Addr, func(vin string, d telemetry.Datum) bool {
				// The 17th record of the first car to send one.
				victim.CompareAndSwap(nil, &vin)
				if *victim.Load() != vin || d.Field != lose {
					return false
				}
				return dropped.Add(1) == 17
			})
			ts := startServer(t, sink)
			cfg := loadConfig(t, ts, cars)
			cfg.Records, cfg.Fields = records, fields
			cfg.MQTT = MQTTOptions{Addr: broker.Addr, Topic: "tesla/#", QoS: 1}
			cfg.Settle = 300 * time.Millisecond
			res, err := RunLoad(context.Background(), cfg)
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("RunLoad: %v, want ErrIncomplete", err)
			}
			if res.Complete || res.Records != cars*records {
				t.Errorf("result: complete %v, %d records acknowledged; want incomplete, all %d acknowledged", res.Complete, res.Records, cars*records)
			}
			d := res.MQTT.Delivery
			missing := int64(0)
			if lose == telemetry.FieldOdometer {
				missing = 1
			}
			if d == nil || d.Expected != cars*records*fields || d.Delivered != d.Expected-1 || d.RecordsMissing != missing || d.Extra != 0 {
				t.Errorf("delivery %+v: want one of %d messages missing, %d records missing", d, cars*records*fields, missing)
			}
			var text bytes.Buffer
			_ = res.WriteText(&text)
			if !strings.Contains(text.String(), "INCOMPLETE") {
				t.Errorf("text report does not say the delivery is incomplete:\n%s", text.String())
			}
		})
	}
}

// TestLoadOpenLoop: a fixed rate sends rate × duration records across the
// cars, whether or not acknowledgements keep up, and reports latency.
func TestLoadOpenLoop(t *testing.T) {
	sink := &countingSink{}
	ts := startServer(t, sink)
	cfg := loadConfig(t, ts, 3)
	cfg.Rate, cfg.Duration = 400, 250*time.Millisecond // 100 records: 34, 33, 33
	res, err := RunLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Records != 100 || res.Sent != 100 || sink.v.Load() != 100 {
		t.Errorf("result %+v, sink %d: want 100 records sent and acknowledged", res, sink.v.Load())
	}
	if res.RatePerSec != 400 || res.DurationSecs != 0.25 || res.RecordsPerCar != 34 || res.Inflight != DefaultWindow {
		t.Errorf("result %+v: want the rate, duration, 34 records for the first car, the default window", res)
	}
	if !(res.AckP50Ms > 0 && res.AckP50Ms <= res.AckP90Ms && res.AckP90Ms <= res.AckP99Ms && res.AckP99Ms <= res.AckMaxMs) {
		t.Errorf("latencies %+v: want positive and ordered", res)
	}
}

func TestLoadPlan(t *testing.T) {
	cfg := LoadConfig{Rate: 1000, Duration: 2 * time.Second}
	total := 0
	for k := range 7 {
		n, off, every := cfg.plan(k, 7)
		total += n
		if off != time.Duration(k)*time.Millisecond || every != 7*time.Millisecond {
			t.Errorf("car %d: offset %v, interval %v; want %v, 7ms", k, off, every, time.Duration(k)*time.Millisecond)
		}
	}
	if total != 2000 {
		t.Errorf("cars send %d records in all, want 2000", total)
	}
}

func TestDeliveryCounter(t *testing.T) {
	fields := []telemetry.Field{telemetry.FieldVehicleSpeed, telemetry.FieldOdometer, telemetry.FieldGear}
	vins := []string{"5YJ3E7EB2NF000001", "5YJ3E7EB2NF000002"}
	d := newDeliveryCounter(vins, fields, 100)
	if d.marker != 1 {
		t.Fatalf("marker %d, want Odometer's index 1", d.marker)
	}
	d.observe([]byte("tesla/5YJ3E7EB2NF000001/state"), []byte("{}"), time.Now())
	if _, ok := d.lastArrival(); ok {
		t.Error("a message on no car's signal counted as the last signal's arrival")
	}
	before := time.Now()
	for _, m := range []struct{ topic, payload string }{
		{"tesla/5YJ3E7EB2NF000001/Odometer", "100000"},                 // record 0, native layout
		{"telemetry/5YJ3E7EB2NF000001/v/Odometer", `{"value":100001}`}, // record 1, reference layout
		{"tesla/5YJ3E7EB2NF000001/Gear", "D"},
		{"tesla/5YJ3E7EB2NF000001/Gear", "R"},
		{"tesla/5YJ3E7EB2NF000001/Gear", "D"}, // one too many
		{"tesla/5YJ3E7EB2NF000001/VehicleSpeed", "3"},
		{"tesla/5YJ3E7EB2NF000001/VehicleSpeed", "4"},
		{"tesla/5YJ3E7EB2NF000001/state", "{}"},
		{"tesla/5YJ3E7EB2NF000009/Gear", "D"}, // no car of the run
		{"tesla/5YJ3E7EB2NF000002/Odometer", "100001"},
	} {
		d.observe([]byte(m.topic), []byte(m.payload), time.Now())
	}
	if last, ok := d.lastArrival(); !ok || last.Before(before) || last.After(time.Now()) {
		t.Errorf("last signal arrived at %v (%v), want between %v and now", last, ok, before)
	}
	acked := [][]uint64{{0b11}, {0b11}}
	got := d.result(func(i int) string { return fields[i].String() }, acked)
	want := DeliveryResult{MarkerField: "Odometer", Expected: 12, Delivered: 7, Ratio: round(7.0/12, 4), RecordsMissing: 1, Extra: 1, Other: 3}
	if *got != want {
		t.Errorf("result %+v, want %+v", *got, want)
	}
	if got.Complete() {
		t.Error("Complete with messages missing")
	}
}

func dialPublisher(t *testing.T, addr string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "test-publisher", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func TestLoadFields(t *testing.T) {
	for _, n := range []int{1, 20, 21, 100} {
		fs, err := loadFields(n)
		if err != nil || len(fs) != n {
			t.Fatalf("loadFields(%d) = %d fields, %v", n, len(fs), err)
		}
		seen := map[telemetry.Field]bool{}
		for _, f := range fs {
			if seen[f] || f == 0 {
				t.Fatalf("loadFields(%d): field %v twice or Unknown", n, f)
			}
			seen[f] = true
		}
	}
	if _, err := loadFields(10_000); !errors.Is(err, ErrTooManyFields) {
		t.Errorf("loadFields(10000) = %v, want ErrTooManyFields", err)
	}
	// The default record mixes kinds, and consecutive records differ in
	// every field but Version, gear and charge state, also across the
	// wrap of the ring. Those stay put, as a driving car's do.
	fs, _ := loadFields(DefaultLoadFields)
	kinds := map[telemetry.Kind]bool{}
	for _, f := range fs {
		info, _ := telemetry.Lookup(f)
		kinds[info.Kind] = true
		for slot := range templateRing {
			a, b := loadValue(f, slot, 3), loadValue(f, (slot+1)%templateRing, 3)
			if f == telemetry.FieldVersion {
				if !a.Equal(b) || a.Str() != loadVersion {
					t.Errorf("Version: slots %d and %d carry %v and %v, want %q in every record", slot, (slot+1)%templateRing, a, b, loadVersion)
				}
			} else if steady, ok := loadSteady[f]; ok {
				if !a.Equal(b) || a.EnumNumber() != steady {
					t.Errorf("%s: slots %d and %d carry %v and %v, want %d in every record", info.Name, slot, (slot+1)%templateRing, a, b, steady)
				}
			} else if a.Equal(b) {
				t.Errorf("%s: slots %d and %d carry the same value %v", info.Name, slot, (slot+1)%templateRing, a)
			}
			if !kindSuits(info.Kind, a.Kind()) {
				t.Errorf("%s: value %v of kind %v", info.Name, a, a.Kind())
			}
		}
	}
	if len(kinds) < 7 {
		t.Errorf("default fields cover %d kinds, want a mix", len(kinds))
	}
}

func TestTemplateIDs(t *testing.T) {
	car, err := NewCar(CarConfig{URL: "wss://127.0.0.1:1/", VIN: testVIN, TLS: &tlsWithCert})
	if err != nil {
		t.Fatal(err)
	}
	fs, _ := loadFields(5)
	tpl, err := newTemplate(car, 0, fs, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 10 {
		m := tpl.message(i)
		var rec telemetry.Record
		f, err := envelope.Parse(m.frame)
		if err != nil {
			t.Fatal(err)
		}
		if string(f.TxID) != m.TxID || string(f.MessageID) != m.MessageID || seen[m.TxID] || seen[m.MessageID] {
			t.Fatalf("record %d: txid %q, message id %q: want distinct ids matching the frame", i, m.TxID, m.MessageID)
		}
		seen[m.TxID], seen[m.MessageID] = true, true
		if err := ingest.DecodePayload(telemetry.TopicV, f.Stream.Payload, &rec); err != nil || len(rec.Data) != 5 {
			t.Fatalf("record %d: payload %v (%v)", i, rec.Data, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestParseStat(t *testing.T) {
	stat := []byte("4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 0 0")
	ticks, err := parseStatCPU(stat)
	if err != nil || ticks != 325 {
		t.Errorf("parseStatCPU = %d, %v; want 325", ticks, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
	if got := parseKB("   1234 kB"); got != 1234 {
		t.Errorf("parseKB = %d", got)
	}
}

func TestIdentities(t *testing.T) {
	pki, err := certs.NewBundle(nil, "5YJ3E1EAXKF000001")
	if err != nil {
		t.Fatal(err)
	}
	ids, reused, err := Identities(pki, 3)
	if err != nil || reused || len(ids) != 3 {
		t.Fatalf("Identities = %d, %v, %v", len(ids), reused, err)
	}
	if ids[0].VIN != "5YJ3E1EAXKF000001" || ids[1].VIN != TestVIN(1) || ids[2].VIN != TestVIN(2) {
		t.Errorf("VINs %s %s %s: want the stored one, then generated ones", ids[0].VIN, ids[1].VIN, ids[2].VIN)
	}
	for _, id := range ids {
		if id.Certificate.Leaf == nil || id.Certificate.Leaf.Subject.CommonName != id.VIN || id.Certificate.Leaf.Issuer.CommonName != certs.VehicleAuthorityName {
			t.Errorf("%s: certificate %v", id.VIN, id.Certificate.Leaf)
		}
	}
	pki.VehicleCA = nil
	ids, reused, err = Identities(pki, 2)
	if err != nil || !reused || ids[1].VIN != ids[0].VIN {
		t.Errorf("without a CA: %v, reused %v, %v: want the one certificate used twice", ids, reused, err)
	}
	pki.Vehicles = nil
	if _, _, err := Identities(pki, 1); !errors.Is(err, ErrNoVehicleCertificates) {
		t.Errorf("empty PKI: %v", err)
	}
}
