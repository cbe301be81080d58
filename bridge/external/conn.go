package external

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
)

// Write coalescing. paho writes every packet straight to its connection, one
// system call per PUBLISH; conn gathers packets in a buffer and writes them
// together:
//   - a batch of messages is appended under one Lock, so it costs one write;
//   - a writer leaves the flush to writers (and publishers) waiting behind
//     it, so concurrent batches share one write;
//   - while QoS 1 packets already on the wire await their PUBACK, new data
//     waits for the reader: it flushes before it blocks for the next read,
//     that is right after PUBACKs came in (Nagle's rule, in user space).
//     Under load one write then carries every batch that became ready
//     during a round trip;
//   - a timer writes anything still buffered flushDelay later, and a full
//     buffer is written at once.
const (
	// flushDelay bounds how long a packet may wait in the buffer.
	flushDelay = time.Millisecond
	// flushSize makes a busy connection write once this much is buffered.
	flushSize = 32 << 10
	// maxIdleBuffer is the buffer capacity kept after a flush; a larger one
	// (after a very large message) is dropped.
	maxIdleBuffer = 256 << 10
	readBuffer    = 8 << 10
)

// conn wraps a network connection for paho. Writers bracket each packet with
// Lock and Unlock (paho does so for every packet because conn implements
// sync.Locker); Write only appends to the buffer, and Unlock decides when
// to write it out (see above). Reads go through a buffered reader because
// paho reads each packet header byte by byte; only one goroutine reads at a
// time (paho's reader).
type conn struct {
	net.Conn
	r *bufio.Reader

	writers atomic.Int32 // writers inside or waiting for Lock; a pending flush is left to the last
	// waiting, when set, counts publishers about to write (session.waiting);
	// while it is not zero a flush is left to them as well.
	waiting *atomic.Int32
	// acked counts PUBACKs received on this connection (session.puback).
	acked atomic.Int64
	// onPubacks receives the PUBACKs that Read takes out of the stream, in
	// batches: all that arrived in one read from the network (see acks).
	onPubacks func([]puback)
	// acks are PUBACKs taken out of the stream and not yet handed to
	// onPubacks; they are handed over before the reader waits for the
	// network, before it passes another packet to paho, and on an error.
	// Reader only.
	acks []puback
	pass int // bytes of the current incoming packet still to pass to paho

	mu       sync.Mutex // held from Lock to Unlock, and by the timer's and reader's flush
	buf      []byte
	appended int64 // QoS 1 PUBLISH packets appended to buf, ever
	flushed  int64 // value of appended at the last flush: QoS 1 packets on the wire
	err      error // first write error; every later write fails with it
	timer    *time.Timer
	armed    bool // timer is set to flush
}

// puback is an acknowledgement of a QoS 1 PUBLISH: its packet identifier
// and reason code.
type puback struct {
	id     uint16
	reason byte
}

func newConn(c net.Conn, waiting *atomic.Int32, onPubacks func([]puback)) *conn {
	bc := &conn{Conn: c, buf: make([]byte, 0, 4<<10), waiting: waiting, onPubacks: onPubacks}
	bc.r = bufio.NewReaderSize(flushBeforeRead{bc}, readBuffer)
	bc.timer = time.AfterFunc(time.Hour, bc.timerFlush)
	bc.timer.Stop()
	return bc
}

// Read passes the broker's packets to paho, except PUBACKs: those go
// straight to onPubacks, sparing paho's reader a dozen allocations and a
// dispatch per acknowledgement, and the session a lock per acknowledgement
// (a batch is handled under one). Anything Read does not recognise as a
// small PUBACK reaches paho unchanged (and a PUBACK that paho gets ends up
// in the same place through session.PacketReceived).
func (c *conn) Read(p []byte) (int, error) {
	for c.pass == 0 && c.onPubacks != nil {
		size, err := c.nextPacket()
		if err != nil {
			c.handAcks() // those that arrived before the error count
			return 0, err
		}
		if size > 0 {
			c.pass = size
			c.handAcks()
		}
	}
	if c.pass > 0 && len(p) > c.pass {
		p = p[:c.pass]
	}
	n, err := c.r.Read(p)
	if c.pass > 0 {
		c.pass -= n
	}
	return n, err
}

// maxPubackLen is the largest PUBACK taken out of the stream; a longer one
// (with properties such as a reason string) is left to paho.
const maxPubackLen = 64

// nextPacket looks at the packet at the head of the stream. It consumes a
// PUBACK and returns 0, or returns the size of any other packet.
func (c *conn) nextPacket() (int, error) {
	hlen, rem, err := mqttwire.PeekFixedHeader(c.r)
	if errors.Is(err, mqttwire.ErrMalformedVarint) {
		return 0, errors.New("read from broker: malformed remaining length")
	}
	if err != nil {
		return 0, err
	}
	size := hlen + rem
	h, _ := c.r.Peek(1)
	if h[0] != 0x40 || rem < 2 || size > maxPubackLen {
		return size, nil
	}
	pkt, err := c.r.Peek(size)
	if err != nil {
		return 0, err
	}
	id := uint16(pkt[hlen])<<8 | uint16(pkt[hlen+1])
	var reason byte
	if rem > 2 {
		reason = pkt[hlen+2]
	}
	_, _ = c.r.Discard(size)
	c.acks = append(c.acks, puback{id, reason})
	return 0, nil
}

// handAcks hands the PUBACKs gathered so far to onPubacks. Reader only.
func (c *conn) handAcks() {
	if len(c.acks) == 0 {
		return
	}
	c.onPubacks(c.acks)
	c.acks = c.acks[:0]
}

// flushBeforeRead is the network side of the buffered reader: before the
// reader waits for more data it writes out what was deferred while PUBACKs
// were expected. It never waits for a writer (who flushes anyway): a writer
// blocked on a broker that waits for us to read would otherwise block the
// reader too.
type flushBeforeRead struct{ c *conn }

func (f flushBeforeRead) Read(p []byte) (int, error) {
	c := f.c
	// What the last read brought is all handled before waiting for more.
	c.handAcks()
	if c.mu.TryLock() {
		c.flushLocked()
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

// Lock starts a packet (or a run of packets) of one writer.
func (c *conn) Lock() {
	c.writers.Add(1)
	c.mu.Lock()
}

// Unlock ends a writer's packets and writes the buffer out unless another
// writer follows, or PUBACKs are on their way (then the reader flushes).
func (c *conn) Unlock() {
	last := c.writers.Add(-1) == 0 && (c.waiting == nil || c.waiting.Load() == 0)
	switch {
	case len(c.buf) == 0:
	case len(c.buf) >= flushSize, last && c.flushed <= c.acked.Load():
		c.flushLocked()
	case !c.armed:
		c.armed = true
		c.timer.Reset(flushDelay)
	}
	c.mu.Unlock()
}

// Write appends p to the buffer. The caller holds Lock.
func (c *conn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// flushLocked writes the buffer out. The caller holds mu. A write error
// closes the connection so that paho's reader notices and reconnects.
func (c *conn) flushLocked() {
	if len(c.buf) == 0 || c.err != nil {
		c.buf = c.buf[:0]
		return
	}
	c.flushed = c.appended
	_, err := c.Conn.Write(c.buf)
	if err != nil {
		c.err = fmt.Errorf("write to broker: %w", err)
		_ = c.Conn.Close()
	}
	if cap(c.buf) > maxIdleBuffer {
		c.buf = make([]byte, 0, 4<<10)
	} else {
		c.buf = c.buf[:0]
	}
}

func (c *conn) timerFlush() {
	c.mu.Lock()
	c.armed = false
	c.flushLocked()
	c.mu.Unlock()
}

// Close closes the connection at once; buffered bytes are dropped. It does
// not wait for mu, which a writer blocked on a dead peer may hold.
func (c *conn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// dial opens a network connection to u (canonical scheme, explicit port).
func dial(ctx context.Context, u *url.URL, tlsConfig *tls.Config) (net.Conn, error) {
	switch u.Scheme {
	case "mqtt":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		return quickAck(c), nil
	case "mqtts":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(quickAck(c), tlsConfigFor(tlsConfig, u))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	case "ws", "wss":
		d := websocket.Dialer{
			Subprotocols:    []string{"mqtt"},
			TLSClientConfig: tlsConfig,
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return quickAck(c), nil
			},
		}
		ws, resp, err := d.DialContext(ctx, u.String(), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return nil, err
		}
		return &wsConn{Conn: ws}, nil
	}
	return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
}

// tlsConfigFor sets the server name to verify from u when cfg has none.
func tlsConfigFor(cfg *tls.Config, u *url.URL) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName != "" {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName = u.Hostname()
	return cfg
}

// wsConn presents a WebSocket as a byte stream: every Write is one binary
// message (conn writes a whole buffer at a time, under its lock), Read
// continues across message boundaries, which MQTT over WebSocket allows.
type wsConn struct {
	*websocket.Conn
	r io.Reader // current message
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
