package envelope

import "testing"

func BenchmarkParse(b *testing.B) {
	frame := readGolden(b, "06_v_many_fields.bin")
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var sink Frame
	for b.Loop() {
		f, err := Parse(frame)
		if err != nil {
			b.Fatal(err)
		}
		sink = f
	}
	_ = sink
}

func BenchmarkAppendAck(b *testing.B) {
	txid, topic := []byte("txid-06-many"), []byte("V")
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendAck(dst[:0], txid, topic)
	}
}

func BenchmarkAppendError(b *testing.B) {
	txid := []byte("txid-13-corrupt")
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendError(dst[:0], txid, ErrorText)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	f, err := Parse(readGolden(b, "06_v_many_fields.bin"))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendFrame(dst[:0], f)
	}
}
