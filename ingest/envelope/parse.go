package envelope

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Vtable slots of the Envelope table.
const (
	envTxID = iota
	envTopic
	envMessageType
	envMessage
	envMessageID
	envSlots
)

// Vtable slots of the Stream table.
const (
	strCreatedAt = iota
	strSenderID
	strPayload
	strDeviceType
	strDeviceID
	strDeliveredAt
	strSlots
)

// Parse reads the envelope in frame through its vtables. It accepts any valid
// FlatBuffer layout (field order, vtable placement and sharing, fields unknown
// to this schema) and requires no alignment, but checks every offset and
// length against the frame, so hostile input yields an error, never a panic or
// an out-of-bounds read. It does not allocate on success.
//
// Parse succeeds for TypeStream (with a Stream table) and TypeStreamAck. A
// structural fault returns a zero Frame and an error wrapping ErrTruncated,
// ErrBadOffset or ErrBadVTable. A sound envelope whose message is not usable
// returns ErrUnknownType or ErrNoMessage together with the envelope's fields
// (TxID, Topic, MessageID, Type), so a caller can echo the txid as Tesla's
// reference server does.
func Parse(frame []byte) (Frame, error) {
	root, err := deref(frame, 0)
	if err != nil {
		return Frame{}, fail("root offset", err, frame)
	}
	env, err := readTable(frame, root)
	if err != nil {
		return Frame{}, fail("envelope table", err, frame)
	}
	var f Frame
	if f.TxID, err = env.vector(frame, envTxID); err != nil {
		return Frame{}, fail("envelope txid", err, frame)
	}
	if f.Topic, err = env.vector(frame, envTopic); err != nil {
		return Frame{}, fail("envelope topic", err, frame)
	}
	if f.MessageID, err = env.vector(frame, envMessageID); err != nil {
		return Frame{}, fail("envelope message_id", err, frame)
	}
	p, err := env.field(frame, envMessageType, 1)
	if err != nil {
		return Frame{}, fail("envelope message_type", err, frame)
	}
	if p >= 0 {
		f.Type = MessageType(frame[p])
	}
	msg, err := env.field(frame, envMessage, 4)
	if err == nil && msg >= 0 {
		// StreamAck has no fields and the reference points its slot at an
		// empty vector, so the target is only bounds-checked here.
		msg, err = deref(frame, msg)
	}
	if err != nil {
		return Frame{}, fail("envelope message", err, frame)
	}

	switch f.Type {
	case TypeStreamAck:
		return f, nil
	case TypeStream:
		if msg < 0 {
			return f, fail("envelope message", ErrNoMessage, frame)
		}
	default:
		return f, fail("envelope message_type "+f.Type.String(), ErrUnknownType, frame)
	}

	st, err := readTable(frame, msg)
	if err != nil {
		return Frame{}, fail("stream table", err, frame)
	}
	s := &f.Stream
	if p, err = st.field(frame, strCreatedAt, 4); err != nil {
		return Frame{}, fail("stream created_at", err, frame)
	}
	if p >= 0 {
		s.CreatedAt = binary.LittleEndian.Uint32(frame[p:])
	}
	if s.SenderID, err = st.vector(frame, strSenderID); err != nil {
		return Frame{}, fail("stream sender_id", err, frame)
	}
	if s.Payload, err = st.vector(frame, strPayload); err != nil {
		return Frame{}, fail("stream payload", err, frame)
	}
	if s.DeviceType, err = st.vector(frame, strDeviceType); err != nil {
		return Frame{}, fail("stream device_type", err, frame)
	}
	if s.DeviceID, err = st.vector(frame, strDeviceID); err != nil {
		return Frame{}, fail("stream device_id", err, frame)
	}
	if p, err = st.field(frame, strDeliveredAt, 8); err != nil {
		return Frame{}, fail("stream delivered_at_epoch_ms", err, frame)
	}
	if p >= 0 {
		s.DeliveredAtEpochMS = binary.LittleEndian.Uint64(frame[p:])
	}
	return f, nil
}

// fail wraps a sentinel with the part of the frame being read. It is kept
// out of line so that the success path stays small.
//
//go:noinline
func fail(what string, err error, frame []byte) error {
	return fmt.Errorf("%s (%d-byte frame): %w", what, len(frame), err)
}

// The readers below return bare sentinels; Parse names the part that failed.

// table is a validated table: its position and its vtable's.
type table struct {
	pos    int // start of the table (its soffset to the vtable)
	vt     int // start of the vtable
	vtSize int // vtable size in bytes, at least 4, inside the frame
}

// readTable validates the table starting at pos (inside b) and its vtable.
func readTable(b []byte, pos int) (table, error) {
	if pos > len(b)-4 {
		return table{}, ErrTruncated
	}
	vt := int64(pos) - int64(int32(binary.LittleEndian.Uint32(b[pos:])))
	if vt < 0 {
		return table{}, ErrBadOffset
	}
	if vt > int64(len(b)-4) {
		return table{}, ErrTruncated
	}
	size := int(binary.LittleEndian.Uint16(b[vt:]))
	if size < 4 {
		return table{}, ErrBadVTable
	}
	if size > len(b)-int(vt) {
		return table{}, ErrTruncated
	}
	return table{pos: pos, vt: int(vt), vtSize: size}, nil
}

// field returns where the n-byte field in slot lies in b, or -1 when the
// vtable marks it absent (left at its default).
func (t table) field(b []byte, slot, n int) (int, error) {
	entry := t.vt + 4 + 2*slot
	if entry > t.vt+t.vtSize-2 {
		return -1, nil
	}
	off := int(binary.LittleEndian.Uint16(b[entry:]))
	if off == 0 {
		return -1, nil
	}
	if p := t.pos + off; p <= len(b)-n {
		return p, nil
	}
	return -1, ErrTruncated
}

// vector returns the byte vector referenced by slot, nil when absent.
func (t table) vector(b []byte, slot int) ([]byte, error) {
	p, err := t.field(b, slot, 4)
	if err != nil || p < 0 {
		return nil, err
	}
	v, err := deref(b, p)
	if err != nil {
		return nil, err
	}
	if v > len(b)-4 {
		return nil, ErrTruncated
	}
	n := binary.LittleEndian.Uint32(b[v:])
	start := v + 4
	if uint64(n) > uint64(len(b)-start) {
		return nil, ErrTruncated
	}
	end := start + int(n)
	return b[start:end:end], nil
}

// deref follows the uoffset stored at p to the position it points to, which
// is inside b.
func deref(b []byte, p int) (int, error) {
	if p > len(b)-4 {
		return -1, ErrTruncated
	}
	u := binary.LittleEndian.Uint32(b[p:])
	if u == 0 || u > math.MaxInt32 {
		return -1, ErrBadOffset
	}
	if uint64(u) >= uint64(len(b)-p) {
		return -1, ErrTruncated
	}
	return p + int(u), nil
}
