package envelope

import (
	"encoding/binary"
	"slices"
)

// The Append functions reproduce, call for call, the sequence in which Tesla's
// reference server drives the FlatBuffers Go builder, so their output is
// byte-identical to the reference frames and responses. Each runs that
// sequence twice on a back-to-front builder: once to measure, once to write
// into the exact room it grows in dst.

// AppendAck appends the server's acknowledgement of a record to dst: an
// envelope with message_type StreamAck, txid and topic echoed, an empty
// message_id, and the message slot pointing at an empty vector.
func AppendAck(dst, txid, topic []byte) []byte {
	var b builder
	writeAck(&b, txid, topic, nil)
	dst, b = b.into(dst)
	writeAck(&b, txid, topic, nil)
	return dst
}

// AppendError appends the server's error response to dst: an envelope with
// message_type Stream whose Stream payload is text (ErrorText in practice),
// txid echoed, every other vector empty.
func AppendError(dst, txid []byte, text string) []byte {
	var b builder
	writeError(&b, txid, text)
	dst, b = b.into(dst)
	writeError(&b, txid, text)
	return dst
}

// AppendFrame appends f as a vehicle would send it. For TypeStream it writes
// the Stream table; for any other type it writes no Stream and, like the
// reference acknowledgement, points the message slot at an empty vector.
// Nil and empty vectors are both written as present and empty.
func AppendFrame(dst []byte, f Frame) []byte {
	var b builder
	writeFrame(&b, &f)
	dst, b = b.into(dst)
	writeFrame(&b, &f)
	return dst
}

func writeAck(b *builder, txid, topic, messageID []byte) {
	empty := byteString(b, "")
	writeEnvelope(b, txid, topic, empty, messageID, TypeStreamAck)
}

func writeError(b *builder, txid []byte, text string) {
	msg := writeStream(b, &Stream{}, text)
	writeEnvelope(b, txid, nil, msg, nil, TypeStream)
}

func writeFrame(b *builder, f *Frame) {
	if f.Type != TypeStream {
		writeAckTyped(b, f)
		return
	}
	msg := writeStream(b, &f.Stream, f.Stream.Payload)
	writeEnvelope(b, f.TxID, f.Topic, msg, f.MessageID, TypeStream)
}

func writeAckTyped(b *builder, f *Frame) {
	empty := byteString(b, "")
	writeEnvelope(b, f.TxID, f.Topic, empty, f.MessageID, f.Type)
}

// writeStream writes the Stream table of s with the given payload (s.Payload
// is ignored) and returns its offset.
func writeStream[P ~string | ~[]byte](b *builder, s *Stream, payload P) int {
	sender := byteString(b, s.SenderID)
	pl := byteString(b, payload)
	devType := byteString(b, s.DeviceType)
	devID := byteString(b, s.DeviceID)

	b.startTable(strSlots)
	b.addOffset(strSenderID, sender)
	b.addUint32(strCreatedAt, s.CreatedAt)
	b.addOffset(strPayload, pl)
	b.addOffset(strDeviceType, devType)
	b.addOffset(strDeviceID, devID)
	b.addUint64(strDeliveredAt, s.DeliveredAtEpochMS)
	// The Stream vtable never equals the Envelope's (slot 2 holds a byte at
	// an odd offset or nothing there, a uoffset here), so the reference
	// builder's vtable deduplication never applies and is not reproduced.
	return b.endTable()
}

// writeEnvelope writes the root Envelope table and finishes the buffer.
func writeEnvelope(b *builder, txid, topic []byte, msg int, messageID []byte, t MessageType) {
	tx := byteString(b, txid)
	tp := byteString(b, topic)
	id := byteString(b, messageID)

	b.startTable(envSlots)
	b.addOffset(envTxID, tx)
	b.addOffset(envTopic, tp)
	b.addUint8(envMessageType, uint8(t))
	b.addOffset(envMessage, msg)
	b.addOffset(envMessageID, id)
	b.finish(b.endTable())
}

// builder writes a FlatBuffer back to front as the FlatBuffers Go builder
// does: offsets are counted from the end of the buffer and alignment is
// relative to that end. With a nil buf it only measures.
type builder struct {
	buf      []byte // output, filled from its end; nil while measuring
	off      int    // bytes written so far
	minalign int    // largest alignment requested
	slots    [strSlots]int
	nslots   int // slots in the current table
	tableEnd int // off when the current table was started
}

// into grows dst by the size b measured and returns dst and a fresh builder
// writing into the new, zeroed bytes.
func (b *builder) into(dst []byte) ([]byte, builder) {
	n := b.off
	dst = slices.Grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	clear(out)
	return dst[:len(dst)+n], builder{buf: out}
}

// claim reserves the next n bytes, which come before those already written,
// and returns them, or nil while measuring.
func (b *builder) claim(n int) []byte {
	b.off += n
	if b.buf == nil {
		return nil
	}
	i := len(b.buf) - b.off
	return b.buf[i : i+n]
}

// prep pads so that an item of size bytes is aligned once additional bytes
// have been written after the padding. Padding is zero: into clears the room.
func (b *builder) prep(size, additional int) {
	b.minalign = max(b.minalign, size)
	b.off += -(b.off + additional) & (size - 1)
}

func (b *builder) putUint8(v uint8) {
	if p := b.claim(1); p != nil {
		p[0] = v
	}
}

func (b *builder) putUint16(v uint16) {
	if p := b.claim(2); p != nil {
		binary.LittleEndian.PutUint16(p, v)
	}
}

func (b *builder) putUint32(v uint32) {
	if p := b.claim(4); p != nil {
		binary.LittleEndian.PutUint32(p, v)
	}
}

func (b *builder) putUint64(v uint64) {
	if p := b.claim(8); p != nil {
		binary.LittleEndian.PutUint64(p, v)
	}
}

// prependOffset writes a uoffset pointing at the item written at target.
func (b *builder) prependOffset(target int) {
	b.prep(4, 0)
	b.putUint32(uint32(b.off + 4 - target))
}

// byteString writes s as a byte vector followed by a zero byte, as the
// reference's CreateByteString does, and returns its offset.
func byteString[S ~string | ~[]byte](b *builder, s S) int {
	b.prep(4, len(s)+1)
	b.putUint8(0)
	if p := b.claim(len(s)); p != nil {
		copy(p, s)
	}
	b.putUint32(uint32(len(s)))
	return b.off
}

func (b *builder) startTable(n int) {
	b.nslots = n
	clear(b.slots[:])
	b.tableEnd = b.off
}

func (b *builder) addOffset(slot, target int) {
	b.prependOffset(target)
	b.slots[slot] = b.off
}

// addUint8, addUint32 and addUint64 leave a zero (default) value out.
func (b *builder) addUint8(slot int, v uint8) {
	if v != 0 {
		b.prep(1, 0)
		b.putUint8(v)
		b.slots[slot] = b.off
	}
}

func (b *builder) addUint32(slot int, v uint32) {
	if v != 0 {
		b.prep(4, 0)
		b.putUint32(v)
		b.slots[slot] = b.off
	}
}

func (b *builder) addUint64(slot int, v uint64) {
	if v != 0 {
		b.prep(8, 0)
		b.putUint64(v)
		b.slots[slot] = b.off
	}
}

// endTable writes the table's soffset and, before it, its vtable trimmed of
// trailing absent slots; it returns the table's offset.
func (b *builder) endTable() int {
	b.prep(4, 0)
	b.putUint32(0) // soffset, patched below
	table := b.off
	n := b.nslots
	for n > 0 && b.slots[n-1] == 0 {
		n--
	}
	for i := n - 1; i >= 0; i-- {
		var v int
		if b.slots[i] != 0 {
			v = table - b.slots[i]
		}
		b.prep(2, 0)
		b.putUint16(uint16(v))
	}
	b.prep(2, 0)
	b.putUint16(uint16(table - b.tableEnd))
	b.prep(2, 0)
	b.putUint16(uint16((n + 2) * 2))
	if b.buf != nil {
		binary.LittleEndian.PutUint32(b.buf[len(b.buf)-table:], uint32(int32(b.off-table)))
	}
	return table
}

// finish aligns the buffer start to the largest alignment used and writes the
// root offset.
func (b *builder) finish(root int) {
	b.prep(b.minalign, 4)
	b.prependOffset(root)
}
