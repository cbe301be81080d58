package ingest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The frame guard sits between a car's TLS connection and the WebSocket
// library and reads every frame header as it passes, before the library
// acts on it. It enforces what the library cannot: a message whose header
// declares more than can be skipped is refused as soon as the header
// arrives (the library would read, or wait for, all of it), and control
// frames (ping, pong, close) are limited to a rate no car reaches (the
// library answers every ping with a pong, without limit). It refuses by
// failing the read: the library hands the error to the read loop, which
// answers and closes (see vehicleConn.readFailed). The bytes before the
// offending header are passed on, so frames that arrived earlier are
// handled first.

// Limits of the frame guard.
const (
	// maxSkippedMessage is the largest message (all fragments) that is read
	// to its end and discarded when it is over MaxFrameSize: it is answered
	// with the protocol's error response and the connection goes on, as the
	// protocol asks. A message that declares more is answered with the
	// error response when its header arrives and the connection is closed,
	// since only reading the whole payload would lead to the next frame.
	maxSkippedMessage = 4 * MaxFrameSize

	// Control frames a car may send: controlBurst at once, then
	// controlRate per second. A car answers the server's pings (one every
	// ping_interval) and may ping now and then itself; a car that sends
	// more is flooding and is dropped.
	controlBurst = 100
	controlRate  = 10
)

// errControlFlood is the read error of a car that sent control frames
// faster than controlRate.
type errControlFlood struct{}

func (errControlFlood) Error() string {
	return fmt.Sprintf("control frames (ping, pong, close) faster than %d per second after a burst of %d", controlRate, controlBurst)
}

// errMessageTooLarge is the read error of a message whose headers declare
// more than maxSkippedMessage bytes.
type errMessageTooLarge struct {
	declared uint64 // bytes the message's headers declared so far
}

func (e errMessageTooLarge) Error() string {
	return fmt.Sprintf("frame header declares a message of %d bytes: frames are limited to %d bytes, and a message over %d is refused unread", e.declared, MaxFrameSize, maxSkippedMessage)
}

// controlInterval is the time one control frame costs of the budget.
const controlInterval = time.Second / controlRate

// controlBudget is a token bucket for control frames, kept as the time at
// which the bucket is full again (the generic cell rate algorithm), so
// that it costs one word per connection.
type controlBudget struct {
	full time.Duration // since the guard's start
}

// allow reports whether a control frame arriving at now fits the budget,
// and takes it from the budget if so.
func (b *controlBudget) allow(now time.Duration) bool {
	full := max(b.full, now)
	if full-now > (controlBurst-1)*controlInterval {
		return false
	}
	b.full = full + controlInterval
	return true
}

// frameGuard follows the frame structure of the bytes a client sends.
type frameGuard struct {
	hdr       [14]byte // the header being read
	hdrLen    int      // bytes of hdr read
	remaining uint64   // payload bytes of the current frame still to come
	message   uint64   // bytes the current data message declared so far
	control   controlBudget
}

// frameHeaderSize returns the size of a frame header whose second byte
// is b1.
func frameHeaderSize(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

// scan follows p, the next bytes from the client, arriving at now. It
// returns how many of them may be passed on: all, or, when a frame header
// breaks a limit, those before that header (a header that began in an
// earlier read has been passed on in part) together with the reason.
func (g *frameGuard) scan(p []byte, now time.Duration) (int, error) {
	for i := 0; i < len(p); {
		if g.remaining > 0 {
			k := min(uint64(len(p)-i), g.remaining)
			i += int(k)
			g.remaining -= k
			continue
		}
		start := i - g.hdrLen // where the header began; negative if in an earlier read
		g.hdr[g.hdrLen] = p[i]
		g.hdrLen++
		i++
		if g.hdrLen < 2 || g.hdrLen < frameHeaderSize(g.hdr[1]) {
			continue
		}
		if err := g.frame(now); err != nil {
			return max(start, 0), err
		}
	}
	return len(p), nil
}

// frame checks the frame header in g.hdr and starts following its payload.
func (g *frameGuard) frame(now time.Duration) error {
	h := g.hdr[:g.hdrLen]
	g.hdrLen = 0
	var length uint64
	switch n := h[1] & 0x7f; n {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:])
	default:
		length = uint64(n)
	}
	// The library refuses control frames over 125 bytes and lengths with
	// the top bit set, closing the connection: following them is moot.
	g.remaining = length
	switch op := h[0] & 0x0f; {
	case op&0x8 != 0: // close, ping, pong (and reserved control opcodes)
		if !g.control.allow(now) {
			return errControlFlood{}
		}
		return nil
	case op == 0: // continuation
		g.message = satAdd(g.message, length)
	default: // text, binary (and reserved data opcodes, which the library refuses)
		g.message = length
	}
	if g.message > maxSkippedMessage {
		return errMessageTooLarge{declared: g.message}
	}
	return nil
}

// satAdd adds without overflowing.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

// guardedConn is a car's connection with its frame guard on the read side.
// Once the guard refuses, every read returns its error.
type guardedConn struct {
	net.Conn
	guard frameGuard
	start time.Time // the guard's clock: monotonic time since the upgrade
	err   error
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		k, gerr := c.guard.scan(p[:n], time.Since(c.start))
		if gerr != nil {
			c.err = gerr
			return k, gerr
		}
	}
	return n, err
}

// guardingWriter hands the WebSocket library a guarded connection when it
// hijacks the request's connection for the upgrade.
type guardingWriter struct {
	http.ResponseWriter
	conn *guardedConn // set by Hijack
}

func (w *guardingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The library reads through its own buffer (Upgrader.ReadBufferSize
	// is set), so every byte after the upgrade passes the guard; brw's
	// reader is empty, or the library refuses the upgrade.
	w.conn = &guardedConn{Conn: c, start: time.Now()}
	return w.conn, brw, nil
}
