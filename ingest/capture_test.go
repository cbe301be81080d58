package ingest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestDecodeFrame(t *testing.T) {
	frame, err := os.ReadFile(filepath.Join(goldenDir, "03_v_string_transforms.bin"))
	if err != nil {
		t.Fatal(err)
	}
	rec := telemetry.Record{VIN: "kept"}
	id, err := DecodeFrame(frame, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if id != "5YJ3TESTVIN000001" || rec.VIN != "kept" {
		t.Errorf("device id %q, VIN %q: want the envelope's claim returned and the VIN left alone", id, rec.VIN)
	}
	if want := time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC); rec.Topic != telemetry.TopicV || rec.TxID != "txid-03-strings" || !rec.CreatedAt.Equal(want) {
		t.Errorf("topic %q, txid %q, created_at %v", rec.Topic, rec.TxID, rec.CreatedAt)
	}
	if len(rec.Data) != 5 || rec.Data[0].Field != telemetry.FieldLocation {
		t.Errorf("data %v", rec.Data)
	}

	ack, err := os.ReadFile(filepath.Join(goldenDir, "14_behavior_ack_typed_envelope.bin"))
	if err != nil {
		t.Fatal(err)
	}
	rec.Reset()
	if _, err := DecodeFrame(ack, &rec); !errors.Is(err, ErrNotRecord) || !strings.HasPrefix(err.Error(), "envelope: ") {
		t.Errorf("ack frame: %v, want envelope: ErrNotRecord", err)
	}
	if _, err := DecodeFrame([]byte("not a frame"), &rec); err == nil || !strings.HasPrefix(err.Error(), "envelope: ") {
		t.Errorf("garbage: %v, want an envelope error", err)
	}
}

func TestReadCapture(t *testing.T) {
	got, err := ReadCapture(bytes.NewReader(make([]byte, MaxFrameSize)))
	if err != nil || len(got) != MaxFrameSize {
		t.Errorf("a frame of MaxFrameSize: %d bytes, %v", len(got), err)
	}
	if _, err := ReadCapture(bytes.NewReader(make([]byte, MaxFrameSize+1))); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("a frame over MaxFrameSize: %v, want %v", err, errFrameTooLarge)
	}
}
