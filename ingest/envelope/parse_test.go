package envelope

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// raw writes a FlatBuffer front to back, by hand, so tests can lay tables,
// vtables and vectors out in ways the reference builder never does.
type raw struct{ b []byte }

func (w *raw) u8(v uint8) int {
	w.b = append(w.b, v)
	return len(w.b) - 1
}

func (w *raw) u16(vs ...uint16) int {
	at := len(w.b)
	for _, v := range vs {
		w.b = binary.LittleEndian.AppendUint16(w.b, v)
	}
	return at
}

func (w *raw) u32(v uint32) int {
	w.b = binary.LittleEndian.AppendUint32(w.b, v)
	return len(w.b) - 4
}

func (w *raw) u64(v uint64) int {
	w.b = binary.LittleEndian.AppendUint64(w.b, v)
	return len(w.b) - 8
}

// vec writes a byte vector (no terminator, no padding) and returns its start.
func (w *raw) vec(s string) int {
	at := w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
	return at
}

// offset patches the uoffset at "at" to point at target (target > at).
func (w *raw) offset(at, target int) {
	binary.LittleEndian.PutUint32(w.b[at:], uint32(target-at))
}

// vtable patches the soffset of the table at "table" to point at vtable,
// which may lie before or after it.
func (w *raw) vtable(table, vtable int) {
	binary.LittleEndian.PutUint32(w.b[table:], uint32(int32(table-vtable)))
}

// TestParseLayouts parses hand-built buffers whose layouts differ from the
// reference builder's.
func TestParseLayouts(t *testing.T) {
	full := Frame{
		TxID: []byte("tx-1"), Topic: []byte("V"), MessageID: []byte("m-1"), Type: TypeStream,
		Stream: Stream{
			CreatedAt: 1767225600, SenderID: []byte("vehicle_device.VIN1"), Payload: []byte{0x0a, 0x00, 0xff},
			DeviceType: []byte("vehicle_device"), DeviceID: []byte("VIN1"), DeliveredAtEpochMS: 1767225600123,
		},
	}
	for _, tc := range []struct {
		name  string
		build func() []byte
		want  Frame
	}{
		{
			// Tables first, vtables after them (negative soffsets), fields in
			// reverse slot order, unknown slots in both vtables, unaligned
			// scalars and vectors, vectors in no particular order.
			name: "forward layout with unknown fields",
			want: full,
			build: func() []byte {
				var w raw
				root := w.u32(0)
				env := w.u32(0)
				envMsgID, envMsg, envTopic, envTxID := w.u32(0), w.u32(0), w.u32(0), w.u32(0)
				w.u8(uint8(TypeStream)) // +20
				w.u8(0xee)              // +21, unknown slot 5
				w.u32(0xdeadbeef)       // +22, unknown slot 6
				envVT := w.u16(4+2*7, 26, 16, 12, 20, 8, 4, 21, 22)
				w.u8(0x55) // misalign the stream table
				st := w.u32(0)
				w.u64(full.Stream.DeliveredAtEpochMS) // +4, unaligned
				stDevID, stDevType, stPayload, stSender := w.u32(0), w.u32(0), w.u32(0), w.u32(0)
				w.u32(full.Stream.CreatedAt) // +28
				w.u16(0x1234)                // +32, unknown slot 6
				stVT := w.u16(4+2*7, 34, 28, 24, 20, 16, 12, 4, 32)
				w.offset(root, env)
				w.vtable(env, envVT)
				w.vtable(st, stVT)
				w.offset(envMsg, st)
				w.offset(stPayload, w.vec(string(full.Stream.Payload)))
				w.offset(envTxID, w.vec(string(full.TxID)))
				w.offset(stDevID, w.vec(string(full.Stream.DeviceID)))
				w.offset(envTopic, w.vec(string(full.Topic)))
				w.offset(stSender, w.vec(string(full.Stream.SenderID)))
				w.offset(envMsgID, w.vec(string(full.MessageID)))
				w.offset(stDevType, w.vec(string(full.Stream.DeviceType)))
				return w.b
			},
		},
		{
			// One vtable serves both tables: every field sits in a 4-byte cell
			// at the same offset (the envelope's type byte fills cell +12 the
			// way the stream's payload offset does). Vectors are shared too.
			name: "vtable shared by envelope and stream",
			want: Frame{
				TxID: []byte("same"), Topic: []byte("same"), MessageID: []byte("id"), Type: TypeStream,
				Stream: Stream{CreatedAt: 7, SenderID: []byte("same"), Payload: []byte("p"), DeviceType: []byte("id"), DeviceID: []byte("same")},
			},
			build: func() []byte {
				var w raw
				root := w.u32(0)
				vt := w.u16(14, 24, 4, 8, 12, 16, 20)
				w.u16(0) // pad
				env := w.u32(0)
				envTxID, envTopic := w.u32(0), w.u32(0)
				w.u32(uint32(TypeStream))
				envMsg, envMsgID := w.u32(0), w.u32(0)
				st := w.u32(0)
				w.u32(7)
				stSender, stPayload, stDevType, stDevID := w.u32(0), w.u32(0), w.u32(0), w.u32(0)
				same, id, p := w.vec("same"), w.vec("id"), w.vec("p")
				w.offset(root, env)
				w.vtable(env, vt)
				w.vtable(st, vt)
				w.offset(envMsg, st)
				for _, at := range []int{envTxID, envTopic, stSender, stDevID} {
					w.offset(at, same)
				}
				w.offset(envMsgID, id)
				w.offset(stDevType, id)
				w.offset(stPayload, p)
				return w.b
			},
		},
		{
			// An older writer: short vtables end before message_id and
			// before device_type, created_at is defaulted (slot 0), vtables
			// precede their tables.
			name: "short vtables and defaults",
			want: Frame{
				TxID: []byte("t"), Type: TypeStream,
				Stream: Stream{SenderID: []byte("s"), Payload: []byte{}},
			},
			build: func() []byte {
				var w raw
				root := w.u32(0)
				envVT := w.u16(12, 13, 4, 0, 12, 8)
				env := w.u32(0)
				envTxID, envMsg := w.u32(0), w.u32(0)
				w.u8(uint8(TypeStream))
				stVT := w.u16(10, 12, 0, 4, 8)
				st := w.u32(0)
				stSender, stPayload := w.u32(0), w.u32(0)
				w.offset(root, env)
				w.vtable(env, envVT)
				w.vtable(st, stVT)
				w.offset(envMsg, st)
				w.offset(envTxID, w.vec("t"))
				w.offset(stSender, w.vec("s"))
				w.offset(stPayload, w.vec(""))
				return w.b
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.build())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equalFrame(f, tc.want) {
				t.Fatalf("Parse = %s\nwant %s", describe(f), describe(tc.want))
			}
		})
	}
}

// TestParseAbsentIsNil checks that absent vectors are nil and present empty
// ones are not, as in the reference's generated accessors.
func TestParseAbsentIsNil(t *testing.T) {
	var w raw
	root := w.u32(0)
	vt := w.u16(8, 8, 0, 4) // only topic present
	w.u16(0)
	env := w.u32(0)
	topic := w.u32(0)
	w.offset(root, env)
	w.vtable(env, vt)
	w.offset(topic, w.vec(""))
	f, err := Parse(w.b)
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("Parse error = %v, want %v", err, ErrUnknownType)
	}
	if f.TxID != nil || f.MessageID != nil {
		t.Errorf("absent vectors not nil: txid %v message_id %v", f.TxID, f.MessageID)
	}
	if f.Topic == nil || len(f.Topic) != 0 {
		t.Errorf("empty topic = %v, want empty and not nil", f.Topic)
	}
}

// refLayout locates the parts of a frame built by AppendFrame so that tests
// can corrupt them one at a time.
type refLayout struct {
	env, envVT, st, stVT int
}

func locate(t *testing.T, b []byte) refLayout {
	t.Helper()
	var l refLayout
	l.env = int(binary.LittleEndian.Uint32(b))
	l.envVT = l.env - int(int32(binary.LittleEndian.Uint32(b[l.env:])))
	msg := l.env + int(binary.LittleEndian.Uint16(b[l.envVT+4+2*envMessage:]))
	l.st = msg + int(binary.LittleEndian.Uint32(b[msg:]))
	l.stVT = l.st - int(int32(binary.LittleEndian.Uint32(b[l.st:])))
	return l
}

// field returns the position of slot's value in the table at tbl with vtable vt.
func fieldAt(b []byte, tbl, vt, slot int) int {
	return tbl + int(binary.LittleEndian.Uint16(b[vt+4+2*slot:]))
}

func TestParseMalformed(t *testing.T) {
	base := AppendFrame(nil, Frame{
		TxID: []byte("txid-x"), Topic: []byte("V"), MessageID: []byte("m"), Type: TypeStream,
		Stream: Stream{CreatedAt: 1, SenderID: []byte("s"), Payload: []byte("payload"), DeviceType: []byte("d"), DeviceID: []byte("i"), DeliveredAtEpochMS: 2},
	})
	put32 := func(b []byte, at int, v uint32) { binary.LittleEndian.PutUint32(b[at:], v) }
	put16 := func(b []byte, at int, v uint16) { binary.LittleEndian.PutUint16(b[at:], v) }
	for _, tc := range []struct {
		name     string
		frame    func(b []byte, l refLayout) []byte
		want     error
		keepTxID bool // the envelope is sound, so its txid is returned
	}{
		{"empty", func(b []byte, _ refLayout) []byte { return nil }, ErrTruncated, false},
		{"three bytes", func(b []byte, _ refLayout) []byte { return b[:3] }, ErrTruncated, false},
		{"root offset zero", func(b []byte, _ refLayout) []byte { put32(b, 0, 0); return b }, ErrBadOffset, false},
		{"root offset past end", func(b []byte, _ refLayout) []byte { put32(b, 0, uint32(len(b))); return b }, ErrTruncated, false},
		{"root offset negative", func(b []byte, _ refLayout) []byte { put32(b, 0, 0xfffffffc); return b }, ErrBadOffset, false},
		{"root table cut", func(b []byte, _ refLayout) []byte { put32(b, 0, uint32(len(b)-3)); return b }, ErrTruncated, false},
		{"vtable before start", func(b []byte, l refLayout) []byte { put32(b, l.env, uint32(l.env+1)); return b }, ErrBadOffset, false},
		{"vtable past end", func(b []byte, l refLayout) []byte {
			put32(b, l.env, uint32(int32(l.env-(len(b)-3))))
			return b
		}, ErrTruncated, false},
		{"vtable soffset extreme", func(b []byte, l refLayout) []byte { put32(b, l.env, math.MaxInt32+1); return b }, ErrTruncated, false},
		{"vtable size 2", func(b []byte, l refLayout) []byte { put16(b, l.envVT, 2); return b }, ErrBadVTable, false},
		{"vtable size past end", func(b []byte, l refLayout) []byte { put16(b, l.envVT, uint16(len(b)-l.envVT+2)); return b }, ErrTruncated, false},
		{"vtable size max", func(b []byte, l refLayout) []byte { put16(b, l.envVT, 0xffff); return b }, ErrTruncated, false},
		{"field past end", func(b []byte, l refLayout) []byte { put16(b, l.envVT+4+2*envTopic, 0xfff0); return b }, ErrTruncated, false},
		{"type byte at last byte+1", func(b []byte, l refLayout) []byte {
			put16(b, l.envVT+4+2*envMessageType, uint16(len(b)-l.env))
			return b
		}, ErrTruncated, false},
		{"vector offset zero", func(b []byte, l refLayout) []byte { put32(b, fieldAt(b, l.env, l.envVT, envTxID), 0); return b }, ErrBadOffset, false},
		{"vector offset high bit", func(b []byte, l refLayout) []byte {
			put32(b, fieldAt(b, l.env, l.envVT, envTxID), 0x80000004)
			return b
		}, ErrBadOffset, false},
		{"vector offset past end", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envMessageID)
			put32(b, at, uint32(len(b)-at))
			return b
		}, ErrTruncated, false},
		{"vector header cut", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envMessageID)
			put32(b, at, uint32(len(b)-at-2))
			return b
		}, ErrTruncated, false},
		{"vector length past end", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envTopic)
			put32(b, at+int(binary.LittleEndian.Uint32(b[at:])), uint32(len(b)))
			return b
		}, ErrTruncated, false},
		{"vector length one past end", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envTopic)
			v := at + int(binary.LittleEndian.Uint32(b[at:]))
			put32(b, v, uint32(len(b)-(v+4)+1))
			return b
		}, ErrTruncated, false},
		{"vector length max", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envTopic)
			put32(b, at+int(binary.LittleEndian.Uint32(b[at:])), math.MaxUint32)
			return b
		}, ErrTruncated, false},
		{"message offset past end", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.env, l.envVT, envMessage)
			put32(b, at, uint32(len(b)-at))
			return b
		}, ErrTruncated, false},
		{"stream vtable before start", func(b []byte, l refLayout) []byte { put32(b, l.st, uint32(l.st+2)); return b }, ErrBadOffset, false},
		{"stream vtable size 0", func(b []byte, l refLayout) []byte { put16(b, l.stVT, 0); return b }, ErrBadVTable, false},
		{"stream delivered_at past end", func(b []byte, l refLayout) []byte {
			put16(b, l.stVT+4+2*strDeliveredAt, uint16(len(b)-l.st-7))
			return b
		}, ErrTruncated, false},
		{"stream created_at past end", func(b []byte, l refLayout) []byte {
			put16(b, l.stVT+4+2*strCreatedAt, uint16(len(b)-l.st-3))
			return b
		}, ErrTruncated, false},
		{"stream payload length past end", func(b []byte, l refLayout) []byte {
			at := fieldAt(b, l.st, l.stVT, strPayload)
			put32(b, at+int(binary.LittleEndian.Uint32(b[at:])), 1<<31)
			return b
		}, ErrTruncated, false},
		{"stream device_id offset zero", func(b []byte, l refLayout) []byte { put32(b, fieldAt(b, l.st, l.stVT, strDeviceID), 0); return b }, ErrBadOffset, false},
		{"missing message", func(b []byte, l refLayout) []byte { put16(b, l.envVT+4+2*envMessage, 0); return b }, ErrNoMessage, true},
		{"type none", func(b []byte, l refLayout) []byte { put16(b, l.envVT+4+2*envMessageType, 0); return b }, ErrUnknownType, true},
		{"type 7", func(b []byte, l refLayout) []byte { b[fieldAt(b, l.env, l.envVT, envMessageType)] = 7; return b }, ErrUnknownType, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), base...)
			f, err := Parse(tc.frame(b, locate(t, b)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if tc.keepTxID {
				checkBytes(t, "txid", f.TxID, "txid-x")
			} else if !equalFrame(f, Frame{}) {
				t.Errorf("structural error returned fields: %s", describe(f))
			}
		})
	}
}

// TestParseTruncations cuts a golden frame at every length: a prefix either
// fails with ErrTruncated or (when only trailing padding was cut) parses to
// the same frame.
func TestParseTruncations(t *testing.T) {
	frame := readGolden(t, "06_v_many_fields.bin")
	want, err := Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for n := range len(frame) {
		f, err := Parse(frame[:n])
		switch {
		case err == nil:
			if !equalFrame(f, want) {
				t.Fatalf("prefix %d parses to %s", n, describe(f))
			}
		case !errors.Is(err, ErrTruncated):
			t.Fatalf("prefix %d: error %v, want %v", n, err, ErrTruncated)
		default:
			failed++
		}
	}
	if failed < len(frame)-8 {
		t.Errorf("only %d of %d prefixes failed", failed, len(frame))
	}
}

// TestParseAliases checks that parsed slices point into the frame and cannot
// be appended to over it.
func TestParseAliases(t *testing.T) {
	frame := readGolden(t, "01_v_scalar_types.bin")
	f, err := Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	if cap(f.TxID) != len(f.TxID) || cap(f.Stream.Payload) != len(f.Stream.Payload) {
		t.Errorf("slice capacity not clipped")
	}
	f.Stream.Payload[0] ^= 0xff
	if g, _ := Parse(frame); g.Stream.Payload[0] != f.Stream.Payload[0] {
		t.Errorf("payload is a copy, not an alias of the frame")
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	frame := readGolden(t, "06_v_many_fields.bin")
	var sink Frame
	allocs := testing.AllocsPerRun(100, func() {
		f, err := Parse(frame)
		if err != nil {
			t.Fatal(err)
		}
		sink = f
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %.1f times per frame", allocs)
	}
	_ = sink
}

func TestMessageTypeString(t *testing.T) {
	for typ, want := range map[MessageType]string{
		TypeNone: "none", TypeStream: "stream", TypeStreamAck: "stream_ack", 9: "MessageType(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(typ), got, want)
		}
	}
}
