package ingest

import (
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// vPayload returns a Payload whose data are one int value per key, in
// order (Value member int_value = 2).
func vPayload(keys []uint64) []byte {
	var b []byte
	for i, k := range keys {
		var value, datum []byte
		value = protowire.AppendTag(value, 2, protowire.VarintType)
		value = protowire.AppendVarint(value, uint64(i))
		datum = protowire.AppendTag(datum, 1, protowire.VarintType)
		datum = protowire.AppendVarint(datum, k)
		datum = protowire.AppendTag(datum, 2, protowire.BytesType)
		datum = protowire.AppendBytes(datum, value)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, datum)
	}
	return b
}

// TestDecodeRefusesUnknownFields: a record whose keys are field numbers no
// firmware has (as a hostile car sends them, tens of thousands per frame)
// keeps only its plausible fields: those of the catalog and of the window
// above it; the rest are counted, not kept.
func TestDecodeRefusesUnknownFields(t *testing.T) {
	soc := uint64(fieldNamed(t, "Soc"))
	newer := uint64(telemetry.MaxField) + 1 // a field newer firmware may send
	keys := []uint64{soc, newer, uint64(MaxFieldNumber)}
	for k := range uint64(30_000) {
		keys = append(keys, uint64(MaxFieldNumber)+1+k*1000)
	}
	keys = append(keys, 1<<31-1, 1<<32-1) // the largest positive int32, and -1 as int32
	var rec telemetry.Record
	got, err := decodePayload(telemetry.TopicV, vPayload(keys), &rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Data) != 3 || uint64(rec.Data[0].Field) != soc || uint64(rec.Data[1].Field) != newer || int(rec.Data[2].Field) != MaxFieldNumber {
		t.Fatalf("kept %s, want Soc, Field(%d) and Field(%d)", describeData(rec.Data), newer, MaxFieldNumber)
	}
	if rec.Data[1].Value.Int() != 1 || rec.Data[2].Value.Int() != 2 {
		t.Errorf("values of the kept fields %s", describeData(rec.Data))
	}
	if want := (refused{unknownFields: 30_002}); got != want {
		t.Errorf("refused %+v, want %+v", got, want)
	}
}

// TestDecodeRecordItemLimit: past MaxRecordItems data items, alerts or
// errors, a record's items are counted, not kept; a malformed item past
// the limit is still an error.
func TestDecodeRecordItemLimit(t *testing.T) {
	soc := uint64(fieldNamed(t, "Soc"))
	keys := make([]uint64, MaxRecordItems+500)
	for i := range keys {
		keys[i] = soc
	}
	var rec telemetry.Record
	got, err := decodePayload(telemetry.TopicV, vPayload(keys), &rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Data) != MaxRecordItems || rec.Data[MaxRecordItems-1].Value.Int() != MaxRecordItems-1 {
		t.Fatalf("kept %d data items, want the first %d", len(rec.Data), MaxRecordItems)
	}
	if want := (refused{excess: 500}); got != want {
		t.Errorf("refused %+v, want %+v", got, want)
	}

	// A malformed datum past the limit: a Value with a truncated varint.
	bad := protowire.AppendTag(vPayload(keys), 1, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{1 << 3, 0x80})
	rec.Reset()
	if _, err := decodePayload(telemetry.TopicV, bad, &rec); err == nil {
		t.Error("a malformed datum past the limit was not an error")
	}

	for _, topic := range []telemetry.Topic{telemetry.TopicAlerts, telemetry.TopicErrors} {
		var p []byte
		for i := range MaxRecordItems + 3 {
			var item []byte
			name := uint64(1) // VehicleAlert.name
			if topic == telemetry.TopicErrors {
				name = 2 // VehicleError.name
			}
			item = protowire.AppendTag(item, protowire.Number(name), protowire.BytesType)
			item = protowire.AppendString(item, "N"+strings.Repeat("x", i%7))
			if topic == telemetry.TopicAlerts {
				item = protowire.AppendTag(item, 2, protowire.VarintType) // one audience
				item = protowire.AppendVarint(item, 1)
			}
			p = protowire.AppendTag(p, 1, protowire.BytesType)
			p = protowire.AppendBytes(p, item)
		}
		rec.Reset()
		got, err := decodePayload(topic, p, &rec)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		if n := len(rec.Alerts) + len(rec.Errors); n != MaxRecordItems {
			t.Errorf("%s: kept %d items, want %d", topic, n, MaxRecordItems)
		}
		if want := (refused{excess: 3}); got != want {
			t.Errorf("%s: refused %+v, want %+v", topic, got, want)
		}
		for i, a := range rec.Alerts {
			if len(a.Audiences) != 1 {
				t.Fatalf("alert %d has audiences %v, want one", i, a.Audiences)
			}
		}
	}
}

// TestRecordWithRefusedItemsAcknowledged: a record that carries unknown
// field numbers is acknowledged with what it carries that is plausible;
// the refused items are counted and logged, once per connection and
// interval, not once per record.
func TestRecordWithRefusedItemsAcknowledged(t *testing.T) {
	logs := &lockedBuffer{}
	ts := startServer(t, nil, withLogger(slog.New(slog.NewTextHandler(logs, nil))))
	ws := ts.car(t)
	keys := []uint64{uint64(fieldNamed(t, "Soc"))}
	for k := range uint64(10_000) {
		keys = append(keys, uint64(MaxFieldNumber)+1+k)
	}
	for i := range 3 {
		txid := []byte("txid-unknown-" + string(rune('a'+i)))
		frame := envelope.AppendFrame(nil, envelope.Frame{
			TxID: txid, Topic: []byte(telemetry.TopicV), Type: envelope.TypeStream,
			Stream: envelope.Stream{CreatedAt: 1, Payload: vPayload(keys)},
		})
		f, err := envelope.Parse(exchange(t, ws, frame))
		if err != nil || f.Type != envelope.TypeStreamAck || string(f.TxID) != string(txid) {
			t.Fatalf("record %d: response %v %q (%v), want its ack", i, f.Type, f.TxID, err)
		}
	}
	recs := ts.sink.byTopic(telemetry.TopicV)
	if len(recs) != 3 || len(recs[2].Data) != 1 {
		t.Fatalf("%d records reached the sink (last with %d data items), want 3 with Soc only", len(recs), len(recs[len(recs)-1].Data))
	}
	if got := ts.srv.Stats().DataRefused; got != 30_000 {
		t.Errorf("Stats().DataRefused = %d, want 30000", got)
	}
	if n := strings.Count(logs.String(), "record items left out on purpose"); n != 1 {
		t.Errorf("%d log lines for three records with refused items, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "unknown_fields=10000") {
		t.Errorf("the log line does not count the unknown fields:\n%s", logs)
	}
}
