package envelope

import (
	"encoding/binary"
	"slices"
)

// The Append functions reproduce, call for call, the sequence in which Tesla's
// reference server drives the FlatBuffers Go builder, so their output is
// byte-identical to the reference frames and responses. They build back to
// front at the end of dst's spare capacity and then move the result into
// place; only when that room is too small do they grow dst and build again.

// AppendAck appends the server's acknowledgement of a record to dst: an
// envelope with message_type StreamAck, txid and topic echoed, an empty
// message_id, and the message slot pointing at an empty vector.
func AppendAck(dst, txid, topic []byte) []byte {
	b := newBuilder(dst)
	writeEmptyMessage(&b, txid, topic, nil, TypeStreamAck)
	if b.short() {
		b = b.grow(&dst)
		writeEmptyMessage(&b, txid, topic, nil, TypeStreamAck)
	}
	return b.appendTo(dst)
}

// AppendError appends the server's error response to dst: an envelope with
// message_type Stream whose Stream payload is text (ErrorText in practice),
// txid echoed, every other vector empty.
func AppendError(dst, txid []byte, text string) []byte {
	b := newBuilder(dst)
	writeError(&b, txid, text)
	if b.short() {
		b = b.grow(&dst)
		writeError(&b, txid, text)
	}
	return b.appendTo(dst)
}

// AppendFrame appends f as a vehicle would send it. For TypeStream it writes
// the Stream table; for any other type it writes no Stream and, like the
// reference acknowledgement, points the message slot at an empty vector.
// Nil and empty vectors are both written as present and empty.
func AppendFrame(dst []byte, f Frame) []byte {
	b := newBuilder(dst)
	writeFrame(&b, &f)
	if b.short() {
		b = b.grow(&dst)
		writeFrame(&b, &f)
	}
	return b.appendTo(dst)
}

// writeEmptyMessage writes an envelope of type t whose message slot points
// at an empty vector, as the reference acknowledgement does.
func writeEmptyMessage(b *builder, txid, topic, messageID []byte, t MessageType) {
	empty := byteString(b, "")
	writeEnvelope(b, txid, topic, empty, messageID, t)
}

func writeError(b *builder, txid []byte, text string) {
	msg := writeStream(b, &Stream{}, text)
	writeEnvelope(b, txid, nil, msg, nil, TypeStream)
}

func writeFrame(b *builder, f *Frame) {
	if f.Type != TypeStream {
		writeEmptyMessage(b, f.TxID, f.Topic, f.MessageID, f.Type)
		return
	}
	msg := writeStream(b, &f.Stream, f.Stream.Payload)
	writeEnvelope(b, f.TxID, f.Topic, msg, f.MessageID, TypeStream)
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
	// This vtable never equals the Envelope's: there slot 2 is the type byte,
	// absent or at an odd offset; here it is the payload offset, always
	// present at an even one. So the reference builder's vtable
	// deduplication never applies and is not reproduced.
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
// relative to that end. Once buf is full it goes on measuring only.
type builder struct {
	buf      []byte // filled from its end
	off      int    // bytes written so far, or that would have been
	minalign int    // largest alignment requested
	slots    [strSlots]int
	nslots   int // slots in the current table
	tableEnd int // off when the current table was started
}

// newBuilder returns a builder writing into the spare capacity of dst.
func newBuilder(dst []byte) builder {
	return builder{buf: dst[len(dst):cap(dst)]}
}

// short reports whether the buffer was too small for what was built.
func (b *builder) short() bool { return b.off > len(b.buf) }

// grow makes room in *dst for exactly what b measured and returns a builder
// writing there.
func (b *builder) grow(dst *[]byte) builder {
	*dst = slices.Grow(*dst, b.off)
	return builder{buf: (*dst)[len(*dst) : len(*dst)+b.off]}
}

// appendTo moves the finished buffer to the end of dst and returns the
// extended slice; dst's capacity must hold it (built by newBuilder or grow).
func (b *builder) appendTo(dst []byte) []byte {
	n := len(dst) + b.off
	copy(dst[len(dst):n], b.buf[len(b.buf)-b.off:])
	return dst[:n]
}

// claim reserves the next n bytes, which come before those already written,
// and returns them, or nil once the buffer is full.
func (b *builder) claim(n int) []byte {
	b.off += n
	if b.off > len(b.buf) {
		return nil
	}
	i := len(b.buf) - b.off
	return b.buf[i : i+n]
}

// prep writes zero padding so that an item of size bytes is aligned once
// additional bytes have been written after the padding.
func (b *builder) prep(size, additional int) {
	b.minalign = max(b.minalign, size)
	if n := -(b.off + additional) & (size - 1); n > 0 {
		clear(b.claim(n))
	}
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
	if !b.short() {
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
