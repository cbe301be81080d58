package external

import (
	"strings"
	"unicode/utf8"
)

// MQTT 5 PUBLISH fixed header bits.
const (
	publishType = 0x30
	flagDup     = 0x08
	flagRetain  = 0x01
)

// publishSize returns the size of an MQTT 5 PUBLISH packet without
// properties.
func publishSize(topic string, payloadLen int, qos byte) int {
	rem := remainingLength(topic, payloadLen, qos)
	return 1 + vbiLen(rem) + rem
}

func remainingLength(topic string, payloadLen int, qos byte) int {
	n := 2 + len(topic) + 1 + payloadLen // topic, property length 0, payload
	if qos > 0 {
		n += 2 // packet identifier
	}
	return n
}

// appendPublish appends an MQTT 5 PUBLISH packet without properties to b.
// It does not allocate when b has room.
func appendPublish(b []byte, topic string, payload []byte, qos byte, retain, dup bool, id uint16) []byte {
	h := byte(publishType) | qos<<1
	if retain {
		h |= flagRetain
	}
	if dup {
		h |= flagDup
	}
	b = append(b, h)
	b = appendVBI(b, remainingLength(topic, len(payload), qos))
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	b = append(b, 0) // no properties
	return append(b, payload...)
}

// appendVBI appends n as an MQTT variable byte integer.
func appendVBI(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func vbiLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

// maxPacket is the largest packet MQTT can encode (remaining length of at
// most 268,435,455 bytes).
const maxPacket = 268435455

// validTopic reports whether topic may be published to: 1 to 65535 bytes of
// UTF-8 without NUL and without the wildcards + and #. A broker disconnects
// a client that publishes to anything else.
func validTopic(topic string) bool {
	if topic == "" || len(topic) > 65535 {
		return false
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case c == '+' || c == '#' || c == 0:
			return false
		case c >= utf8.RuneSelf:
			return utf8.ValidString(topic[i:]) && !strings.ContainsAny(topic[i:], "+#\x00")
		}
	}
	return true
}

// validFilter reports whether filter is a well-formed subscription filter:
// + alone in its level, # alone in the last level.
func validFilter(filter string) bool {
	if filter == "" || len(filter) > 65535 || strings.ContainsRune(filter, 0) || !utf8.ValidString(filter) {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

// matchTopic reports whether topic matches the subscription filter. As the
// MQTT specification says, wildcards at the first level do not match topics
// that start with $.
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" also matches "a".
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}
