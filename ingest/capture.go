package ingest

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// ErrNotRecord reports a frame that parses but carries no record: an
// acknowledgement or error response, which only servers send.
var ErrNotRecord = errors.New("not a record")

// ReadCapture reads one captured frame, all of r, refusing one larger
// than a vehicle may send (MaxFrameSize) without holding more than that.
func ReadCapture(r io.Reader) ([]byte, error) {
	frame, err := io.ReadAll(io.LimitReader(r, MaxFrameSize+1))
	if err != nil {
		return nil, err
	}
	if len(frame) > MaxFrameSize {
		return nil, errFrameTooLarge
	}
	return frame, nil
}

// DecodeFrame decodes one binary WebSocket frame as a vehicle sends it (the
// FlatBuffers envelope with its protobuf payload), taken outside a
// connection, such as a capture. rec is filled as DecodePayload fills it,
// plus TxID, and CreatedAt from the envelope when the payload has no time
// of its own; the caller resets rec before. rec.VIN is left alone: only a
// vehicle's client certificate names the car, and a capture has none.
// deviceID is the envelope's device_id instead: what the sender claims.
//
// Errors say which layer failed: "envelope: ..." (wrapping ErrNotRecord
// for a frame of another message type) or "payload: ..." (wrapping
// DecodePayload's errors); rec is then to be discarded.
func DecodeFrame(frame []byte, rec *telemetry.Record) (deviceID string, err error) {
	f, err := envelope.Parse(frame)
	if err != nil {
		return "", fmt.Errorf("envelope: %w", err)
	}
	if f.Type != envelope.TypeStream {
		return "", fmt.Errorf("envelope: %w: message type %v", ErrNotRecord, f.Type)
	}
	if err := DecodePayload(telemetry.Topic(f.Topic), f.Stream.Payload, rec); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	rec.TxID = string(f.TxID)
	if rec.CreatedAt.IsZero() && f.Stream.CreatedAt != 0 {
		rec.CreatedAt = time.Unix(int64(f.Stream.CreatedAt), 0).UTC()
	}
	return string(f.Stream.DeviceID), nil
}
