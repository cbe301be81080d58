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
	root, err := deref(frame, 0, "root")
	if err != nil {
		return Frame{}, err
	}
	env, err := readTable(frame, root, "envelope")
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	if f.TxID, err = env.vector(frame, envTxID, "envelope txid"); err != nil {
		return Frame{}, err
	}
	if f.Topic, err = env.vector(frame, envTopic, "envelope topic"); err != nil {
		return Frame{}, err
	}
	if f.MessageID, err = env.vector(frame, envMessageID, "envelope message_id"); err != nil {
		return Frame{}, err
	}
	p, err := env.field(frame, envMessageType, 1, "envelope message_type")
	if err != nil {
		return Frame{}, err
	}
	if p >= 0 {
		f.Type = MessageType(frame[p])
	}
	msg, err := env.field(frame, envMessage, 4, "envelope message")
	if err != nil {
		return Frame{}, err
	}
	if msg >= 0 {
		// StreamAck has no fields and the reference points its slot at an
		// empty vector, so the target is only bounds-checked here.
		if msg, err = deref(frame, msg, "envelope message"); err != nil {
			return Frame{}, err
		}
	}

	switch f.Type {
	case TypeStreamAck:
		return f, nil
	case TypeStream:
		if msg < 0 {
			return f, fmt.Errorf("envelope message: %w", ErrNoMessage)
		}
	default:
		return f, fmt.Errorf("envelope message_type %d: %w", f.Type, ErrUnknownType)
	}

	st, err := readTable(frame, msg, "stream")
	if err != nil {
		return Frame{}, err
	}
	s := &f.Stream
	if p, err = st.field(frame, strCreatedAt, 4, "stream created_at"); err != nil {
		return Frame{}, err
	}
	if p >= 0 {
		s.CreatedAt = binary.LittleEndian.Uint32(frame[p:])
	}
	if s.SenderID, err = st.vector(frame, strSenderID, "stream sender_id"); err != nil {
		return Frame{}, err
	}
	if s.Payload, err = st.vector(frame, strPayload, "stream payload"); err != nil {
		return Frame{}, err
	}
	if s.DeviceType, err = st.vector(frame, strDeviceType, "stream device_type"); err != nil {
		return Frame{}, err
	}
	if s.DeviceID, err = st.vector(frame, strDeviceID, "stream device_id"); err != nil {
		return Frame{}, err
	}
	if p, err = st.field(frame, strDeliveredAt, 8, "stream delivered_at_epoch_ms"); err != nil {
		return Frame{}, err
	}
	if p >= 0 {
		s.DeliveredAtEpochMS = binary.LittleEndian.Uint64(frame[p:])
	}
	return f, nil
}

// table is a validated table: its position and its vtable's.
type table struct {
	pos    int // start of the table (its soffset to the vtable)
	vt     int // start of the vtable
	vtSize int // vtable size in bytes, at least 4, inside the frame
}

// readTable validates the table starting at pos and its vtable header.
func readTable(b []byte, pos int, what string) (table, error) {
	if pos < 0 || pos > len(b)-4 {
		return table{}, fmt.Errorf("%s table at %d: %d-byte frame: %w", what, pos, len(b), ErrTruncated)
	}
	vt := int64(pos) - int64(int32(binary.LittleEndian.Uint32(b[pos:])))
	if vt < 0 {
		return table{}, fmt.Errorf("%s vtable at %d: %w", what, vt, ErrBadOffset)
	}
	if vt > int64(len(b)-4) {
		return table{}, fmt.Errorf("%s vtable at %d: %d-byte frame: %w", what, vt, len(b), ErrTruncated)
	}
	size := int(binary.LittleEndian.Uint16(b[vt:]))
	if size < 4 {
		return table{}, fmt.Errorf("%s vtable at %d: size %d: %w", what, vt, size, ErrBadVTable)
	}
	if size > len(b)-int(vt) {
		return table{}, fmt.Errorf("%s vtable at %d: size %d: %d-byte frame: %w", what, vt, size, len(b), ErrTruncated)
	}
	return table{pos: pos, vt: int(vt), vtSize: size}, nil
}

// field returns where the n-byte field in slot lies in b, or -1 when the
// vtable marks it absent (left at its default).
func (t table) field(b []byte, slot, n int, what string) (int, error) {
	entry := 4 + 2*slot
	if entry+2 > t.vtSize {
		return -1, nil
	}
	off := int(binary.LittleEndian.Uint16(b[t.vt+entry:]))
	if off == 0 {
		return -1, nil
	}
	p := t.pos + off
	if p > len(b)-n {
		return -1, fmt.Errorf("%s at %d: %d-byte frame: %w", what, p, len(b), ErrTruncated)
	}
	return p, nil
}

// vector returns the byte vector referenced by slot, nil when absent.
func (t table) vector(b []byte, slot int, what string) ([]byte, error) {
	p, err := t.field(b, slot, 4, what)
	if err != nil || p < 0 {
		return nil, err
	}
	v, err := deref(b, p, what)
	if err != nil {
		return nil, err
	}
	if v > len(b)-4 {
		return nil, fmt.Errorf("%s vector at %d: %d-byte frame: %w", what, v, len(b), ErrTruncated)
	}
	n := binary.LittleEndian.Uint32(b[v:])
	start := v + 4
	if uint64(n) > uint64(len(b)-start) {
		return nil, fmt.Errorf("%s vector of %d bytes at %d: %d-byte frame: %w", what, n, v, len(b), ErrTruncated)
	}
	end := start + int(n)
	return b[start:end:end], nil
}

// deref follows the uoffset stored at p to the position it points to,
// which is inside b. The caller ensures b[p:p+4] exists, except for the root.
func deref(b []byte, p int, what string) (int, error) {
	if p > len(b)-4 {
		return -1, fmt.Errorf("%s offset at %d: %d-byte frame: %w", what, p, len(b), ErrTruncated)
	}
	u := binary.LittleEndian.Uint32(b[p:])
	if u == 0 || u > math.MaxInt32 {
		return -1, fmt.Errorf("%s offset %d at %d: %w", what, u, p, ErrBadOffset)
	}
	if uint64(u) >= uint64(len(b)-p) {
		return -1, fmt.Errorf("%s offset %d at %d: %d-byte frame: %w", what, u, p, len(b), ErrTruncated)
	}
	return p + int(u), nil
}
