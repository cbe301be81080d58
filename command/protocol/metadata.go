package protocol

import (
	"encoding/binary"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
)

// Metadata is the canonical serialization of the values an authentication
// code covers (protocol.md, "Metadata serialization"): each item is
// tag ‖ length ‖ value, items appear in strictly ascending tag order, and
// the string ends with the byte 0xFF (TAG_END).
//
// The zero value is an empty metadata string ready for use.
type Metadata struct {
	buf  []byte
	last int // last tag added; -1 before the first (set lazily)
	used bool
}

// Add appends one item. Tags must be added in strictly ascending order and
// values may be at most 255 bytes long; anything else is a programming
// error reported as an error so that no ambiguous string is ever signed.
func (m *Metadata) Add(tag signatures.Tag, value []byte) error {
	if tag >= signatures.Tag_TAG_END {
		return fmt.Errorf("metadata tag %d is reserved", tag)
	}
	if m.used && int(tag) <= m.last {
		return fmt.Errorf("metadata tag %v added after tag %d: tags must ascend", tag, m.last)
	}
	if len(value) > 255 {
		return fmt.Errorf("metadata value for %v is %d bytes; at most 255 fit", tag, len(value))
	}
	m.buf = append(m.buf, byte(tag), byte(len(value)))
	m.buf = append(m.buf, value...)
	m.last, m.used = int(tag), true
	return nil
}

// AddUint32 appends an integer item as its four-byte big-endian encoding.
func (m *Metadata) AddUint32(tag signatures.Tag, v uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return m.Add(tag, b[:])
}

// Encode returns the serialized metadata including the final 0xFF byte.
// The Metadata must not be used afterwards.
func (m *Metadata) Encode() []byte {
	return append(m.buf, byte(signatures.Tag_TAG_END))
}
