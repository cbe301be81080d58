// Package mqttwire encodes the MQTT packets that fleet2mqtt writes to a
// connection itself, past the MQTT libraries: PUBLISH packets of MQTT 3.1,
// 3.1.1 and 5, and the variable byte integers they hold. The embedded
// broker's fan-out (bridge/embedded) writes them to its subscribers, the
// external broker client (bridge/external) to its broker; both encode every
// message of a record this way, so the encoder appends into a buffer the
// caller keeps and allocates nothing.
//
// Only what those two need is here: a PUBLISH with no property, or with
// subscription identifiers alone. A packet with other properties is left to
// the library that made it. For reading, the variable byte integer and a
// packet's fixed header (read.go): the external client takes PUBACKs out
// of its broker's stream with them, the load driver's subscriber reads
// its broker's packets.
package mqttwire

// MaxRemaining is the largest remaining length an MQTT packet can declare:
// what follows its fixed header is at most this many bytes (four bytes of
// variable byte integer).
const MaxRemaining = 268_435_455

// PUBLISH fixed header: the packet type in the high nibble, then the flags.
const (
	publishType = 3 << 4
	flagDup     = 0x08
	flagRetain  = 0x01
)

// propSubscriptionIdentifier is the MQTT 5 property identifier of a
// subscription identifier.
const propSubscriptionIdentifier = 0x0b

// Publish is everything of a PUBLISH packet but its payload.
type Publish struct {
	Topic  string
	QoS    byte // 0, 1 or 2
	Retain bool
	Dup    bool   // a resend of a QoS 1 or 2 packet
	ID     uint16 // the packet identifier; QoS 1 and 2 only

	// Version is the protocol version of the connection: 5 for MQTT 5,
	// whose packets carry properties; 3 (MQTT 3.1) and 4 (3.1.1) have none.
	Version byte

	// SubscriptionIDs are the MQTT 5 subscription identifiers of the
	// subscriptions that matched, the only property encoded. Each is
	// 1 to MaxRemaining.
	SubscriptionIDs []int
}

// remaining returns the remaining length of the packet with a payload of
// payloadLen bytes, and the length of its property section.
func (p *Publish) remaining(payloadLen int) (remaining, props int) {
	remaining = 2 + len(p.Topic) + payloadLen
	if p.QoS > 0 {
		remaining += 2
	}
	if p.Version == 5 {
		for _, id := range p.SubscriptionIDs {
			props += 1 + VarintLen(id)
		}
		remaining += VarintLen(props) + props
	}
	return remaining, props
}

// Size returns the size of the whole packet with a payload of payloadLen
// bytes: what AppendPublish appends.
func (p *Publish) Size(payloadLen int) int {
	remaining, _ := p.remaining(payloadLen)
	return 1 + VarintLen(remaining) + remaining
}

// AppendPublish appends the PUBLISH packet of p with payload to dst and
// returns the extended buffer. It does not allocate when dst has room
// (see Size). The caller checks what MQTT limits: a topic of at most 65,535
// bytes and a remaining length of at most MaxRemaining.
func AppendPublish(dst []byte, p *Publish, payload []byte) []byte {
	remaining, props := p.remaining(len(payload))
	h := byte(publishType) | p.QoS<<1
	if p.Retain {
		h |= flagRetain
	}
	if p.Dup {
		h |= flagDup
	}
	dst = append(dst, h)
	dst = AppendVarint(dst, remaining)
	dst = append(dst, byte(len(p.Topic)>>8), byte(len(p.Topic)))
	dst = append(dst, p.Topic...)
	if p.QoS > 0 {
		dst = append(dst, byte(p.ID>>8), byte(p.ID))
	}
	if p.Version == 5 {
		dst = AppendVarint(dst, props)
		for _, id := range p.SubscriptionIDs {
			dst = append(dst, propSubscriptionIdentifier)
			dst = AppendVarint(dst, id)
		}
	}
	return append(dst, payload...)
}

// AppendVarint appends n, 0 to MaxRemaining, as an MQTT variable byte
// integer: seven bits a byte, least significant first, the high bit set on
// every byte but the last.
func AppendVarint(dst []byte, n int) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if n == 0 {
			return dst
		}
	}
}

// VarintLen returns the number of bytes AppendVarint appends for n.
func VarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}
