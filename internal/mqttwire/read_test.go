package mqttwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestConsumeVarint(t *testing.T) {
	for _, v := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemaining} {
		b := AppendVarint(nil, v)
		got, n := ConsumeVarint(append(b, 0xff)) // what follows is not read
		if got != v || n != len(b) {
			t.Errorf("%d: decoded %d from %d bytes, want %d from %d", v, got, n, v, len(b))
		}
		if _, n := ConsumeVarint(b[:len(b)-1]); n != 0 {
			t.Errorf("%d cut short: n %d, want 0", v, n)
		}
	}
	if _, n := ConsumeVarint([]byte{0x80, 0x80, 0x80, 0x80, 0x01}); n != -1 {
		t.Errorf("five bytes: n %d, want -1", n)
	}
}

func TestPeekFixedHeader(t *testing.T) {
	r := bufio.NewReader(bytes.NewReader(append([]byte{0xd0, 0x00, 0x30}, AppendVarint(nil, 300)...)))
	for _, want := range [][2]int{{2, 0}, {3, 300}} {
		hlen, rem, err := PeekFixedHeader(r)
		if err != nil || hlen != want[0] || rem != want[1] {
			t.Fatalf("header %d, remaining %d, %v; want %v", hlen, rem, err, want)
		}
		if _, err := r.Discard(hlen); err != nil { // the packet's body is not there: only its header
			t.Fatal(err)
		}
	}
	if _, _, err := PeekFixedHeader(r); err != io.EOF {
		t.Errorf("at the end: %v, want EOF", err)
	}
	bad := bufio.NewReader(bytes.NewReader([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}))
	if _, _, err := PeekFixedHeader(bad); !errors.Is(err, ErrMalformedVarint) {
		t.Errorf("five-byte remaining length: %v, want ErrMalformedVarint", err)
	}
}
