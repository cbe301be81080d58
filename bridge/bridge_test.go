package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const vin = "5YJ3TESTVIN000001"

func dataRecord(data ...telemetry.Datum) *telemetry.Record {
	return &telemetry.Record{VIN: vin, Topic: telemetry.TopicV, Data: data}
}

func datum(f telemetry.Field, v telemetry.Value) telemetry.Datum {
	return telemetry.Datum{Field: f, Value: v}
}

func handle(t *testing.T, b *Bridge, rec *telemetry.Record) {
	t.Helper()
	if err := b.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

// TestNativeValues checks the payload of a signal topic and the signal's
// entry in the state object for every kind of value.
func TestNativeValues(t *testing.T) {
	tests := []struct {
		name    string
		field   telemetry.Field
		v       telemetry.Value
		payload string
		state   string // the value in the state object
	}{
		{"int", telemetry.FieldChargeLimitSoc, telemetry.IntValue(80), "80", "80"},
		{"negative float", telemetry.FieldOutsideTemp, telemetry.FloatValue(-3.25), "-3.25", "-3.25"},
		{"float32 as sent", telemetry.FieldVehicleSpeed, telemetry.Float32Value(65.1), "65.1", "65.1"},
		{"no exponent, large", telemetry.FieldOdometer, telemetry.FloatValue(1e21), "1000000000000000000000", "1000000000000000000000"},
		{"no exponent, small", telemetry.FieldPackCurrent, telemetry.FloatValue(1e-7), "0.0000001", "0.0000001"},
		{"negative zero", telemetry.FieldPackCurrent, telemetry.FloatValue(math.Copysign(0, -1)), "0", "0"},
		{"NaN is no valid value", telemetry.FieldPackCurrent, telemetry.FloatValue(math.NaN()), "None", "null"},
		{"infinity is no valid value", telemetry.FieldPackCurrent, telemetry.FloatValue(math.Inf(1)), "None", "null"},
		{"a location with a NaN is no valid value", telemetry.FieldLocation, telemetry.LocationValue(0, math.NaN()), "None", "null"},
		{"a location off to infinity is no valid value", telemetry.FieldLocation, telemetry.LocationValue(math.Inf(-1), 2), "None", "null"},
		{"invalid", telemetry.FieldChargeAmps, telemetry.InvalidValue(), "None", "null"},
		{"bool", telemetry.FieldLocked, telemetry.BoolValue(true), "true", "true"},
		{"enum short name", telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 5), "D", `"D"`},
		{"enum named None", telemetry.FieldLaneDepartureAvoidance, telemetry.EnumNumber(telemetry.EnumLaneAssistLevel, 1),
			"none", `"none"`},
		{"unknown enum number", telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 42), "ShiftState(42)", `"ShiftState(42)"`},
		{"string", telemetry.FieldVehicleName, telemetry.StringValue(`My "Car"`), `My "Car"`, `"My \"Car\""`},
		{"empty string", telemetry.FieldVehicleName, telemetry.StringValue(""), "", `""`},
		{"location", telemetry.FieldLocation, telemetry.LocationValue(37.412374, -122.145867),
			`{"latitude":37.412374,"longitude":-122.145867}`, `{"latitude":37.412374,"longitude":-122.145867}`},
		{"legacy string parsed", telemetry.FieldSoc, telemetry.Normalize(telemetry.FieldSoc, telemetry.StringValue("79.147")), "79.147", "79.147"},
		{"legacy enum", telemetry.FieldGear, telemetry.Normalize(telemetry.FieldGear, telemetry.StringValue("ShiftStateP")), "P", `"P"`},
		{"time of day", telemetry.FieldScheduledChargingStartTime, telemetry.TimeValue(23, 30, 5), "23:30:05", `"23:30:05"`},
		{"doors", telemetry.FieldDoorState, telemetry.DoorsValue(telemetry.DriverFront),
			`{"DriverFront":true,"DriverRear":false,"PassengerFront":false,"PassengerRear":false,"TrunkFront":false,"TrunkRear":false}`,
			`{"DriverFront":true,"DriverRear":false,"PassengerFront":false,"PassengerRear":false,"TrunkFront":false,"TrunkRear":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, r := newTestBridge(t, DefaultConfig())
			handle(t, b, dataRecord(datum(tt.field, tt.v)))
			name := tt.field.String()
			diffLines(t, lines(r.take()), []string{
				"tesla/" + vin + "/" + name + " qos=1 retain=true " + tt.payload,
				"tesla/" + vin + "/state qos=1 retain=true {\"" + name + "\":" + tt.state + "}",
			})
		})
	}
}

func TestUnknownField(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	b, r := newTestBridge(t, cfg)
	handle(t, b, dataRecord(datum(999, telemetry.IntValue(5))))
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Field(999) qos=1 retain=true 5",
		"telemetry/" + vin + "/v/999 qos=1 retain=false 5",
		"tesla/" + vin + "/state qos=1 retain=true {\"Field(999)\":5}",
	})
}

// TestTooManyFields: past maxSlots distinct fields a vehicle's new fields
// are left out, in both layouts, and counted; its known fields go on.
func TestTooManyFields(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	var logs strings.Builder
	r := new(recorder)
	b, err := New(cfg, r, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := dataRecord()
	for f := range telemetry.Field(maxSlots + 2) {
		rec.Data = append(rec.Data, datum(1000+f, telemetry.IntValue(int64(f))))
	}
	handle(t, b, rec)
	msgs := r.take()
	if want := 2*maxSlots + 1; len(msgs) != want {
		t.Fatalf("%d messages, want %d", len(msgs), want)
	}
	for _, m := range msgs {
		if strings.Contains(m.Topic, "2024") || strings.Contains(m.Topic, "2025") {
			t.Errorf("field past the limit published: %s", line(m))
		}
	}
	state := string(msgs[len(msgs)-1].Payload)
	if strings.Contains(state, "Field(2024)") || !strings.Contains(state, `"Field(2023)":1023}`) {
		t.Errorf("state ends %s", state[len(state)-40:])
	}
	// A known field still goes out; a new one is left out again.
	handle(t, b, dataRecord(datum(1000, telemetry.IntValue(7)), datum(5000, telemetry.IntValue(8))))
	diffLines(t, lines(r.take()), []string{ // the state object waits for its interval
		"tesla/" + vin + "/Field(1000) qos=1 retain=true 7",
		"telemetry/" + vin + "/v/1000 qos=1 retain=false 7",
	})
	if got := b.Stats().FieldsRefused; got != 3 {
		t.Errorf("FieldsRefused = %d, want 3", got)
	}
	if n := strings.Count(logs.String(), "left out"); n != 1 {
		t.Errorf("%d log lines about fields left out, want 1 (once a minute):\n%s", n, logs.String())
	}
}

// TestTooManyNames: past maxNameTopics distinct alert and error names a
// vehicle's new names are left out and counted; known names go on.
func TestTooManyNames(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	var alerts []telemetry.Alert
	for i := range maxNameTopics + 10 {
		alerts = append(alerts, telemetry.Alert{Name: fmt.Sprintf("a%d", i)})
	}
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicAlerts, Alerts: alerts})
	topics := map[string]bool{}
	for _, m := range r.take() {
		topics[m.Topic] = true
	}
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicErrors, Errors: []telemetry.VehicleError{{Name: "new"}, {Name: "a0"}}})
	for _, m := range r.take() {
		topics[m.Topic] = true
	}
	if topics["tesla/"+vin+"/alerts/a"+fmt.Sprint(maxNameTopics)] || topics["tesla/"+vin+"/errors/new"] {
		t.Error("a name past the limit was published")
	}
	if !topics["tesla/"+vin+"/alerts/a0"] || !topics["tesla/"+vin+"/errors/a0"] {
		t.Error("a known name was not published")
	}
	if n := len(topics); n != maxNameTopics+2 { // + active_alerts + errors/a0
		t.Errorf("%d topics, want %d", n, maxNameTopics+2)
	}
	if got := b.Stats().NamesRefused; got != 11 {
		t.Errorf("NamesRefused = %d, want 11", got)
	}
}

// TestLargeFieldNumbers: fields numbered past the index, even negative
// ones, are kept too; they come last in the state object.
func TestLargeFieldNumbers(t *testing.T) {
	b, r := newTestBridge(t, everyState())
	handle(t, b, dataRecord(datum(100000, telemetry.IntValue(1)), datum(-3, telemetry.IntValue(2)), datum(telemetry.FieldSoc, telemetry.IntValue(3))))
	handle(t, b, dataRecord(datum(100000, telemetry.IntValue(4))))
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Field(100000) qos=1 retain=true 1",
		"tesla/" + vin + "/Field(-3) qos=1 retain=true 2",
		"tesla/" + vin + "/Soc qos=1 retain=true 3",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":3,"Field(100000)":1,"Field(-3)":2}`,
		"tesla/" + vin + "/Field(100000) qos=1 retain=true 4",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":3,"Field(100000)":4,"Field(-3)":2}`,
	})
}

// TestNoMember: a value with no member set publishes nothing natively and
// leaves the field's last value in place.
func TestNoMember(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.Value{})))
	if got := r.take(); len(got) != 0 {
		t.Fatalf("published %v", lines(got))
	}
	handle(t, b, dataRecord(
		datum(telemetry.FieldSoc, telemetry.FloatValue(50)),
		datum(telemetry.FieldSoc, telemetry.Value{}),
		datum(telemetry.FieldGear, telemetry.Value{}),
	))
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Soc qos=1 retain=true 50",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":50}`,
	})
}

// TestDuplicateFields: a field that appears twice in a record is published
// once, with its last value, in both layouts.
func TestDuplicateFields(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	b, r := newTestBridge(t, cfg)
	handle(t, b, dataRecord(
		datum(telemetry.FieldSoc, telemetry.FloatValue(1)),
		datum(telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 2)),
		datum(telemetry.FieldSoc, telemetry.FloatValue(2)),
		datum(telemetry.FieldGear, telemetry.Value{}),
	))
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Gear qos=1 retain=true P",
		"tesla/" + vin + "/Soc qos=1 retain=true 2",
		"telemetry/" + vin + "/v/Soc qos=1 retain=false 2",
		"telemetry/" + vin + "/v/Gear qos=1 retain=false {}",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":2,"Gear":"P"}`,
	})
}

// TestStateAccumulates: the state object holds every field seen, with its
// latest value, ordered by field number.
func TestStateAccumulates(t *testing.T) {
	b, r := newTestBridge(t, everyState())
	handle(t, b, dataRecord(datum(telemetry.FieldVehicleName, telemetry.StringValue("Blue")), datum(telemetry.FieldSoc, telemetry.FloatValue(80))))
	handle(t, b, dataRecord(datum(telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 5))))
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.InvalidValue())))
	msgs := r.take()
	want := []string{
		`{"Soc":80,"VehicleName":"Blue"}`,
		`{"Soc":80,"Gear":"D","VehicleName":"Blue"}`,
		`{"Soc":null,"Gear":"D","VehicleName":"Blue"}`,
	}
	var got []string
	for _, m := range msgs {
		if m.Topic == "tesla/"+vin+"/state" {
			got = append(got, string(m.Payload))
		}
	}
	diffLines(t, got, want)
}

// TestStateKeepsNoRecordMemory: the ingest server reuses a record's memory
// after Handle returns; what the bridge keeps for the state object must not
// change with it.
func TestStateKeepsNoRecordMemory(t *testing.T) {
	b, r := newTestBridge(t, everyState())
	buf := []byte("Blue")
	handle(t, b, dataRecord(datum(telemetry.FieldVehicleName, telemetry.StringValue(unsafe.String(&buf[0], len(buf))))))
	copy(buf, "Gray")
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1))))
	msgs := r.take()
	if got := string(msgs[len(msgs)-1].Payload); got != `{"Soc":1,"VehicleName":"Blue"}` {
		t.Errorf("state = %s", got)
	}
}

func TestLayoutOptions(t *testing.T) {
	rec := dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(80)))
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{"no state topic", func(c *Config) { c.StateTopic = false }, []string{
			"tesla/" + vin + "/Soc qos=1 retain=true 80",
		}},
		{"qos 0 not retained", func(c *Config) { c.QoS, c.Retain = 0, false }, []string{
			"tesla/" + vin + "/Soc qos=0 retain=false 80",
			"tesla/" + vin + `/state qos=0 retain=false {"Soc":80}`,
		}},
		{"prefix", func(c *Config) { c.Prefix = "home/cars" }, []string{
			"home/cars/" + vin + "/Soc qos=1 retain=true 80",
			"home/cars/" + vin + `/state qos=1 retain=true {"Soc":80}`,
		}},
		{"both layouts", func(c *Config) { c.Compat.Enabled, c.Compat.Base, c.Compat.Retain = true, "ft", true }, []string{
			"tesla/" + vin + "/Soc qos=1 retain=true 80",
			"ft/" + vin + "/v/Soc qos=1 retain=true 80",
			"tesla/" + vin + `/state qos=1 retain=true {"Soc":80}`,
		}},
		{"compatibility only", func(c *Config) { c.Compat.Enabled, c.Compat.Exclusive = true, true }, []string{
			"telemetry/" + vin + "/v/Soc qos=1 retain=false 80",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			b, r := newTestBridge(t, cfg)
			handle(t, b, rec)
			diffLines(t, lines(r.take()), tt.want)
		})
	}
}

func TestAlerts(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	b, r := newTestBridge(t, cfg)
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicAlerts, Alerts: []telemetry.Alert{
		{Name: "B", StartedAt: at(10), Audiences: []telemetry.Audience{telemetry.AudienceCustomer}},
		{Name: "A", StartedAt: at(1), EndedAt: at(2)},
		{Name: "B", StartedAt: at(5), EndedAt: at(6)},
		{Name: "B", StartedAt: at(10), EndedAt: time.Date(2026, 1, 1, 0, 0, 11, 5e8, time.UTC)},
		{Name: "C/with+bad#chars\x00"},
	}})
	p := "tesla/" + vin + "/alerts/"
	c := "telemetry/" + vin + "/alerts/"
	diffLines(t, lines(r.take()), []string{
		// Of equal starts, the later alert is current natively; the
		// reference keeps the first.
		p + `B qos=1 retain=true {"started_at":"2026-01-01T00:00:10Z","ended_at":"2026-01-01T00:00:11.5Z","audiences":[],"active":false}`,
		c + `B/current qos=1 retain=false {"Audiences":["Customer"],"StartedAt":"2026-01-01T00:00:10Z"}`,
		c + `B/history qos=1 retain=false [{"Audiences":["Customer"],"StartedAt":"2026-01-01T00:00:10Z"},` +
			`{"Audiences":null,"EndedAt":"2026-01-01T00:00:06Z","StartedAt":"2026-01-01T00:00:05Z"},` +
			`{"Audiences":null,"EndedAt":"2026-01-01T00:00:11Z","StartedAt":"2026-01-01T00:00:10Z"}]`,
		p + `A qos=1 retain=true {"started_at":"2026-01-01T00:00:01Z","ended_at":"2026-01-01T00:00:02Z","audiences":[],"active":false}`,
		c + `A/current qos=1 retain=false {"Audiences":null,"EndedAt":"2026-01-01T00:00:02Z","StartedAt":"2026-01-01T00:00:01Z"}`,
		c + `A/history qos=1 retain=false [{"Audiences":null,"EndedAt":"2026-01-01T00:00:02Z","StartedAt":"2026-01-01T00:00:01Z"}]`,
		// Without a start time an alert is not current for the reference.
		p + `C_with_bad_chars_ qos=1 retain=true {"started_at":null,"ended_at":null,"audiences":[],"active":true}`,
		c + `C_with_bad_chars_/history qos=1 retain=false [{"Audiences":null}]`,
		// The active ones, with their names as the car sent them.
		"tesla/" + vin + `/active_alerts qos=1 retain=true {"count":1,"alerts":[{"name":"C/with+bad#chars\u0000","started_at":null,"audiences":[]}]}`,
	})
}

// TestManyAlerts groups a large record (the map path) like a small one.
func TestManyAlerts(t *testing.T) {
	var alerts []telemetry.Alert
	for i := range 100 {
		alerts = append(alerts, telemetry.Alert{Name: fmt.Sprint("n", i%7), StartedAt: time.Unix(int64(i), 0)})
	}
	b, r := newTestBridge(t, DefaultConfig())
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicAlerts, Alerts: alerts})
	got := lines(r.take())
	if len(got) != 8 || !strings.Contains(got[7], `/active_alerts qos=1 retain=true {"count":7,`) {
		t.Fatalf("%d messages, want 7 alerts and the active ones: %v", len(got), got)
	}
	got = got[:7]
	for k, l := range got {
		last := 0 // the alert of name n<k> that started last
		for i := range 100 {
			if i%7 == k {
				last = i
			}
		}
		prefix := fmt.Sprintf("tesla/%s/alerts/n%d ", vin, k)
		started := `"started_at":"` + time.Unix(int64(last), 0).UTC().Format(time.RFC3339) + `"`
		if !strings.HasPrefix(l, prefix) || !strings.Contains(l, started) {
			t.Errorf("message %d = %s, want the alert n%d started at %d", k, l, k, last)
		}
	}
}

func TestErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	b, r := newTestBridge(t, cfg)
	handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicErrors, Errors: []telemetry.VehicleError{
		{Name: "e1", CreatedAt: time.Date(2026, 1, 1, 0, 0, 19, 5e8, time.UTC), Body: "a <b>", Tags: map[string]string{"z": "1", "a": "2"}},
		{Name: "e2"},
	}})
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + `/errors/e1 qos=1 retain=true {"created_at":"2026-01-01T00:00:19.5Z","body":"a <b>","tags":{"a":"2","z":"1"}}`,
		"telemetry/" + vin + `/errors/e1 qos=1 retain=false {"Body":"a \u003cb\u003e","CreatedAt":"2026-01-01T00:00:19Z","Tags":{"a":"2","z":"1"}}`,
		"tesla/" + vin + `/errors/e2 qos=1 retain=true {"created_at":null,"body":"","tags":{}}`,
		"telemetry/" + vin + `/errors/e2 qos=1 retain=false {"Body":"","Tags":null}`,
	})
}

func TestConnectivity(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	b, r := newTestBridge(t, cfg)
	for _, s := range []telemetry.Status{telemetry.StatusConnected, telemetry.StatusDisconnected, telemetry.StatusUnknown} {
		handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{
			ConnectionID: "c1", Status: s, NetworkInterface: "wifi",
		}})
	}
	c := "telemetry/" + vin + `/connectivity qos=1 retain=false {"ConnectionId":"c1","CreatedAt":"1970-01-01T00:00:00Z","Status":`
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/connected qos=1 retain=true true",
		c + `"CONNECTED"}`,
		"tesla/" + vin + "/connected qos=1 retain=true false",
		c + `"DISCONNECTED"}`,
		c + `"UNKNOWN"}`,
	})
}

func TestBridgeState(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Retain = false // the bridge state is retained regardless
	b, r := newTestBridge(t, cfg)
	if err := b.Online(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Offline(context.Background()); err != nil {
		t.Fatal(err)
	}
	diffLines(t, lines(r.take()), []string{
		"tesla/bridge/state qos=1 retain=true online",
		"tesla/bridge/state qos=1 retain=true offline",
	})
}

func TestHandleRefuses(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	for _, v := range []string{"", "5YJ3/X", "5YJ3+", "#", "a\x00b", "\xff", strings.Repeat("V", 65)} {
		rec := dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1)))
		rec.VIN = v
		if err := b.Handle(context.Background(), rec); !errors.Is(err, ErrInvalidVIN) {
			t.Errorf("VIN %q: err = %v, want ErrInvalidVIN", v, err)
		}
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("published %v", lines(got))
	}

	// Nothing to publish is not an error.
	for _, rec := range []*telemetry.Record{
		{VIN: vin, Topic: "metrics"},
		{VIN: vin, Topic: telemetry.TopicV},
		{VIN: vin, Topic: telemetry.TopicAlerts},
	} {
		if err := b.Handle(context.Background(), rec); err != nil {
			t.Errorf("%s: %v", rec.Topic, err)
		}
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("published %v", lines(got))
	}

	// A publisher's failure reaches the caller, so that the frame is not
	// acknowledged.
	r.err = errors.New("broker away")
	err := b.Handle(context.Background(), dataRecord(datum(telemetry.FieldSoc, telemetry.FloatValue(1))))
	if !errors.Is(err, r.err) {
		t.Errorf("err = %v, want the publisher's", err)
	}
	if err := b.Online(context.Background()); !errors.Is(err, r.err) {
		t.Errorf("Online: err = %v, want the publisher's", err)
	}
}

// orderChecker is a Publisher that checks, per vehicle, that the state
// objects it receives grow one Soc at a time: the records of one vehicle
// are published in the order they are handled.
type orderChecker struct {
	mu   sync.Mutex
	last map[string]int
	errs []string
}

func (o *orderChecker) Publish(_ context.Context, msgs []pubsub.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		_, rest, _ := strings.Cut(m.Topic, "/") // the prefix
		vin, rest, _ := strings.Cut(rest, "/")
		if rest != "Soc" {
			continue
		}
		var n int
		fmt.Sscan(string(m.Payload), &n)
		if n != o.last[vin]+1 {
			o.errs = append(o.errs, fmt.Sprintf("%s: Soc %d after %d", vin, n, o.last[vin]))
		}
		o.last[vin] = n
	}
	return nil
}

// TestConcurrentVehicles runs many vehicles at once (run with -race); each
// vehicle's records keep their order.
func TestConcurrentVehicles(t *testing.T) {
	o := &orderChecker{last: make(map[string]int)}
	b, err := New(DefaultConfig(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	const vehicles, records = 16, 300
	var wg sync.WaitGroup
	for v := range vehicles {
		wg.Go(func() {
			for i := 1; i <= records; i++ {
				rec := dataRecord(
					datum(telemetry.FieldSoc, telemetry.IntValue(int64(i))),
					datum(telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 5)),
				)
				rec.VIN = fmt.Sprintf("VIN%014d", v)
				if err := b.Handle(context.Background(), rec); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(o.errs) > 0 {
		t.Fatalf("out of order: %v", o.errs[:min(5, len(o.errs))])
	}
	for v := range vehicles {
		if n := o.last[fmt.Sprintf("VIN%014d", v)]; n != records {
			t.Errorf("vehicle %d: last Soc %d, want %d", v, n, records)
		}
	}
}

// TestHandleAllocations: once a vehicle's fields have been seen, a record
// costs no allocation, however many fields it has.
func TestHandleAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	for _, compat := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Compat.Enabled = compat
		b, err := New(cfg, discard{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := benchRecord()
		ctx := context.Background()
		allocs := testing.AllocsPerRun(100, func() {
			if err := b.Handle(ctx, rec); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("compat %t: %v allocations per record, want 0", compat, allocs)
		}
	}
}

// A car that changes networks opens its next connection before the old one
// ends: it stays connected until the last one closes.
func TestConnectivityOverlappingConnections(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	conn := func(id string, s telemetry.Status) {
		handle(t, b, &telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{ConnectionID: id, Status: s}})
	}
	conn("wifi", telemetry.StatusConnected)
	conn("lte", telemetry.StatusConnected)
	conn("wifi", telemetry.StatusDisconnected) // the old one times out
	if !b.Streams(vin) {
		t.Error("Streams = false while the second connection is open")
	}
	conn("wifi", telemetry.StatusDisconnected) // said twice: still the same
	conn("lte", telemetry.StatusDisconnected)
	if b.Streams(vin) {
		t.Error("Streams = true after both connections closed")
	}
	topic := "tesla/" + vin + "/connected qos=1 retain=true "
	diffLines(t, lines(r.take()), []string{topic + "true", topic + "true", topic + "true", topic + "true", topic + "false"})
}
