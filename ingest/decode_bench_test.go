package ingest

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// BenchmarkDecodePayload decodes V records into a reused Record, as the
// server does per frame. Budget: ≤ 3 µs and a small constant number of
// allocations per record (one when it holds strings, none otherwise).
func BenchmarkDecodePayload(b *testing.B) {
	benchmarks := []struct {
		name    string
		payload []byte
	}{
		{"golden_44_fields", readPayload(b, "06_v_many_fields.payload.bin")},
		{"mixed_20_fields", mixedPayload(b)},
		{"old_firmware_strings_5_fields", readPayload(b, "03_v_string_transforms.payload.bin")},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			var rec telemetry.Record
			b.SetBytes(int64(len(bm.payload)))
			b.ReportAllocs()
			for b.Loop() {
				rec.Reset()
				if err := DecodePayload(telemetry.TopicV, bm.payload, &rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProtoUnmarshalReference is what the generated code costs for
// the 20-field record, without even converting to a Record: the yardstick
// DecodePayload is measured against.
func BenchmarkProtoUnmarshalReference(b *testing.B) {
	payload := mixedPayload(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		var p schema.Payload
		if err := proto.Unmarshal(payload, &p); err != nil {
			b.Fatal(err)
		}
	}
}
