package ingest

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Fuzz targets, one per topic so that each can be run on its own:
//
//	go test -run '^$' -fuzz '^FuzzDecodePayloadV$' -fuzztime 60s ./ingest
//
// Each checks that DecodePayload never panics, fails only with
// ErrMalformedPayload, keeps no reference to the caller's buffer, and agrees
// with proto.Unmarshal into the generated types wherever that succeeds.

func FuzzDecodePayloadV(f *testing.F)            { fuzzDecodePayload(f, telemetry.TopicV) }
func FuzzDecodePayloadAlerts(f *testing.F)       { fuzzDecodePayload(f, telemetry.TopicAlerts) }
func FuzzDecodePayloadErrors(f *testing.F)       { fuzzDecodePayload(f, telemetry.TopicErrors) }
func FuzzDecodePayloadConnectivity(f *testing.F) { fuzzDecodePayload(f, telemetry.TopicConnectivity) }

func fuzzDecodePayload(f *testing.F, topic telemetry.Topic) {
	// Seeds: the golden payloads of the topic (13, corrupt, among them), a
	// few random messages, and the golden payloads of the other topics.
	for _, c := range loadPayloadCases(f) {
		if c.PayloadFile != "" {
			f.Add(readPayload(f, c.PayloadFile))
		}
	}
	z := randomizer{r: rand.New(rand.NewPCG(3, 4))}
	for range 16 {
		m := topicMessage(topic)
		z.fill(m.ProtoReflect())
		z.sprinkle(m.ProtoReflect())
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if topic == telemetry.TopicV {
		f.Add(mixedPayload(f))
	}

	f.Fuzz(func(t *testing.T, payload []byte) {
		if topic == telemetry.TopicV {
			checkDatumPaths(t, payload)
		}
		buf := slices.Clone(payload)
		var rec telemetry.Record
		err := DecodePayload(topic, buf, &rec)
		if err != nil && !errors.Is(err, ErrMalformedPayload) {
			t.Fatalf("error %v does not wrap ErrMalformedPayload", err)
		}
		if err == nil {
			want := cloneRecord(&rec)
			clear(buf)
			if diff := diffRecords(&rec, want); diff != "" {
				t.Fatalf("record changed with the caller's buffer:%s", diff)
			}
		}

		m := topicMessage(topic)
		if proto.Unmarshal(payload, m) != nil {
			return // not protobuf, or invalid UTF-8, which we accept as it is
		}
		if err != nil {
			var wt wireTypeError
			if errors.As(err, &wt) {
				return // protobuf keeps such a field as an unknown one
			}
			t.Fatalf("DecodePayload: %v; proto.Unmarshal accepts it", err)
		}
		if diff := diffRecords(&rec, refRecord(t, topic, m)); diff != "" {
			t.Fatalf("DecodePayload and the generated code differ:%s", diff)
		}
	})
}

// checkDatumPaths checks, for every Datum at the top of a V payload, that
// the fast path, when it takes the Datum, decodes it as the field-by-field
// path does.
func checkDatumPaths(t *testing.T, payload []byte) {
	t.Helper()
	d := decoder{payload: payload}
	for b := payload; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		datum, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		var fast, slow telemetry.Datum
		if !d.datumFast(datum, &fast) {
			continue
		}
		if err := d.datum(datum, &slow); err != nil {
			t.Fatalf("datum %x: fast path takes it, field by field: %v", datum, err)
		}
		if fast.Field != slow.Field || !sameValue(fast.Value, slow.Value) {
			t.Fatalf("datum %x: fast path %v %s, field by field %v %s", datum,
				fast.Field, describeValue(fast.Value), slow.Field, describeValue(slow.Value))
		}
	}
}
