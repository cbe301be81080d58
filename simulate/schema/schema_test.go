package schema_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleet2mqtt/fleet2mqtt/internal/telemetryspec"
	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
)

const (
	framesDir = "../../testdata/vehicle-frames"
	specDir   = "../../telemetry/spec"
)

// upstreamMessages maps Tesla's message names, as the manifest spells them,
// to our wire-compatible types.
var upstreamMessages = map[string]func() proto.Message{
	"telemetry.vehicle_data.Payload":                     func() proto.Message { return new(schema.Payload) },
	"telemetry.vehicle_alerts.VehicleAlerts":             func() proto.Message { return new(schema.VehicleAlerts) },
	"telemetry.vehicle_error.VehicleErrors":              func() proto.Message { return new(schema.VehicleErrors) },
	"telemetry.vehicle_connectivity.VehicleConnectivity": func() proto.Message { return new(schema.VehicleConnectivity) },
}

// txTypeMessages maps a record's txtype to the upstream message it carries.
var txTypeMessages = map[string]string{
	"V":            "telemetry.vehicle_data.Payload",
	"alerts":       "telemetry.vehicle_alerts.VehicleAlerts",
	"errors":       "telemetry.vehicle_error.VehicleErrors",
	"connectivity": "telemetry.vehicle_connectivity.VehicleConnectivity",
}

// outOfScope lists payload types of the golden frames that this schema
// deliberately does not define.
var outOfScope = map[string]bool{
	"telemetry.vehicle_metrics.VehicleMetrics": true,
}

type manifest struct {
	Generator struct {
		LiveConnectivityEvents struct {
			Records []dispatchedRecord `json:"records_on_connect_and_disconnect"`
		} `json:"live_connectivity_events"`
	} `json:"generator"`
	Cases []goldenCase `json:"cases"`
}

type goldenCase struct {
	Name               string          `json:"name"`
	PayloadFile        string          `json:"payload_file"`
	PayloadSHA256      string          `json:"payload_sha256"`
	PayloadProto       string          `json:"payload_proto"`
	PayloadDecoded     json.RawMessage `json:"payload_decoded"`
	PayloadDecodeError string          `json:"payload_decode_error"`
	LiveServerRun      *struct {
		DispatchedRecords []dispatchedRecord `json:"dispatched_records"`
		MQTTPublications  []mqttPublication  `json:"mqtt_publications"`
	} `json:"live_server_run"`
}

type dispatchedRecord struct {
	TxType     string          `json:"txtype"`
	PayloadB64 string          `json:"payload_after_server_transforms_b64"`
	Transmit   json.RawMessage `json:"transmit_decoded_records_json"`
}

type mqttPublication struct {
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
}

func loadManifest(t testing.TB) *manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(framesDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parse manifest: %v", err)
	}
	if len(m.Cases) == 0 {
		t.Fatal("manifest has no cases")
	}
	return &m
}

// readPayload reads a case's payload file and checks it is the one the
// manifest describes.
func readPayload(t testing.TB, c goldenCase) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(framesDir, c.PayloadFile))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != c.PayloadSHA256 {
		t.Fatalf("%s: sha256 %x, manifest says %s", c.PayloadFile, sum, c.PayloadSHA256)
	}
	return b
}

// decodeObject decodes manifest JSON keeping numbers exact.
func decodeObject(t testing.TB, raw json.RawMessage) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return obj
}

// get returns obj[key] as a T, failing the test when the manifest has
// something else there.
func get[T any](t testing.TB, obj map[string]any, key string) T {
	t.Helper()
	v, ok := obj[key].(T)
	if !ok {
		t.Fatalf("manifest: %q is %T, want %T", key, obj[key], *new(T))
	}
	return v
}

// TestGoldenPayloads decodes every golden payload with our types and
// compares it with the manifest's payload_decoded, or expects the decode
// error the manifest records.
func TestGoldenPayloads(t *testing.T) {
	m := loadManifest(t)
	covered := map[string]bool{}
	for _, c := range m.Cases {
		if c.PayloadFile == "" {
			continue
		}
		covered[c.PayloadFile] = true
		t.Run(c.Name, func(t *testing.T) {
			raw := readPayload(t, c)
			if outOfScope[c.PayloadProto] {
				t.Skipf("%s is not part of this schema", c.PayloadProto)
			}
			newMsg, ok := upstreamMessages[c.PayloadProto]
			if !ok {
				t.Fatalf("no type for %s", c.PayloadProto)
			}
			msg := newMsg()
			err := proto.Unmarshal(raw, msg)
			if c.PayloadDecodeError != "" {
				if err == nil {
					t.Fatalf("unmarshal succeeded, manifest says %q", c.PayloadDecodeError)
				}
				return
			}
			if err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			want := decodeObject(t, c.PayloadDecoded)
			if p, ok := msg.(*schema.Payload); ok {
				matchPayload(t, p, want)
				return
			}
			matchMessage(t, c.PayloadProto, msg.ProtoReflect(), want)
		})
	}

	files, err := filepath.Glob(filepath.Join(framesDir, "*.payload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden payloads")
	}
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s is not described by the manifest", filepath.Base(f))
		}
	}
}

func matchPayload(t *testing.T, p *schema.Payload, want map[string]any) {
	t.Helper()
	created, err := time.Parse(time.RFC3339Nano, get[string](t, want, "created_at"))
	if err != nil {
		t.Fatalf("manifest created_at: %v", err)
	}
	if got := p.GetCreatedAt().AsTime(); !got.Equal(created) {
		t.Errorf("created_at = %v, want %v", got, created)
	}
	if got, want := p.GetIsResend(), get[bool](t, want, "is_resend"); got != want {
		t.Errorf("is_resend = %v, want %v", got, want)
	}
	if got, want := p.GetVin(), get[string](t, want, "vin"); got != want {
		t.Errorf("vin = %q, want %q", got, want)
	}
	items := get[[]any](t, want, "data")
	if len(p.GetData()) != len(items) {
		t.Fatalf("%d data, want %d", len(p.GetData()), len(items))
	}
	for i, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("manifest data[%d] is %T", i, item)
		}
		matchDatum(t, "data["+strconv.Itoa(i)+"]", p.GetData()[i], obj)
	}
}

func matchDatum(t *testing.T, path string, d *schema.Datum, want map[string]any) {
	t.Helper()
	key, num := get[string](t, want, "key"), get[json.Number](t, want, "key_number")
	if d.GetKey().String() != key || strconv.Itoa(int(d.GetKey())) != num.String() {
		t.Errorf("%s.key = %s (%d), want %s (%s)", path, d.GetKey(), d.GetKey(), key, num)
	}
	if present := get[bool](t, want, "value_present"); (d.GetValue() != nil) != present {
		t.Errorf("%s.value present = %v, want %v", path, d.GetValue() != nil, present)
		return
	}
	if d.GetValue() == nil {
		return
	}
	v := d.GetValue().ProtoReflect()
	which := v.WhichOneof(v.Descriptor().Oneofs().ByName("value"))
	member := get[string](t, want, "value_type")
	if member == "" {
		if which != nil {
			t.Errorf("%s.value has %s set, want no member", path, which.Name())
		}
		return
	}
	if which == nil || string(which.Name()) != member {
		t.Errorf("%s.value member = %v, want %s", path, which, member)
		return
	}
	if n := get[json.Number](t, want, "value_field_number"); strconv.Itoa(int(which.Number())) != n.String() {
		t.Errorf("%s.value.%s number = %d, want %s", path, member, which.Number(), n)
	}
	protoType := get[string](t, want, "value_proto_type")
	if i := strings.LastIndexAny(protoType, " ."); i >= 0 {
		protoType = protoType[i+1:]
	}
	if got := typeName(which); got != protoType {
		t.Errorf("%s.value.%s type = %s, want %s", path, member, got, protoType)
	}
	matchValue(t, path+".value."+member, which, v.Get(which), want["value"])
}

func matchValue(t *testing.T, path string, fd protoreflect.FieldDescriptor, v protoreflect.Value, want any) {
	t.Helper()
	if fd.Message() == nil {
		matchScalar(t, path, fd, v, want)
		return
	}
	obj, ok := want.(map[string]any)
	if !ok {
		t.Errorf("%s: manifest has %T for a message", path, want)
		return
	}
	matchMessage(t, path, v.Message(), obj)
}

// matchMessage compares m with a manifest object whose keys are proto
// field names. Fields the object leaves out must be unset; a Timestamp's
// object may add its rfc3339 rendering.
func matchMessage(t *testing.T, path string, m protoreflect.Message, want map[string]any) {
	t.Helper()
	fields := m.Descriptor().Fields()
	isTimestamp := m.Descriptor().FullName() == "google.protobuf.Timestamp"
	for k, w := range want {
		if isTimestamp && k == "rfc3339" {
			s, _ := w.(string)
			ts, err := time.Parse(time.RFC3339Nano, s)
			if got := m.Interface().(*timestamppb.Timestamp).AsTime(); err != nil || !got.Equal(ts) {
				t.Errorf("%s = %v, manifest says %v", path, got, w)
			}
			continue
		}
		if fields.ByName(protoreflect.Name(k)) == nil {
			t.Errorf("%s.%s: manifest field missing from schema", path, k)
		}
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		p := path + "." + string(fd.Name())
		w, ok := want[string(fd.Name())]
		switch {
		case !ok:
			if m.Has(fd) {
				t.Errorf("%s is set (%v), manifest has none", p, m.Get(fd))
			}
		case fd.IsMap():
			obj, _ := w.(map[string]any)
			got := m.Get(fd).Map()
			if got.Len() != len(obj) {
				t.Errorf("%s has %d entries, want %d", p, got.Len(), len(obj))
			}
			for k, wv := range obj {
				gv := got.Get(protoreflect.ValueOfString(k).MapKey())
				matchValue(t, p+"["+k+"]", fd.MapValue(), gv, wv)
			}
		case fd.IsList():
			list, _ := w.([]any)
			got := m.Get(fd).List()
			if got.Len() != len(list) {
				t.Errorf("%s has %d elements, want %d", p, got.Len(), len(list))
				continue
			}
			for j, wv := range list {
				matchValue(t, p+"["+strconv.Itoa(j)+"]", fd, got.Get(j), wv)
			}
		case fd.Message() != nil && !m.Has(fd):
			t.Errorf("%s is unset, want %v", p, w)
		default:
			matchValue(t, p, fd, m.Get(fd), w)
		}
	}
}

func matchScalar(t *testing.T, path string, fd protoreflect.FieldDescriptor, v protoreflect.Value, want any) {
	t.Helper()
	text := ""
	switch w := want.(type) {
	case json.Number:
		text = w.String()
	case string:
		text = w
	}
	var ok bool
	switch fd.Kind() {
	case protoreflect.BoolKind:
		b, isBool := want.(bool)
		ok = isBool && b == v.Bool()
	case protoreflect.StringKind:
		s, isString := want.(string)
		ok = isString && s == v.String()
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		s, isString := want.(string)
		ok = isString && ev != nil && string(ev.Name()) == s
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(text, 10, 64)
		ok = err == nil && n == v.Int()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(text, 10, 64)
		ok = err == nil && n == v.Uint()
	case protoreflect.FloatKind:
		f, err := strconv.ParseFloat(text, 32)
		ok = err == nil && float32(f) == float32(v.Float())
	case protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(text, 64)
		ok = err == nil && f == v.Float()
	default:
		t.Errorf("%s: kind %s not handled by the test", path, fd.Kind())
		return
	}
	if !ok {
		t.Errorf("%s = %v, manifest says %v", path, v.Interface(), want)
	}
}

// typeName spells a field's type as the spec tables do: a scalar kind, or
// the name of a message or enum (fully qualified outside our package).
func typeName(fd protoreflect.FieldDescriptor) string {
	var full protoreflect.FullName
	switch {
	case fd.IsMap():
		return "map<" + typeName(fd.MapKey()) + ", " + typeName(fd.MapValue()) + ">"
	case fd.Message() != nil:
		full = fd.Message().FullName()
	case fd.Enum() != nil:
		full = fd.Enum().FullName()
	default:
		return fd.Kind().String()
	}
	if full.Parent() == protoPackage() {
		return string(full.Name())
	}
	return string(full)
}

func protoPackage() protoreflect.FullName {
	return schema.Field(0).Descriptor().ParentFile().Package()
}

// serverRecords lists every record the reference server dispatched, with the
// payload after its transforms and the JSON it transmitted.
func serverRecords(t *testing.T) map[string]dispatchedRecord {
	t.Helper()
	m := loadManifest(t)
	out := map[string]dispatchedRecord{}
	for _, c := range m.Cases {
		if c.LiveServerRun == nil {
			continue
		}
		for i, r := range c.LiveServerRun.DispatchedRecords {
			out[c.Name+"/"+r.TxType+"_"+strconv.Itoa(i)] = r
		}
	}
	for i, r := range m.Generator.LiveConnectivityEvents.Records {
		out["live_connectivity/"+r.TxType+"_"+strconv.Itoa(i)] = r
	}
	if len(out) == 0 {
		t.Fatal("manifest has no dispatched records")
	}
	return out
}

func decodeRecord(t *testing.T, r dispatchedRecord) proto.Message {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(r.PayloadB64)
	if err != nil {
		t.Fatalf("payload base64: %v", err)
	}
	newMsg, ok := upstreamMessages[txTypeMessages[r.TxType]]
	if !ok {
		t.Fatalf("no type for txtype %q", r.TxType)
	}
	msg := newMsg()
	if err := proto.Unmarshal(raw, msg); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return msg
}

// TestServerRecords decodes the payloads the reference server dispatched
// (after its transforms) and checks that protojson renders them exactly as
// the server transmitted them, which also proves our JSON names match.
func TestServerRecords(t *testing.T) {
	for name, r := range serverRecords(t) {
		t.Run(name, func(t *testing.T) {
			msg := decodeRecord(t, r)
			got, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			var gotJSON, wantJSON any
			if err := json.Unmarshal(got, &gotJSON); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(r.Transmit, &wantJSON); err != nil {
				t.Fatalf("manifest: %v", err)
			}
			if !reflect.DeepEqual(gotJSON, wantJSON) {
				t.Errorf("protojson:\n%s\nmanifest:\n%s", got, r.Transmit)
			}
		})
	}
}

// vehicleTime reads a vehicle timestamp whose seconds may hold milliseconds.
func vehicleTime(ts *timestamppb.Timestamp) time.Time {
	const msThreshold = 315576000000
	if ts.GetSeconds() >= msThreshold {
		return time.UnixMilli(ts.GetSeconds()).UTC()
	}
	return ts.AsTime()
}

// TestGoldenRecordsMatchMQTT checks, through the typed Go API, that the raw
// alerts, errors and connectivity payloads carry what the reference server
// published to MQTT for them.
func TestGoldenRecordsMatchMQTT(t *testing.T) {
	m := loadManifest(t)
	checked := 0
	for _, c := range m.Cases {
		if c.PayloadFile == "" || c.LiveServerRun == nil || c.PayloadDecodeError != "" {
			continue
		}
		var check func(t *testing.T, raw []byte, pubs []mqttPublication)
		switch c.PayloadProto {
		case "telemetry.vehicle_alerts.VehicleAlerts":
			check = checkAlertsMQTT
		case "telemetry.vehicle_error.VehicleErrors":
			check = checkErrorsMQTT
		case "telemetry.vehicle_connectivity.VehicleConnectivity":
			check = checkConnectivityMQTT
		default:
			continue
		}
		checked++
		t.Run(c.Name, func(t *testing.T) {
			if len(c.LiveServerRun.MQTTPublications) == 0 {
				t.Fatal("manifest has no MQTT publications")
			}
			check(t, readPayload(t, c), c.LiveServerRun.MQTTPublications)
		})
	}
	if checked != 3 {
		t.Errorf("checked %d alerts/errors/connectivity cases, want 3", checked)
	}
}

// alertEntry is an alert as the reference server publishes it, with
// timestamps in whole seconds.
type alertEntry struct {
	Audiences []string
	StartedAt string
	EndedAt   string
}

func checkAlertsMQTT(t *testing.T, raw []byte, pubs []mqttPublication) {
	var msg schema.VehicleAlerts
	if err := proto.Unmarshal(raw, &msg); err != nil {
		t.Fatal(err)
	}
	got := map[string][]alertEntry{}
	for _, a := range msg.GetAlerts() {
		e := alertEntry{StartedAt: vehicleTime(a.GetStartedAt()).Format(time.RFC3339)}
		for _, au := range a.GetAudiences() {
			e.Audiences = append(e.Audiences, au.String())
		}
		if a.GetEndedAt() != nil {
			e.EndedAt = vehicleTime(a.GetEndedAt()).Format(time.RFC3339)
		}
		got[a.GetName()] = append(got[a.GetName()], e)
	}
	want := map[string][]alertEntry{}
	for _, p := range pubs {
		rest, ok := strings.CutSuffix(p.Topic, "/history")
		if !ok {
			continue
		}
		var entries []alertEntry
		if err := json.Unmarshal(p.Payload, &entries); err != nil {
			t.Fatalf("manifest %s: %v", p.Topic, err)
		}
		want[rest[strings.LastIndexByte(rest, '/')+1:]] = entries
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alerts by name:\n got %+v\nwant %+v", got, want)
	}
}

func checkErrorsMQTT(t *testing.T, raw []byte, pubs []mqttPublication) {
	type entry struct {
		Body      string
		CreatedAt string
		Tags      map[string]string
	}
	var msg schema.VehicleErrors
	if err := proto.Unmarshal(raw, &msg); err != nil {
		t.Fatal(err)
	}
	got := map[string]entry{}
	for _, e := range msg.GetErrors() {
		got[e.GetName()] = entry{Body: e.GetBody(), CreatedAt: e.GetCreatedAt().AsTime().Format(time.RFC3339), Tags: e.GetTags()}
	}
	want := map[string]entry{}
	for _, p := range pubs {
		var e entry
		if err := json.Unmarshal(p.Payload, &e); err != nil {
			t.Fatalf("manifest %s: %v", p.Topic, err)
		}
		want[p.Topic[strings.LastIndexByte(p.Topic, '/')+1:]] = e
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors by name:\n got %+v\nwant %+v", got, want)
	}
}

func checkConnectivityMQTT(t *testing.T, raw []byte, pubs []mqttPublication) {
	type entry struct {
		ConnectionID string `json:"ConnectionId"`
		CreatedAt    string
		Status       string
	}
	var msg schema.VehicleConnectivity
	if err := proto.Unmarshal(raw, &msg); err != nil {
		t.Fatal(err)
	}
	got := entry{ConnectionID: msg.GetConnectionId(), CreatedAt: msg.GetCreatedAt().AsTime().Format(time.RFC3339), Status: msg.GetStatus().String()}
	var want entry
	if len(pubs) != 1 {
		t.Fatalf("%d publications, want 1", len(pubs))
	}
	if err := json.Unmarshal(pubs[0].Payload, &want); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if got != want {
		t.Errorf("connectivity = %+v, want %+v", got, want)
	}
	if msg.GetStatus() != schema.ConnectivityEvent_CONNECTED {
		t.Errorf("status = %v, want CONNECTED", msg.GetStatus())
	}
}

// TestRemarshalReproducesBytes is the wire-compatibility proof: decoding a
// golden payload while discarding unknown fields and marshalling it again
// deterministically must give the exact golden bytes, so every byte was
// understood by our schema.
func TestRemarshalReproducesBytes(t *testing.T) {
	type blob struct {
		name, proto string
		raw         []byte
	}
	var blobs []blob
	m := loadManifest(t)
	for _, c := range m.Cases {
		if c.PayloadFile == "" || c.PayloadDecodeError != "" || outOfScope[c.PayloadProto] {
			continue
		}
		blobs = append(blobs, blob{c.Name, c.PayloadProto, readPayload(t, c)})
	}
	for name, r := range serverRecords(t) {
		raw, err := base64.StdEncoding.DecodeString(r.PayloadB64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		blobs = append(blobs, blob{"server/" + name, txTypeMessages[r.TxType], raw})
	}
	for _, b := range blobs {
		t.Run(b.name, func(t *testing.T) {
			newMsg, ok := upstreamMessages[b.proto]
			if !ok {
				t.Fatalf("no type for %s", b.proto)
			}
			msg := newMsg()
			if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b.raw, msg); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			out, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if !bytes.Equal(out, b.raw) {
				t.Errorf("re-marshalled bytes differ\n got %x\nwant %x", out, b.raw)
			}
		})
	}
}

// checkEnumValue checks that e has a value numbered n called name, or, by
// the generator's collision rule, e's name followed by name when name is
// taken by another symbol of the package.
func checkEnumValue(t *testing.T, e protoreflect.EnumDescriptor, n int, name string) {
	t.Helper()
	v := e.Values().ByNumber(protoreflect.EnumNumber(n))
	switch {
	case v == nil:
		t.Errorf("%s has no value %d (%s)", e.Name(), n, name)
	case string(v.Name()) == name:
	case string(v.Name()) == string(e.Name())+name:
		other, err := protoregistry.GlobalFiles.FindDescriptorByName(protoPackage().Append(protoreflect.Name(name)))
		if err != nil || other == v {
			t.Errorf("%s.%s renamed to %s without a collision", e.Name(), name, v.Name())
		}
	default:
		t.Errorf("%s value %d is %s, want %s", e.Name(), n, v.Name(), name)
	}
}

// TestSchemaMatchesSpec compares the compiled descriptors with the spec
// tables, so the test fails when the .proto files drift from them.
func TestSchemaMatchesSpec(t *testing.T) {
	file := schema.Field(0).Descriptor().ParentFile()

	spec, err := telemetryspec.Load(specDir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Field", func(t *testing.T) {
		e := schema.Field(0).Descriptor()
		if e.Values().Len() != len(spec.Fields) {
			t.Errorf("Field has %d values, spec has %d", e.Values().Len(), len(spec.Fields))
		}
		for _, f := range spec.Fields {
			checkEnumValue(t, e, f.Number, f.Name)
		}
	})

	t.Run("Value", func(t *testing.T) {
		md := (&schema.Value{}).ProtoReflect().Descriptor()
		oneof := md.Oneofs().ByName("value")
		if oneof == nil {
			t.Fatal("Value has no oneof value")
		}
		if oneof.Fields().Len() != len(spec.Members) || md.Fields().Len() != len(spec.Members) {
			t.Errorf("Value has %d fields, %d in its oneof; spec has %d", md.Fields().Len(), oneof.Fields().Len(), len(spec.Members))
		}
		for _, m := range spec.Members {
			fd := md.Fields().ByNumber(protoreflect.FieldNumber(m.Number))
			switch {
			case fd == nil:
				t.Errorf("Value has no field %d (%s)", m.Number, m.Name)
			case string(fd.Name()) != m.Name || typeName(fd) != m.Type || fd.ContainingOneof() != oneof:
				t.Errorf("Value field %d is %s %s in oneof %v, want %s %s in value", m.Number, typeName(fd), fd.Name(), fd.ContainingOneof(), m.Type, m.Name)
			}
		}
	})

	t.Run("enums", func(t *testing.T) {
		for _, se := range spec.Enums {
			e := file.Enums().ByName(protoreflect.Name(se.Name))
			if e == nil {
				t.Errorf("no enum %s", se.Name)
				continue
			}
			if e.Values().Len() != len(se.Values) {
				t.Errorf("%s has %d values, spec has %d", se.Name, e.Values().Len(), len(se.Values))
			}
			for _, v := range se.Values {
				checkEnumValue(t, e, v.Number, v.Name)
			}
		}
		if file.Enums().Len() != len(spec.Enums)+1 {
			t.Errorf("%s declares %d enums, want Field and the %d of the spec", file.Path(), file.Enums().Len(), len(spec.Enums))
		}
	})
}

// TestFixedLayouts pins the messages that the spec tables do not describe to
// the numbers and types of PROTOCOL.md.
func TestFixedLayouts(t *testing.T) {
	type field struct {
		name     string
		number   int
		typ      string
		repeated bool
	}
	const ts = "google.protobuf.Timestamp"
	tests := []struct {
		msg    proto.Message
		fields []field
	}{
		{&schema.Payload{}, []field{{"data", 1, "Datum", true}, {"created_at", 2, ts, false}, {"vin", 3, "string", false}, {"is_resend", 4, "bool", false}}},
		{&schema.Datum{}, []field{{"key", 1, "Field", false}, {"value", 2, "Value", false}}},
		{&schema.LocationValue{}, []field{{"latitude", 1, "double", false}, {"longitude", 2, "double", false}}},
		{&schema.Doors{}, []field{
			{"DriverFront", 1, "bool", false}, {"DriverRear", 2, "bool", false}, {"PassengerFront", 3, "bool", false},
			{"PassengerRear", 4, "bool", false}, {"TrunkFront", 5, "bool", false}, {"TrunkRear", 6, "bool", false},
		}},
		{&schema.TireLocation{}, []field{
			{"front_left", 1, "bool", false}, {"front_right", 2, "bool", false}, {"rear_left", 3, "bool", false}, {"rear_right", 4, "bool", false},
			{"semi_middle_axle_left_2", 5, "bool", false}, {"semi_middle_axle_right_2", 6, "bool", false},
			{"semi_rear_axle_left", 7, "bool", false}, {"semi_rear_axle_right", 8, "bool", false},
			{"semi_rear_axle_left_2", 9, "bool", false}, {"semi_rear_axle_right_2", 10, "bool", false},
		}},
		{&schema.Time{}, []field{{"hour", 1, "int32", false}, {"minute", 2, "int32", false}, {"second", 3, "int32", false}}},
		{&schema.VehicleAlerts{}, []field{{"alerts", 1, "VehicleAlert", true}, {"created_at", 2, ts, false}, {"vin", 3, "string", false}}},
		{&schema.VehicleAlert{}, []field{{"name", 1, "string", false}, {"audiences", 2, "Audience", true}, {"started_at", 3, ts, false}, {"ended_at", 4, ts, false}}},
		{&schema.VehicleErrors{}, []field{{"errors", 1, "VehicleError", true}, {"created_at", 2, ts, false}, {"vin", 3, "string", false}}},
		{&schema.VehicleError{}, []field{{"created_at", 1, ts, false}, {"name", 2, "string", false}, {"tags", 3, "map<string, string>", false}, {"body", 4, "string", false}}},
		{&schema.VehicleConnectivity{}, []field{
			{"vin", 1, "string", false}, {"connection_id", 2, "string", false}, {"status", 3, "ConnectivityEvent", false},
			{"created_at", 4, ts, false}, {"network_interface", 5, "string", false},
		}},
	}
	for _, tt := range tests {
		md := tt.msg.ProtoReflect().Descriptor()
		t.Run(string(md.Name()), func(t *testing.T) {
			if md.Fields().Len() != len(tt.fields) {
				t.Errorf("%d fields, want %d", md.Fields().Len(), len(tt.fields))
			}
			for _, want := range tt.fields {
				fd := md.Fields().ByName(protoreflect.Name(want.name))
				if fd == nil {
					t.Errorf("no field %s", want.name)
					continue
				}
				if int(fd.Number()) != want.number || typeName(fd) != want.typ || (fd.IsList() != want.repeated) {
					t.Errorf("%s = %d %s repeated=%v, want %d %s repeated=%v", want.name, fd.Number(), typeName(fd), fd.IsList(), want.number, want.typ, want.repeated)
				}
			}
		})
	}

	enums := []struct {
		enum   protoreflect.EnumDescriptor
		values []string
	}{
		{schema.Audience(0).Descriptor(), []string{"AudienceUnknown", "Customer", "Service", "ServiceFix"}},
		{schema.ConnectivityEvent(0).Descriptor(), []string{"UNKNOWN", "CONNECTED", "DISCONNECTED"}},
	}
	for _, tt := range enums {
		t.Run(string(tt.enum.Name()), func(t *testing.T) {
			if tt.enum.Values().Len() != len(tt.values) {
				t.Errorf("%d values, want %d", tt.enum.Values().Len(), len(tt.values))
			}
			for n, name := range tt.values {
				if v := tt.enum.Values().ByNumber(protoreflect.EnumNumber(n)); v == nil || string(v.Name()) != name {
					t.Errorf("value %d = %v, want %s", n, v, name)
				}
			}
		})
	}
}

// goldenPayloads returns the raw bytes of every decodable V payload.
func goldenPayloads(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, c := range loadManifest(tb).Cases {
		if c.PayloadFile != "" && c.PayloadProto == "telemetry.vehicle_data.Payload" && c.PayloadDecodeError == "" {
			out[c.Name] = readPayload(tb, c)
		}
	}
	if len(out) == 0 {
		tb.Fatal("no golden V payloads")
	}
	return out
}

// FuzzPayload feeds arbitrary bytes to Payload: decoding must never panic,
// and whatever decodes must survive a marshal and decode unchanged.
func FuzzPayload(f *testing.F) {
	for _, raw := range goldenPayloads(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p schema.Payload
		if proto.Unmarshal(raw, &p) != nil {
			return
		}
		out, err := proto.MarshalOptions{Deterministic: true}.Marshal(&p)
		if err != nil {
			t.Fatalf("marshal decoded payload: %v", err)
		}
		var again schema.Payload
		if err := proto.Unmarshal(out, &again); err != nil {
			t.Fatalf("unmarshal re-marshalled payload: %v", err)
		}
		if !proto.Equal(&p, &again) {
			t.Fatalf("round trip changed the payload:\n%v\n%v", &p, &again)
		}
	})
}

// BenchmarkUnmarshalPayload measures decoding the largest golden V payload,
// the per-record cost on the ingest hot path.
func BenchmarkUnmarshalPayload(b *testing.B) {
	raw := goldenPayloads(b)["06_v_many_fields"]
	if raw == nil {
		b.Fatal("no 06_v_many_fields payload")
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	var p schema.Payload
	for b.Loop() {
		if err := proto.Unmarshal(raw, &p); err != nil {
			b.Fatal(err)
		}
	}
}
