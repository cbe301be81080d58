package mqttwire

import (
	"bufio"
	"errors"
)

// ErrMalformedVarint: a variable byte integer runs past its four bytes.
var ErrMalformedVarint = errors.New("malformed variable byte integer")

// ConsumeVarint decodes the MQTT variable byte integer at the start of b.
// It returns the value and the bytes it took; n is 0 when b ends before
// the integer does, and -1 when the integer runs past four bytes.
func ConsumeVarint(b []byte) (v, n int) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0
		}
		v |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, -1
}

// PeekFixedHeader looks at the fixed header of the packet at the head of
// r without consuming it: its length (the type byte and the remaining
// length's bytes) and the remaining length. It reads from the connection
// only as far as the header goes, so that a short packet at the end of
// what the peer sent is not waited past.
func PeekFixedHeader(r *bufio.Reader) (headerLen, remaining int, err error) {
	for i := 2; ; i++ {
		h, err := r.Peek(i)
		if err != nil {
			return 0, 0, err
		}
		switch v, n := ConsumeVarint(h[1:]); {
		case n > 0:
			return 1 + n, v, nil
		case n < 0:
			return 0, 0, ErrMalformedVarint
		}
	}
}
