package ingest

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const payloadGoldenDir = "../testdata/vehicle-frames"

// payloadCase is what the payload tests need of a manifest case.
type payloadCase struct {
	Name               string          `json:"name"`
	PayloadFile        string          `json:"payload_file"`
	Topic              string          `json:"topic"`
	PayloadDecoded     json.RawMessage `json:"payload_decoded"`
	PayloadDecodeError string          `json:"payload_decode_error"`
}

func loadPayloadCases(t testing.TB) []payloadCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(payloadGoldenDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases []payloadCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Cases
}

func readPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(payloadGoldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenDatum is one Datum as the manifest describes it.
type goldenDatum struct {
	KeyNumber      int32           `json:"key_number"`
	ValueType      string          `json:"value_type"`
	ValueProtoType string          `json:"value_proto_type"`
	Value          json.RawMessage `json:"value"`
}

// goldenValue builds the raw (not yet normalised) value a manifest datum
// describes, from the manifest's own JSON, independently of the decoder.
func goldenValue(t *testing.T, d goldenDatum) telemetry.Value {
	t.Helper()
	unmarshal := func(v any) {
		t.Helper()
		if err := json.Unmarshal(d.Value, v); err != nil {
			t.Fatalf("datum %d (%s): %v", d.KeyNumber, d.ValueType, err)
		}
	}
	switch d.ValueType {
	case "":
		return telemetry.Value{}
	case "string_value":
		var s string
		unmarshal(&s)
		return telemetry.StringValue(s)
	case "int_value", "long_value":
		// protojson writes int64 as a string, int32 as a number.
		n, err := strconv.ParseInt(strings.Trim(string(d.Value), `"`), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return telemetry.IntValue(n)
	case "float_value":
		var f float64
		unmarshal(&f)
		return telemetry.Float32Value(float32(f))
	case "double_value":
		var f float64
		unmarshal(&f)
		return telemetry.FloatValue(f)
	case "boolean_value":
		var b bool
		unmarshal(&b)
		return telemetry.BoolValue(b)
	case "invalid":
		return telemetry.InvalidValue()
	case "location_value":
		var l struct{ Latitude, Longitude float64 }
		unmarshal(&l)
		return telemetry.LocationValue(l.Latitude, l.Longitude)
	case "door_value":
		var m map[string]bool
		unmarshal(&m)
		var d telemetry.Doors
		for i, name := range telemetry.DoorNames {
			if m[name] {
				d |= 1 << i
			}
		}
		return telemetry.DoorsValue(d)
	case "tire_location_value":
		var m map[string]bool
		unmarshal(&m)
		var tl telemetry.Tires
		for i, name := range telemetry.TireNames {
			if m[name] {
				tl |= 1 << i
			}
		}
		return telemetry.TiresValue(tl)
	case "time_value":
		var tm struct{ Hour, Minute, Second int32 }
		unmarshal(&tm)
		return telemetry.TimeValue(tm.Hour, tm.Minute, tm.Second)
	}
	typeName, ok := strings.CutPrefix(d.ValueProtoType, "enum telemetry.vehicle_data.")
	if !ok {
		t.Fatalf("datum %d: unexpected value type %q (%s)", d.KeyNumber, d.ValueType, d.ValueProtoType)
	}
	e, ok := telemetry.EnumByName(typeName)
	if !ok {
		t.Fatalf("datum %d: unknown enum %s", d.KeyNumber, typeName)
	}
	var name string
	unmarshal(&name)
	ev, ok := e.ByName(name)
	if !ok {
		t.Fatalf("datum %d: enum %s has no value %s", d.KeyNumber, typeName, name)
	}
	return telemetry.EnumOf(e, ev)
}

// equalValue reports whether a and b carry the same value and print alike
// (Equal does not look at the precision a float arrived with).
func equalValue(a, b telemetry.Value) bool {
	if !a.Equal(b) && !(a.Kind() == b.Kind() && hasNaN(a) && hasNaN(b)) {
		return false
	}
	return string(a.AppendJSON(nil)) == string(b.AppendJSON(nil))
}

// hasNaN reports whether a float or location value holds a NaN, which
// Equal does not find equal to itself.
func hasNaN(v telemetry.Value) bool {
	switch v.Kind() {
	case telemetry.KindFloatValue:
		return math.IsNaN(v.Float())
	case telemetry.KindLocationValue:
		lat, lon := v.Location()
		return math.IsNaN(lat) || math.IsNaN(lon)
	}
	return false
}

// sameValue is equalValue that also requires the same raw string: that the
// values arrived alike.
func sameValue(a, b telemetry.Value) bool {
	ra, oka := a.Raw()
	rb, okb := b.Raw()
	return equalValue(a, b) && ra == rb && oka == okb
}

func equalData(a, b []telemetry.Datum) bool {
	return slices.EqualFunc(a, b, func(a, b telemetry.Datum) bool { return a.Field == b.Field && equalValue(a.Value, b.Value) })
}

func describeValue(v telemetry.Value) string {
	s := v.Kind().String() + " " + string(v.AppendJSON(nil))
	if raw, ok := v.Raw(); ok {
		s += " from " + strconv.Quote(raw)
	}
	return s
}

// TestDecodePayloadGoldenV checks every golden V payload against the values
// the manifest records (decoded by Tesla's own code), after normalisation.
func TestDecodePayloadGoldenV(t *testing.T) {
	n := 0
	for _, c := range loadPayloadCases(t) {
		if c.Topic != "V" || c.PayloadFile == "" || c.PayloadDecodeError != "" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			var want struct {
				CreatedAt time.Time     `json:"created_at"`
				Data      []goldenDatum `json:"data"`
				IsResend  bool          `json:"is_resend"`
			}
			if err := json.Unmarshal(c.PayloadDecoded, &want); err != nil {
				t.Fatal(err)
			}
			var rec telemetry.Record
			if err := DecodePayload(telemetry.TopicV, readPayload(t, c.PayloadFile), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Topic != telemetry.TopicV {
				t.Errorf("topic = %q", rec.Topic)
			}
			if !rec.CreatedAt.Equal(want.CreatedAt) {
				t.Errorf("created at = %v, want %v", rec.CreatedAt, want.CreatedAt)
			}
			if rec.Resend != want.IsResend {
				t.Errorf("resend = %v, want %v", rec.Resend, want.IsResend)
			}
			if len(rec.Data) != len(want.Data) {
				t.Fatalf("%d data, want %d", len(rec.Data), len(want.Data))
			}
			for i, w := range want.Data {
				f := telemetry.Field(w.KeyNumber)
				wv := telemetry.Normalize(f, goldenValue(t, w))
				if got := rec.Data[i]; got.Field != f || !sameValue(got.Value, wv) {
					t.Errorf("data[%d] = %v %s, want %v %s", i, got.Field, describeValue(got.Value), f, describeValue(wv))
				}
			}
		})
	}
	if n < 8 {
		t.Fatalf("only %d golden V payloads", n)
	}
}

// TestDecodePayloadNormalised pins the normalised values of the golden
// payloads whose wire form differs from what we publish.
func TestDecodePayloadNormalised(t *testing.T) {
	tests := []struct {
		file string
		want []telemetry.Datum
	}{
		{"03_v_string_transforms.payload.bin", []telemetry.Datum{
			{Field: fieldNamed(t, "Location"), Value: telemetry.LocationValue(37.412374, -122.145867)},
			{Field: fieldNamed(t, "PackCurrent"), Value: telemetry.FloatValue(0.0015)},
			{Field: fieldNamed(t, "PackVoltage"), Value: telemetry.FloatValue(398.25)},
			{Field: fieldNamed(t, "ChargeState"), Value: telemetry.StringValue("Charging")},
			{Field: fieldNamed(t, "Gear"), Value: telemetry.EnumNumber(telemetry.EnumShiftState, 5)},
		}},
		{"05_v_invalid_and_empty.payload.bin", []telemetry.Datum{
			{Field: fieldNamed(t, "ChargeAmps"), Value: telemetry.InvalidValue()},
			{Field: fieldNamed(t, "EstBatteryRange"), Value: telemetry.InvalidValue()},
			{Field: fieldNamed(t, "VehicleName"), Value: telemetry.StringValue("")},
			{Field: fieldNamed(t, "VehicleSpeed"), Value: telemetry.Value{}},
		}},
		{"20_behavior_datum_without_value.payload.bin", []telemetry.Datum{
			{Field: fieldNamed(t, "Odometer"), Value: telemetry.Value{}},
			{Field: fieldNamed(t, "Soc"), Value: telemetry.FloatValue(2)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var rec telemetry.Record
			if err := DecodePayload(telemetry.TopicV, readPayload(t, tt.file), &rec); err != nil {
				t.Fatal(err)
			}
			if !equalData(rec.Data, tt.want) {
				t.Errorf("data:\n got %v\nwant %v", describeData(rec.Data), describeData(tt.want))
			}
		})
	}

	// The details the MQTT side depends on.
	var rec telemetry.Record
	if err := DecodePayload(telemetry.TopicV, readPayload(t, "03_v_string_transforms.payload.bin"), &rec); err != nil {
		t.Fatal(err)
	}
	if gear := rec.Data[4].Value; gear.EnumName() != "ShiftStateD" || gear.EnumShort() != "D" {
		t.Errorf("gear = %q/%q, want ShiftStateD/D", gear.EnumName(), gear.EnumShort())
	}
	if cs := rec.Data[3].Value; cs.Kind() != telemetry.KindStringValue {
		t.Errorf("ChargeState kind = %v, want string", cs.Kind())
	}
	if raw, ok := rec.Data[1].Value.Raw(); raw != "1.5e-3" || !ok {
		t.Errorf("PackCurrent raw = %q, %v; want 1.5e-3, true", raw, ok)
	}
}

func fieldNamed(t testing.TB, name string) telemetry.Field {
	t.Helper()
	f, ok := telemetry.FieldByName(name)
	if !ok {
		t.Fatalf("no field %s", name)
	}
	return f
}

func describeData(data []telemetry.Datum) string {
	var b strings.Builder
	for _, d := range data {
		b.WriteString("\n  " + d.Field.String() + " = " + describeValue(d.Value))
	}
	return b.String()
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecodePayloadGoldenOtherTopics(t *testing.T) {
	tests := []struct {
		file  string
		topic telemetry.Topic
		want  telemetry.Record
	}{
		{"08_alerts.payload.bin", telemetry.TopicAlerts, telemetry.Record{
			Topic:     telemetry.TopicAlerts,
			CreatedAt: utc("2026-01-01T00:00:10Z"),
			Alerts: []telemetry.Alert{
				{Name: "UI_a001_TestAlertActive", Audiences: []telemetry.Audience{telemetry.AudienceCustomer, telemetry.AudienceService},
					StartedAt: utc("2025-12-31T23:59:00Z")},
				{Name: "UI_a002_TestAlertEnded", Audiences: []telemetry.Audience{telemetry.AudienceServiceFix},
					StartedAt: utc("2025-12-31T23:58:00Z"), EndedAt: utc("2025-12-31T23:59:30.25Z")},
				// started_at.seconds is 1767225590000: milliseconds.
				{Name: "UI_a002_TestAlertEnded", Audiences: []telemetry.Audience{telemetry.AudienceServiceFix},
					StartedAt: utc("2025-12-31T23:59:50Z")},
			},
		}},
		{"09_errors.payload.bin", telemetry.TopicErrors, telemetry.Record{
			Topic:     telemetry.TopicErrors,
			CreatedAt: utc("2026-01-01T00:00:20Z"),
			Errors: []telemetry.VehicleError{
				{Name: "telemetry_test_error", CreatedAt: utc("2026-01-01T00:00:19Z"),
					Tags: map[string]string{"field": "VehicleSpeed", "reason": "unsupported"}, Body: "something went wrong"},
				{Name: "telemetry_other_error", CreatedAt: utc("2026-01-01T00:00:19.5Z")},
			},
		}},
		{"10_connectivity_server_internal.payload.bin", telemetry.TopicConnectivity, telemetry.Record{
			Topic:     telemetry.TopicConnectivity,
			CreatedAt: utc("2026-01-01T00:00:00Z"),
			Connectivity: telemetry.Connectivity{
				ConnectionID: "00000000-0000-4000-8000-00000000000a", Status: telemetry.StatusConnected,
				NetworkInterface: "wifi", CreatedAt: utc("2026-01-01T00:00:00Z"),
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var rec telemetry.Record
			if err := DecodePayload(tt.topic, readPayload(t, tt.file), &rec); err != nil {
				t.Fatal(err)
			}
			if diff := diffRecords(&rec, &tt.want); diff != "" {
				t.Error(diff)
			}
		})
	}

	var rec telemetry.Record
	if err := DecodePayload(telemetry.TopicAlerts, readPayload(t, "08_alerts.payload.bin"), &rec); err != nil {
		t.Fatal(err)
	}
	if !rec.Alerts[0].Active() || rec.Alerts[1].Active() || !rec.Alerts[2].Active() {
		t.Errorf("active = %v %v %v, want true false true", rec.Alerts[0].Active(), rec.Alerts[1].Active(), rec.Alerts[2].Active())
	}
}

// diffRecords describes how got differs from want ("" when it does not).
// Times compare with Equal, values with sameValue, nil and empty slices and
// maps are alike.
func diffRecords(got, want *telemetry.Record) string {
	var b strings.Builder
	check := func(ok bool, what string, g, w any) {
		if !ok {
			b.WriteString("\n" + what + ": got " + describe(g) + ", want " + describe(w))
		}
	}
	check(got.Topic == want.Topic, "topic", got.Topic, want.Topic)
	check(got.CreatedAt.Equal(want.CreatedAt), "created at", got.CreatedAt, want.CreatedAt)
	check(got.Resend == want.Resend, "resend", got.Resend, want.Resend)
	check(slices.EqualFunc(got.Data, want.Data, func(a, b telemetry.Datum) bool {
		return a.Field == b.Field && sameValue(a.Value, b.Value)
	}), "data", describeData(got.Data), describeData(want.Data))
	check(slices.EqualFunc(got.Alerts, want.Alerts, func(a, b telemetry.Alert) bool {
		return a.Name == b.Name && slices.Equal(a.Audiences, b.Audiences) &&
			a.StartedAt.Equal(b.StartedAt) && a.EndedAt.Equal(b.EndedAt)
	}), "alerts", got.Alerts, want.Alerts)
	check(slices.EqualFunc(got.Errors, want.Errors, func(a, b telemetry.VehicleError) bool {
		return a.Name == b.Name && a.Body == b.Body && a.CreatedAt.Equal(b.CreatedAt) && maps.Equal(a.Tags, b.Tags)
	}), "errors", got.Errors, want.Errors)
	gc, wc := got.Connectivity, want.Connectivity
	check(gc.ConnectionID == wc.ConnectionID && gc.Status == wc.Status && gc.NetworkInterface == wc.NetworkInterface &&
		gc.CreatedAt.Equal(wc.CreatedAt), "connectivity", gc, wc)
	return b.String()
}

func describe(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func TestDecodePayloadErrors(t *testing.T) {
	var (
		tag    = protowire.AppendTag
		varint = protowire.AppendVarint
		bytes  = protowire.AppendBytes
	)
	msg := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	// datum returns a Payload holding one Datum with the given Value bytes.
	datum := func(value []byte) []byte {
		d := msg(varint(tag(nil, 1, protowire.VarintType), 8), bytes(tag(nil, 2, protowire.BytesType), value))
		return bytes(tag(nil, 1, protowire.BytesType), d)
	}
	tests := []struct {
		name     string
		topic    telemetry.Topic
		payload  []byte
		wireType bool // the error is a wrong wire type
	}{
		{"golden corrupt payload", telemetry.TopicV, readPayload(t, "13_malformed_corrupt_payload.payload.bin"), false},
		{"truncated tag", telemetry.TopicV, []byte{0x80}, false},
		{"field number zero", telemetry.TopicV, []byte{0x00, 0x01}, false},
		{"truncated varint", telemetry.TopicV, []byte{0x20, 0x80}, false},
		{"length past end", telemetry.TopicV, []byte{0x0a, 0x05, 0x01}, false},
		{"data as varint", telemetry.TopicV, []byte{0x08, 0x01}, true},
		{"resend as bytes", telemetry.TopicV, []byte{0x22, 0x00}, true},
		{"created_at as fixed32", telemetry.TopicV, []byte{0x15, 1, 2, 3, 4}, true},
		{"datum key as bytes", telemetry.TopicV, bytes(tag(nil, 1, protowire.BytesType), []byte{0x0a, 0x00}), true},
		{"datum truncated inside", telemetry.TopicV, bytes(tag(nil, 1, protowire.BytesType), []byte{0x08}), false},
		{"double as varint", telemetry.TopicV, datum([]byte{0x28, 0x01}), true},
		{"float as fixed64", telemetry.TopicV, datum(protowire.AppendFixed64(tag(nil, 4, protowire.Fixed64Type), 1)), true},
		{"truncated double", telemetry.TopicV, datum([]byte{0x29, 1, 2, 3}), false},
		{"truncated float", telemetry.TopicV, datum([]byte{0x25, 1, 2}), false},
		{"string as varint", telemetry.TopicV, datum([]byte{0x08, 0x01}), true},
		{"enum as fixed32", telemetry.TopicV, datum([]byte{0x4d, 1, 2, 3, 4}), true},
		{"location latitude as varint", telemetry.TopicV, datum(bytes(tag(nil, 7, protowire.BytesType), []byte{0x08, 0x01})), true},
		{"doors bit as fixed64", telemetry.TopicV, datum(bytes(tag(nil, 21, protowire.BytesType), protowire.AppendFixed64(tag(nil, 1, protowire.Fixed64Type), 1))), true},
		{"time truncated", telemetry.TopicV, datum(bytes(tag(nil, 31, protowire.BytesType), []byte{0x08})), false},
		{"unknown field truncated", telemetry.TopicV, []byte{0xf8, 0x07, 0x80}, false},
		{"unterminated group", telemetry.TopicV, []byte{0x2b, 0x08, 0x01}, false},
		{"stray end group", telemetry.TopicV, []byte{0x2c}, false},
		{"reserved wire type", telemetry.TopicV, []byte{0x2e, 0x00}, false},
		{"timestamp seconds as bytes", telemetry.TopicV, bytes(tag(nil, 2, protowire.BytesType), []byte{0x0a, 0x00}), true},
		{"alert name as varint", telemetry.TopicAlerts, bytes(tag(nil, 1, protowire.BytesType), []byte{0x08, 0x01}), true},
		{"alert packed audiences truncated", telemetry.TopicAlerts, bytes(tag(nil, 1, protowire.BytesType), []byte{0x12, 0x01, 0x80}), false},
		{"alert ended_at truncated", telemetry.TopicAlerts, bytes(tag(nil, 1, protowire.BytesType), []byte{0x22, 0x02, 0x08, 0x80}), false},
		{"error tags entry truncated", telemetry.TopicErrors, bytes(tag(nil, 1, protowire.BytesType), []byte{0x1a, 0x02, 0x0a, 0x05}), false},
		{"error body as fixed32", telemetry.TopicErrors, bytes(tag(nil, 1, protowire.BytesType), []byte{0x25, 1, 2, 3, 4}), true},
		{"errors vin as varint", telemetry.TopicErrors, []byte{0x18, 0x01}, true},
		{"connectivity status as bytes", telemetry.TopicConnectivity, []byte{0x1a, 0x00}, true},
		{"connectivity created_at truncated", telemetry.TopicConnectivity, []byte{0x22, 0x03, 0x08}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec telemetry.Record
			err := DecodePayload(tt.topic, tt.payload, &rec)
			if !errors.Is(err, ErrMalformedPayload) {
				t.Fatalf("err = %v, want ErrMalformedPayload", err)
			}
			var wt wireTypeError
			if errors.As(err, &wt) != tt.wireType {
				t.Errorf("err = %v: wire type error %v, want %v", err, !tt.wireType, tt.wireType)
			}
			t.Log(err)
		})
	}

	var rec telemetry.Record
	for _, topic := range []telemetry.Topic{"metrics", "", "v"} {
		if err := DecodePayload(topic, nil, &rec); !errors.Is(err, ErrUnknownTopic) {
			t.Errorf("topic %q: err = %v, want ErrUnknownTopic", topic, err)
		}
	}
}

func TestDecodePayloadEdgeCases(t *testing.T) {
	var (
		tag    = protowire.AppendTag
		varint = protowire.AppendVarint
		bytes  = protowire.AppendBytes
		fixed  = protowire.AppendFixed64
	)
	field := func(n protowire.Number, typ protowire.Type) []byte { return tag(nil, n, typ) }
	dbl := func(n protowire.Number, f float64) []byte {
		return fixed(field(n, protowire.Fixed64Type), math.Float64bits(f))
	}
	vint := func(n protowire.Number, v uint64) []byte { return varint(field(n, protowire.VarintType), v) }
	sub := func(n protowire.Number, parts ...[]byte) []byte {
		return bytes(field(n, protowire.BytesType), slices.Concat(parts...))
	}
	// unknown fields of every wire type, group included.
	unknown := slices.Concat(
		vint(900, 7), dbl(901, 1), sub(902, []byte("x")),
		protowire.AppendFixed32(field(903, protowire.Fixed32Type), 3),
		field(904, protowire.StartGroupType), vint(1, 1), field(904, protowire.EndGroupType))
	soc := fieldNamed(t, "Soc")
	gear := fieldNamed(t, "Gear")
	doors := fieldNamed(t, "DoorState")
	loc := fieldNamed(t, "Location")
	datum := func(key telemetry.Field, value ...[]byte) []byte {
		return sub(1, vint(1, uint64(key)), slices.Concat(value...))
	}
	tests := []struct {
		name    string
		payload []byte
		want    []telemetry.Datum
	}{
		{"unknown fields everywhere", slices.Concat(unknown,
			datum(soc, unknown, sub(2, unknown, dbl(5, 55.5), unknown), unknown),
			datum(loc, sub(2, sub(7, dbl(1, 1.5), unknown, dbl(2, -2.5)))), unknown),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(55.5)}, {Field: loc, Value: telemetry.LocationValue(1.5, -2.5)}}},
		{"unknown oneof member", datum(soc, sub(2, vint(99, 1))), []telemetry.Datum{{Field: soc}}},
		{"unused member 20", datum(soc, sub(2, vint(20, 1))), []telemetry.Datum{{Field: soc}}},
		{"unknown member keeps earlier one", datum(soc, sub(2, dbl(5, 3), vint(99, 1))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(3)}}},
		{"unknown enum number", datum(gear, sub(2, vint(9, 42))),
			[]telemetry.Datum{{Field: gear, Value: telemetry.EnumNumber(telemetry.EnumShiftState, 42)}}},
		{"last member wins", datum(soc, sub(2, dbl(5, 3), vint(2, 4))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.IntValue(4)}}},
		{"last member wins over varint", datum(soc, sub(2, vint(2, 4), dbl(5, 3))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(3)}}},
		{"last member wins over string", datum(soc, sub(2, sub(1, []byte("x")), dbl(5, 3))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(3)}}},
		{"last member wins over location", datum(loc, sub(2, sub(7, dbl(1, 1)), vint(2, 3))),
			[]telemetry.Datum{{Field: loc, Value: telemetry.IntValue(3)}}},
		{"value after value", datum(soc, sub(2, dbl(5, 3)), sub(2, vint(2, 4))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.IntValue(4)}}},
		{"key after value", sub(1, sub(2, dbl(5, 3)), vint(1, uint64(soc))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(3)}}},
		{"key twice", datum(gear, vint(1, uint64(soc)), sub(2, dbl(5, 3))),
			[]telemetry.Datum{{Field: soc, Value: telemetry.FloatValue(3)}}},
		{"values merge", datum(loc, sub(2, sub(7, dbl(1, 1))), sub(2, sub(7, dbl(2, 2)))),
			[]telemetry.Datum{{Field: loc, Value: telemetry.LocationValue(1, 2)}}},
		{"other member in between resets", datum(loc, sub(2, sub(7, dbl(1, 1)), dbl(5, 9), sub(7, dbl(2, 2)))),
			[]telemetry.Datum{{Field: loc, Value: telemetry.LocationValue(0, 2)}}},
		{"doors merge and clear", datum(doors, sub(2, sub(21, vint(1, 1), vint(6, 1), vint(7, 1)), sub(21, vint(1, 0), vint(3, 1)))),
			[]telemetry.Datum{{Field: doors, Value: telemetry.DoorsValue(telemetry.PassengerFront | telemetry.TrunkRear)}}},
		{"doors after another member start afresh", datum(doors, sub(2, sub(21, vint(1, 1)), dbl(5, 1), sub(21, vint(3, 1)))),
			[]telemetry.Datum{{Field: doors, Value: telemetry.DoorsValue(telemetry.PassengerFront)}}},
		{"invalid false is still invalid", datum(soc, sub(2, vint(10, 0))), []telemetry.Datum{{Field: soc, Value: telemetry.InvalidValue()}}},
		{"datum without key", sub(1, sub(2, dbl(5, 1))), []telemetry.Datum{{Field: 0, Value: telemetry.FloatValue(1)}}},
		{"negative int32", datum(fieldNamed(t, "ChargeAmps"), sub(2, vint(2, uint64(math.MaxUint64)))),
			[]telemetry.Datum{{Field: fieldNamed(t, "ChargeAmps"), Value: telemetry.IntValue(-1)}}},
		{"int32 truncates", datum(fieldNamed(t, "ChargeAmps"), sub(2, vint(2, 1<<32+5))),
			[]telemetry.Datum{{Field: fieldNamed(t, "ChargeAmps"), Value: telemetry.IntValue(5)}}},
		{"old firmware strings", slices.Concat(
			datum(soc, sub(2, sub(1, []byte(" 79.147 ")))),
			datum(gear, sub(2, sub(1, []byte("ShiftStateR")))),
			datum(fieldNamed(t, "Locked"), sub(2, sub(1, []byte("true")))),
			datum(fieldNamed(t, "ChargeLimitSoc"), sub(2, sub(1, []byte("16")))),
			datum(fieldNamed(t, "ChargeLimitSoc"), sub(2, sub(1, []byte("n/a")))),
			datum(loc, sub(2, sub(1, []byte("(NaN N, 1 E)"))))),
			[]telemetry.Datum{
				{Field: soc, Value: telemetry.FloatValue(79.147)},
				{Field: gear, Value: telemetry.EnumNumber(telemetry.EnumShiftState, 3)},
				{Field: fieldNamed(t, "Locked"), Value: telemetry.BoolValue(true)},
				{Field: fieldNamed(t, "ChargeLimitSoc"), Value: telemetry.IntValue(16)},
				{Field: fieldNamed(t, "ChargeLimitSoc"), Value: telemetry.StringValue("n/a")},
				{Field: loc, Value: telemetry.StringValue("(NaN N, 1 E)")},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec telemetry.Record
			if err := DecodePayload(telemetry.TopicV, tt.payload, &rec); err != nil {
				t.Fatal(err)
			}
			if !equalData(rec.Data, tt.want) {
				t.Errorf("data:\n got %v\nwant %v", describeData(rec.Data), describeData(tt.want))
			}
			if !rec.CreatedAt.IsZero() {
				t.Errorf("created at = %v, want zero (absent)", rec.CreatedAt)
			}
		})
	}
}

// TestDecodePayloadAppends checks that a decode appends to the record's
// slices, as a caller that Resets and reuses it relies on.
func TestDecodePayloadAppends(t *testing.T) {
	payload := readPayload(t, "02_v_location.payload.bin")
	var rec telemetry.Record
	for range 3 {
		rec.Reset()
		if err := DecodePayload(telemetry.TopicV, payload, &rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.Data) != 5 {
			t.Fatalf("%d data after reset, want 5", len(rec.Data))
		}
	}
	if err := DecodePayload(telemetry.TopicV, payload, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Data) != 10 {
		t.Errorf("%d data without reset, want 10", len(rec.Data))
	}
}

// TestDecodePayloadStringsOwned checks the memory invariant: the record's
// strings do not alias the caller's buffer, and share one copy of it.
func TestDecodePayloadStringsOwned(t *testing.T) {
	tests := []struct {
		file  string
		topic telemetry.Topic
	}{
		{"01_v_scalar_types.payload.bin", telemetry.TopicV},
		{"03_v_string_transforms.payload.bin", telemetry.TopicV},
		{"08_alerts.payload.bin", telemetry.TopicAlerts},
		{"09_errors.payload.bin", telemetry.TopicErrors},
		{"10_connectivity_server_internal.payload.bin", telemetry.TopicConnectivity},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			buf := readPayload(t, tt.file)
			var rec telemetry.Record
			if err := DecodePayload(tt.topic, buf, &rec); err != nil {
				t.Fatal(err)
			}
			want := cloneRecord(&rec)
			strs := recordStrings(&rec)
			if len(strs) == 0 {
				t.Fatal("no strings in the record")
			}
			lo, hi := uintptr(math.MaxUint), uintptr(0)
			for _, s := range strs {
				p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
				lo, hi = min(lo, p), max(hi, p+uintptr(len(s)))
			}
			if hi-lo > uintptr(len(buf)) {
				t.Errorf("strings span %d bytes, more than the %d-byte payload: not one arena", hi-lo, len(buf))
			}
			for i := range buf {
				buf[i] = 0xff // the caller reuses its buffer
			}
			if diff := diffRecords(&rec, want); diff != "" {
				t.Errorf("record changed with the caller's buffer:%s", diff)
			}
		})
	}
}

// recordStrings returns the non-empty strings a record holds.
func recordStrings(rec *telemetry.Record) []string {
	var strs []string
	add := func(s string) {
		if s != "" {
			strs = append(strs, s)
		}
	}
	for _, d := range rec.Data {
		add(d.Value.Str())
		if raw, ok := d.Value.Raw(); ok && d.Value.Kind() != telemetry.KindEnumValue {
			add(raw) // an enum's raw string is its static name
		}
	}
	for _, a := range rec.Alerts {
		add(a.Name)
	}
	for _, e := range rec.Errors {
		add(e.Name)
		add(e.Body)
		for k, v := range e.Tags {
			add(k)
			add(v)
		}
	}
	add(rec.Connectivity.ConnectionID)
	add(rec.Connectivity.NetworkInterface)
	return strs
}

// cloneRecord copies rec deeply, strings included.
func cloneRecord(rec *telemetry.Record) *telemetry.Record {
	c := *rec
	c.Data = nil
	for _, d := range rec.Data {
		if raw, ok := d.Value.Raw(); ok {
			d.Value = telemetry.Normalize(d.Field, telemetry.StringValue(strings.Clone(raw)))
		} else if d.Value.Kind() == telemetry.KindStringValue {
			d.Value = telemetry.StringValue(strings.Clone(d.Value.Str()))
		}
		c.Data = append(c.Data, d)
	}
	c.Alerts = nil
	for _, a := range rec.Alerts {
		a.Name = strings.Clone(a.Name)
		a.Audiences = slices.Clone(a.Audiences)
		c.Alerts = append(c.Alerts, a)
	}
	c.Errors = nil
	for _, e := range rec.Errors {
		e.Name, e.Body = strings.Clone(e.Name), strings.Clone(e.Body)
		tags := e.Tags
		e.Tags = nil
		for k, v := range tags {
			if e.Tags == nil {
				e.Tags = make(map[string]string)
			}
			e.Tags[strings.Clone(k)] = strings.Clone(v)
		}
		c.Errors = append(c.Errors, e)
	}
	c.Connectivity.ConnectionID = strings.Clone(rec.Connectivity.ConnectionID)
	c.Connectivity.NetworkInterface = strings.Clone(rec.Connectivity.NetworkInterface)
	return &c
}

// TestDecodePayloadAllocs pins the allocation budget of a V record into a
// reused Record: nothing without strings, one allocation with them.
func TestDecodePayloadAllocs(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    float64
	}{
		{"typed, no strings", readPayload(t, "06_v_many_fields.payload.bin"), 0},
		{"typed with strings", readPayload(t, "01_v_scalar_types.payload.bin"), 1},
		{"old firmware strings", readPayload(t, "03_v_string_transforms.payload.bin"), 1},
		{"20 mixed fields", mixedPayload(t), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec telemetry.Record
			allocs := testing.AllocsPerRun(100, func() {
				rec.Reset()
				if err := DecodePayload(telemetry.TopicV, tt.payload, &rec); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != tt.want {
				t.Errorf("%v allocations per record, want %v", allocs, tt.want)
			}
		})
	}
}

// mixedPayload is a 20-field V payload of mixed kinds, as a car configured
// for a typical dashboard sends it: 8 doubles, 3 floats, 3 ints, 2 bools,
// 2 enums, 1 string and 1 location.
func mixedPayload(t testing.TB) []byte {
	t.Helper()
	var data []*schema.Datum
	add := func(name string, v *schema.Value) {
		f := fieldNamed(t, name)
		data = append(data, &schema.Datum{Key: schema.Field(f), Value: v})
	}
	double := func(f float64) *schema.Value { return &schema.Value{Value: &schema.Value_DoubleValue{DoubleValue: f}} }
	float := func(f float32) *schema.Value { return &schema.Value{Value: &schema.Value_FloatValue{FloatValue: f}} }
	integer := func(i int32) *schema.Value { return &schema.Value{Value: &schema.Value_IntValue{IntValue: i}} }
	boolean := func(b bool) *schema.Value { return &schema.Value{Value: &schema.Value_BooleanValue{BooleanValue: b}} }
	add("Soc", double(79.125))
	add("Odometer", double(31337.25))
	add("EstBatteryRange", double(251.37))
	add("BatteryLevel", double(78.5))
	add("PackVoltage", double(398.25))
	add("PackCurrent", double(-12.5))
	add("GpsHeading", double(271.5))
	add("RatedRange", double(240.1))
	add("VehicleSpeed", float(65.5))
	add("InsideTemp", float(21.5))
	add("OutsideTemp", float(-3.25))
	add("ChargeLimitSoc", integer(80))
	add("ChargeAmps", integer(16))
	add("ChargeCurrentRequest", integer(32))
	add("Locked", boolean(true))
	add("SentryMode", boolean(false))
	add("Gear", &schema.Value{Value: &schema.Value_ShiftStateValue{ShiftStateValue: schema.ShiftState(4)}})
	add("DetailedChargeState", &schema.Value{Value: &schema.Value_DetailedChargeStateValue{DetailedChargeStateValue: schema.DetailedChargeStateValue(4)}})
	add("VehicleName", &schema.Value{Value: &schema.Value_StringValue{StringValue: "Golden Test Car"}})
	add("Location", &schema.Value{Value: &schema.Value_LocationValue{LocationValue: &schema.LocationValue{Latitude: 37.412374, Longitude: -122.145867}}})
	b, err := proto.Marshal(&schema.Payload{Data: data, CreatedAt: timestamppb.New(utc("2026-01-01T00:00:00Z"))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Reference conversion: from the generated structs to a Record, through the
// protobuf descriptors rather than the decoder's generated oneof table.

func refTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || ts.Seconds == 0 && ts.Nanos == 0 {
		return time.Time{}
	}
	return ts.AsTime()
}

func refAlertTime(ts *timestamppb.Timestamp) time.Time {
	if ts != nil && ts.Seconds >= 315576000000 {
		return time.UnixMilli(ts.Seconds).UTC()
	}
	return refTime(ts)
}

func refValue(t testing.TB, v *schema.Value) telemetry.Value {
	if v == nil {
		return telemetry.Value{}
	}
	m := v.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("value"))
	if fd == nil {
		return telemetry.Value{}
	}
	x := m.Get(fd)
	switch fd.Kind() {
	case protoreflect.StringKind:
		return telemetry.StringValue(x.String())
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		return telemetry.IntValue(x.Int())
	case protoreflect.FloatKind:
		return telemetry.Float32Value(float32(x.Float()))
	case protoreflect.DoubleKind:
		return telemetry.FloatValue(x.Float())
	case protoreflect.BoolKind:
		if fd.Name() == "invalid" {
			return telemetry.InvalidValue()
		}
		return telemetry.BoolValue(x.Bool())
	case protoreflect.EnumKind:
		e, ok := telemetry.EnumByName(string(fd.Enum().Name()))
		if !ok {
			t.Fatalf("member %s: no telemetry enum %s", fd.Name(), fd.Enum().Name())
		}
		return telemetry.EnumNumber(e, int32(x.Enum()))
	case protoreflect.MessageKind:
		switch sub := x.Message().Interface().(type) {
		case *schema.LocationValue:
			return telemetry.LocationValue(sub.Latitude, sub.Longitude)
		case *schema.Doors:
			var d telemetry.Doors
			for i, b := range []bool{sub.DriverFront, sub.DriverRear, sub.PassengerFront, sub.PassengerRear, sub.TrunkFront, sub.TrunkRear} {
				if b {
					d |= 1 << i
				}
			}
			return telemetry.DoorsValue(d)
		case *schema.TireLocation:
			var tl telemetry.Tires
			for i, b := range []bool{sub.FrontLeft, sub.FrontRight, sub.RearLeft, sub.RearRight,
				sub.SemiMiddleAxleLeft_2, sub.SemiMiddleAxleRight_2, sub.SemiRearAxleLeft, sub.SemiRearAxleRight,
				sub.SemiRearAxleLeft_2, sub.SemiRearAxleRight_2} {
				if b {
					tl |= 1 << i
				}
			}
			return telemetry.TiresValue(tl)
		case *schema.Time:
			return telemetry.TimeValue(sub.Hour, sub.Minute, sub.Second)
		}
	}
	t.Fatalf("member %s: no reference conversion", fd.Name())
	return telemetry.Value{}
}

// refRecord converts a generated message of topic into a Record.
func refRecord(t testing.TB, topic telemetry.Topic, m proto.Message) *telemetry.Record {
	rec := &telemetry.Record{Topic: topic}
	switch m := m.(type) {
	case *schema.Payload:
		rec.CreatedAt = refTime(m.CreatedAt)
		rec.Resend = m.IsResend
		for _, d := range m.Data {
			// Refused on purpose (see DecodePayload): field numbers past
			// MaxFieldNumber, items past MaxRecordItems.
			f := telemetry.Field(d.Key)
			if f < 0 || int(f) > MaxFieldNumber || len(rec.Data) == MaxRecordItems {
				continue
			}
			rec.Data = append(rec.Data, telemetry.Datum{Field: f, Value: telemetry.Normalize(f, refValue(t, d.Value))})
		}
	case *schema.VehicleAlerts:
		rec.CreatedAt = refTime(m.CreatedAt)
		for _, a := range m.Alerts[:min(len(m.Alerts), MaxRecordItems)] {
			var aud []telemetry.Audience
			for _, x := range a.Audiences {
				if x < 0 || x > 3 {
					x = 0
				}
				aud = append(aud, telemetry.Audience(x))
			}
			rec.Alerts = append(rec.Alerts, telemetry.Alert{Name: a.Name, Audiences: aud,
				StartedAt: refAlertTime(a.StartedAt), EndedAt: refAlertTime(a.EndedAt)})
		}
	case *schema.VehicleErrors:
		rec.CreatedAt = refTime(m.CreatedAt)
		for _, e := range m.Errors[:min(len(m.Errors), MaxRecordItems)] {
			rec.Errors = append(rec.Errors, telemetry.VehicleError{Name: e.Name, CreatedAt: refTime(e.CreatedAt), Tags: e.Tags, Body: e.Body})
		}
	case *schema.VehicleConnectivity:
		s := m.Status
		if s < 0 || s > 2 {
			s = 0
		}
		rec.Connectivity = telemetry.Connectivity{ConnectionID: m.ConnectionId, Status: telemetry.Status(s),
			NetworkInterface: m.NetworkInterface, CreatedAt: refTime(m.CreatedAt)}
		rec.CreatedAt = rec.Connectivity.CreatedAt
	default:
		t.Fatalf("no reference conversion for %T", m)
	}
	return rec
}

// topicMessage returns an empty generated message for topic.
func topicMessage(topic telemetry.Topic) proto.Message {
	switch topic {
	case telemetry.TopicV:
		return &schema.Payload{}
	case telemetry.TopicAlerts:
		return &schema.VehicleAlerts{}
	case telemetry.TopicErrors:
		return &schema.VehicleErrors{}
	case telemetry.TopicConnectivity:
		return &schema.VehicleConnectivity{}
	}
	return nil
}

// randomizer builds random messages with the generated code.
type randomizer struct {
	r *rand.Rand
}

// strings the decoder must treat in interesting ways: numbers, booleans,
// enum names and locations that normalise, and strings that do not.
var interestingStrings = []string{
	"", "79.147", " 42 ", "1.5e-3", "-0", "true", "False", "1", "D", "ShiftStateR", "Charging",
	"(37.412374 N, 122.145867 W)", "(91 N, 0 E)", "12.5, -3", "NaN", "inf", "0x1p-2", "n/a",
	"日本語", "Golden Test Car", "2025.44.25.5 abcdef123456",
}

func (z randomizer) string() string {
	if z.r.IntN(2) == 0 {
		return interestingStrings[z.r.IntN(len(interestingStrings))]
	}
	b := make([]byte, z.r.IntN(24))
	for i := range b {
		b[i] = byte(' ' + z.r.IntN(95))
	}
	return string(b)
}

func (z randomizer) timestamp() *timestamppb.Timestamp {
	switch z.r.IntN(6) {
	case 0:
		return nil
	case 1:
		return &timestamppb.Timestamp{}
	case 2:
		return &timestamppb.Timestamp{Seconds: 1767225590000 + z.r.Int64N(1e6)} // milliseconds
	}
	return &timestamppb.Timestamp{Seconds: 1767225600 + z.r.Int64N(1e6), Nanos: z.r.Int32N(1e9)}
}

// fill sets random values on every field of m that fill knows, recursing
// into messages; for a oneof it sets one member, chosen at random.
func (z randomizer) fill(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() {
			continue
		}
		if z.r.IntN(4) == 0 {
			continue // leave at default
		}
		z.set(m, fd)
	}
	oneofs := m.Descriptor().Oneofs()
	for i := range oneofs.Len() {
		od := oneofs.Get(i)
		if z.r.IntN(20) == 0 {
			continue // no member set
		}
		z.set(m, od.Fields().Get(z.r.IntN(od.Fields().Len())))
	}
}

func (z randomizer) set(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	if fd.IsList() {
		l := m.Mutable(fd).List()
		for range z.r.IntN(4) {
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				z.fill(e.Message())
				l.Append(e)
			} else {
				l.Append(z.scalar(fd))
			}
		}
		return
	}
	if fd.IsMap() {
		mp := m.Mutable(fd).Map()
		for range z.r.IntN(4) {
			mp.Set(protoreflect.ValueOfString(z.string()).MapKey(), protoreflect.ValueOfString(z.string()))
		}
		return
	}
	if fd.Kind() == protoreflect.MessageKind {
		if fd.Message().FullName() == "google.protobuf.Timestamp" {
			if ts := z.timestamp(); ts != nil {
				m.Set(fd, protoreflect.ValueOfMessage(ts.ProtoReflect()))
			}
			return
		}
		sub := m.Mutable(fd).Message()
		z.fill(sub)
		return
	}
	m.Set(fd, z.scalar(fd))
}

func (z randomizer) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(z.string())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(z.r.IntN(2) == 0)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(z.r.Uint32()) >> z.r.IntN(32))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(int64(z.r.Uint64()) >> z.r.IntN(64))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(z.r.NormFloat64() * 1000))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(z.r.NormFloat64() * math.Pow(10, float64(z.r.IntN(12)-4)))
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if z.r.IntN(10) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(values.Len() + z.r.IntN(100))) // newer than us
		}
		return protoreflect.ValueOfEnum(values.Get(z.r.IntN(values.Len())).Number())
	}
	panic("randomizer: no scalar of kind " + fd.Kind().String())
}

// unknown appends random fields unknown to every message of the protocol
// (numbers from 1000 up), of every wire type.
func (z randomizer) unknown(m protoreflect.Message) {
	var b []byte
	for range z.r.IntN(3) {
		num := protowire.Number(1000 + z.r.IntN(1000))
		switch z.r.IntN(5) {
		case 0:
			b = protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), z.r.Uint64())
		case 1:
			b = protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), z.r.Uint32())
		case 2:
			b = protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), z.r.Uint64())
		case 3:
			b = protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), []byte(z.string()))
		case 4:
			b = protowire.AppendTag(b, num, protowire.StartGroupType)
			b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 1)
			b = protowire.AppendTag(b, num, protowire.EndGroupType)
		}
	}
	m.SetUnknown(append(m.GetUnknown(), b...))
}

// sprinkle adds unknown fields to m and every message below it.
func (z randomizer) sprinkle(m protoreflect.Message) {
	if z.r.IntN(3) == 0 {
		z.unknown(m)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := range v.List().Len() {
				z.sprinkle(v.List().Get(i).Message())
			}
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			z.sprinkle(v.Message())
		}
		return true
	})
}

// TestDecodePayloadDifferential decodes random messages of every topic,
// built with the generated code (every oneof member, random values, unknown
// fields), and compares the result with the reference conversion of the
// generated structs.
func TestDecodePayloadDifferential(t *testing.T) {
	z := randomizer{r: rand.New(rand.NewPCG(1, 2))}
	members := make(map[protoreflect.Name]int)
	const n = 3000
	for _, topic := range []telemetry.Topic{telemetry.TopicV, telemetry.TopicAlerts, telemetry.TopicErrors, telemetry.TopicConnectivity} {
		for i := range n {
			m := topicMessage(topic)
			if topic == telemetry.TopicV {
				// Several data per payload, every oneof member in turn.
				p := m.(*schema.Payload)
				od := (&schema.Value{}).ProtoReflect().Descriptor().Oneofs().ByName("value")
				for j := range 1 + z.r.IntN(8) {
					v := &schema.Value{}
					fd := od.Fields().Get((i*8 + j) % od.Fields().Len())
					z.set(v.ProtoReflect(), fd)
					members[fd.Name()]++
					d := &schema.Datum{Key: schema.Field(z.r.IntN(300)), Value: v}
					if z.r.IntN(30) == 0 {
						d.Value = nil
					}
					p.Data = append(p.Data, d)
				}
				p.CreatedAt, p.IsResend, p.Vin = z.timestamp(), z.r.IntN(2) == 0, z.string()
			} else {
				z.fill(m.ProtoReflect())
			}
			z.sprinkle(m.ProtoReflect())
			b, err := proto.MarshalOptions{Deterministic: z.r.IntN(2) == 0}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if topic == telemetry.TopicV {
				checkDatumPaths(t, b)
			}
			var rec telemetry.Record
			if err := DecodePayload(topic, b, &rec); err != nil {
				t.Fatalf("%s #%d: %v\n%x", topic, i, err, b)
			}
			if diff := diffRecords(&rec, refRecord(t, topic, m)); diff != "" {
				t.Fatalf("%s #%d:%s\n%x", topic, i, diff, b)
			}
		}
	}
	od := (&schema.Value{}).ProtoReflect().Descriptor().Oneofs().ByName("value")
	if len(members) != od.Fields().Len() {
		t.Errorf("covered %d oneof members, want %d", len(members), od.Fields().Len())
	}
}

// TestValueMembersMatchSchema checks the generated oneof table against the
// protobuf descriptor of Value.
func TestValueMembersMatchSchema(t *testing.T) {
	od := (&schema.Value{}).ProtoReflect().Descriptor().Oneofs().ByName("value")
	known := 0
	for i, m := range valueMembers {
		if m.kind != 0 {
			known++
			if od.Fields().ByNumber(protowire.Number(i)) == nil {
				t.Errorf("member %d (%s) not in the schema", i, m.name)
			}
		}
	}
	for i := range od.Fields().Len() {
		fd := od.Fields().Get(i)
		n := int(fd.Number())
		if n >= len(valueMembers) || valueMembers[n].kind == 0 {
			t.Errorf("schema member %d (%s) not in valueMembers", n, fd.Name())
			continue
		}
		m := valueMembers[n]
		if m.name != string(fd.Name()) {
			t.Errorf("member %d: name %s, schema %s", n, m.name, fd.Name())
		}
		if fd.Kind() == protoreflect.EnumKind && (m.kind != memberEnum || m.enum.Name != string(fd.Enum().Name())) {
			t.Errorf("member %d: enum %v, schema %s", n, m.enum, fd.Enum().Name())
		}
	}
	if known != od.Fields().Len() {
		t.Errorf("%d members, schema has %d", known, od.Fields().Len())
	}
}
