package envelope

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestRoundTrip checks Parse(AppendFrame(f)) == f over fixed edge cases and
// many random frames, and that rebuilding the parse reproduces the bytes.
func TestRoundTrip(t *testing.T) {
	frames := []Frame{
		{Type: TypeStream},
		{Type: TypeStreamAck},
		{Type: TypeStreamAck, TxID: []byte("t"), Topic: []byte("V"), MessageID: []byte("m")},
		{Type: TypeStream, Stream: Stream{CreatedAt: math.MaxUint32, DeliveredAtEpochMS: math.MaxUint64}},
		{Type: TypeStream, Stream: Stream{DeliveredAtEpochMS: 1}},
		{Type: TypeStream, TxID: []byte{0}, Stream: Stream{Payload: bytes.Repeat([]byte{0xff}, 70000)}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	bytesOf := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for range 2000 {
		f := Frame{TxID: bytesOf(), Topic: bytesOf(), MessageID: bytesOf(), Type: TypeStreamAck}
		if rng.IntN(4) != 0 {
			f.Type = TypeStream
			f.Stream = Stream{
				SenderID: bytesOf(), Payload: bytesOf(), DeviceType: bytesOf(), DeviceID: bytesOf(),
			}
			if rng.IntN(2) == 0 {
				f.Stream.CreatedAt = rng.Uint32()
			}
			if rng.IntN(2) == 0 {
				f.Stream.DeliveredAtEpochMS = rng.Uint64()
			}
		}
		frames = append(frames, f)
	}
	for i, f := range frames {
		b := AppendFrame(nil, f)
		g, err := Parse(b)
		if err != nil {
			t.Fatalf("frame %d: Parse: %v", i, err)
		}
		if !equalFrame(f, g) {
			t.Fatalf("frame %d: round trip\n got %s\nwant %s", i, describe(g), describe(f))
		}
		if len(b)%4 != 0 {
			t.Fatalf("frame %d: length %d is not a multiple of 4", i, len(b))
		}
		if again := AppendFrame(nil, g); !bytes.Equal(again, b) {
			t.Fatalf("frame %d: rebuilding the parse changes the bytes", i)
		}
	}
}

// TestAppendKeepsDst checks that the Append functions only add to dst, and
// write the same bytes whatever dst's spare capacity: none, too little
// (stale bytes written, then regrown), exactly enough, or plenty of stale
// bytes.
func TestAppendKeepsDst(t *testing.T) {
	f := Frame{TxID: []byte("tx"), Topic: []byte("V"), MessageID: []byte("m"), Type: TypeStream,
		Stream: Stream{CreatedAt: 1, Payload: []byte("p"), DeliveredAtEpochMS: 9}}
	for _, tc := range []struct {
		name   string
		append func(dst []byte) []byte
	}{
		{"AppendAck", func(dst []byte) []byte { return AppendAck(dst, f.TxID, f.Topic) }},
		{"AppendError", func(dst []byte) []byte { return AppendError(dst, f.TxID, ErrorText) }},
		{"AppendFrame", func(dst []byte) []byte { return AppendFrame(dst, f) }},
	} {
		want := tc.append(nil)
		for _, room := range []int{0, 1, 9, len(want) - 1, len(want), len(want) + 1, 1024} {
			t.Run(fmt.Sprintf("%s/room_%d", tc.name, room), func(t *testing.T) {
				buf := bytes.Repeat([]byte{0xa5}, 6+room)
				dst := append(buf[:0], "prefix"...)
				got := tc.append(dst)
				if string(got[:6]) != "prefix" || !bytes.Equal(got[6:], want) {
					t.Fatalf("got %x\nwant prefix+%x", got, want)
				}
				if reused := &got[0] == &buf[0]; reused != (room >= len(want)) {
					t.Errorf("buffer reused = %v with %d bytes of room for %d", reused, room, len(want))
				}
			})
		}
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	txid, topic := []byte("txid-06-many"), []byte("V")
	f, err := Parse(readGolden(t, "06_v_many_fields.bin"))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"AppendAck", func() { dst = AppendAck(dst[:0], txid, topic) }},
		{"AppendError", func() { dst = AppendError(dst[:0], txid, ErrorText) }},
		{"AppendFrame", func() { dst = AppendFrame(dst[:0], f) }},
	} {
		if allocs := testing.AllocsPerRun(100, tc.run); allocs != 0 {
			t.Errorf("%s allocates %.1f times with room in dst", tc.name, allocs)
		}
	}
}
