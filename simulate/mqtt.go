package simulate

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
	"github.com/fleet2mqtt/fleet2mqtt/internal/uuid"
)

// MQTTSubscriber counts the messages an MQTT broker delivers on a topic
// filter: the load driver's view of what a server published.
//
// It speaks just enough MQTT 5 for that (CONNECT, SUBSCRIBE, PUBLISH at
// any QoS with its acknowledgements, PINGREQ), reads through one buffer
// without allocating per message and acknowledges QoS 1 messages in
// batches, so that it reads about as fast as mosquitto_sub: the driver
// shares the machine with the server it measures, and a subscriber that
// costs more than the server's own publishing would measure itself.
type MQTTSubscriber struct {
	conn  net.Conn
	r     *bufio.Reader
	epoch time.Time
	count atomic.Int64
	last  atomic.Int64 // arrival of the last counted message, nanoseconds since epoch

	wmu  sync.Mutex // serialises writes: the reader's acknowledgements, the pinger
	acks []byte     // acknowledgements not yet written; the reader's alone

	onMessage func(topic, payload []byte, at time.Time)
	done      chan struct{} // closed when the reader ends
	closeOnce sync.Once
	err       error // why the reader ended; read after done
}

// MQTTOptions says where and how to subscribe.
type MQTTOptions struct {
	// Addr is the broker's host:port (an mqtt:// prefix is accepted).
	Addr string
	// Topic is the topic filter, such as "tesla/#".
	Topic string
	// QoS is the subscription's maximum QoS (0, 1 or 2).
	QoS byte
	// Username and Password authenticate when Username is set.
	Username, Password string
}

// keepAlive is the subscriber's MQTT keep-alive.
const keepAlive = 30 * time.Second

// MQTT control packet types (high nibble of the first byte).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktPubrec     = 5
	pktPubrel     = 6
	pktPubcomp    = 7
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// maxIncoming bounds a packet the subscriber accepts (and announces as its
// Maximum Packet Size).
const maxIncoming = 1 << 20

// DialMQTT connects an MQTT 5 client to the broker and subscribes to the
// topic filter. Retained messages are not asked for and not counted, so
// the count is what is published from now on.
func DialMQTT(ctx context.Context, opt MQTTOptions) (*MQTTSubscriber, error) {
	return dialMQTT(ctx, opt, nil)
}

// dialMQTT is DialMQTT that also hands every counted message, with when
// it arrived, to onMessage (when set), on the client's one reading
// goroutine; topic and payload are valid only during the call.
func dialMQTT(ctx context.Context, opt MQTTOptions, onMessage func(topic, payload []byte, at time.Time)) (*MQTTSubscriber, error) {
	addr := strings.TrimPrefix(opt.Addr, "mqtt://")
	if opt.QoS > 2 {
		return nil, fmt.Errorf("mqtt qos %d: must be 0, 1 or 2", opt.QoS)
	}
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to mqtt broker: %w", err)
	}
	s := &MQTTSubscriber{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), epoch: time.Now(), onMessage: onMessage, done: make(chan struct{})}
	if err := s.handshake(ctx, opt); err != nil {
		conn.Close()
		return nil, err
	}
	go s.read()
	go s.ping()
	return s, nil
}

// handshake connects and subscribes, within ctx.
func (s *MQTTSubscriber) handshake(ctx context.Context, opt MQTTOptions) error {
	if deadline, ok := ctx.Deadline(); ok {
		s.conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	defer s.conn.SetDeadline(time.Time{})

	// CONNECT: MQTT 5, clean start, Maximum Packet Size, client id, login.
	flags := byte(0x02)
	if opt.Username != "" {
		flags |= 0x80 | 0x40
	}
	body := appendString(nil, "MQTT")
	body = append(body, 5, flags, byte(keepAlive/time.Second>>8), byte(keepAlive/time.Second))
	body = append(body, 5, 0x27) // properties: Maximum Packet Size
	body = binary.BigEndian.AppendUint32(body, maxIncoming)
	body = appendString(body, "fleet2mqtt-load-"+uuid.New()[:8])
	if opt.Username != "" {
		body = appendString(body, opt.Username)
		body = appendString(body, opt.Password)
	}
	if err := s.write(packet(pktConnect<<4, body)); err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	typ, p, err := s.next()
	switch {
	case err != nil:
		return fmt.Errorf("mqtt connect: %w", err)
	case typ>>4 != pktConnack || len(p) < 2:
		return fmt.Errorf("mqtt connect: the broker answered with packet type %d, not CONNACK", typ>>4)
	case p[1] >= 0x80:
		return fmt.Errorf("mqtt connect refused (reason code %#x)", p[1])
	}

	// SUBSCRIBE, packet identifier 1: no retained messages (Retain
	// Handling 2).
	body = []byte{0, 1, 0}
	body = appendString(body, opt.Topic)
	body = append(body, opt.QoS|2<<4)
	if err := s.write(packet(pktSubscribe<<4|2, body)); err != nil {
		return fmt.Errorf("mqtt subscribe %q: %w", opt.Topic, err)
	}
	for {
		typ, p, err := s.next()
		if err != nil {
			return fmt.Errorf("mqtt subscribe %q: %w", opt.Topic, err)
		}
		if typ>>4 == pktPublish {
			// A message published before the subscription was granted.
			if err := s.publish(typ, p); err != nil {
				return err
			}
			continue
		}
		if typ>>4 != pktSuback {
			continue
		}
		reasons, err := skipProperties(p[min(2, len(p)):])
		switch {
		case err != nil:
			return fmt.Errorf("mqtt subscribe %q: SUBACK: %w", opt.Topic, err)
		case len(reasons) != 1 || reasons[0] >= 0x80:
			return fmt.Errorf("mqtt subscribe %q refused: reasons %v", opt.Topic, reasons)
		}
		return nil
	}
}

// read counts PUBLISH packets and acknowledges them until the connection
// ends. Acknowledgements are written when nothing more is buffered to
// read: one write for all the messages of one read.
func (s *MQTTSubscriber) read() {
	defer close(s.done)
	for {
		typ, p, err := s.next()
		if err != nil {
			s.err = err
			return
		}
		switch typ >> 4 {
		case pktPublish:
			if err := s.publish(typ, p); err != nil {
				s.err = err
				s.conn.Close()
				return
			}
		case pktPubrel: // QoS 2, second half
			if len(p) >= 2 {
				s.acks = append(s.acks, pktPubcomp<<4, 2, p[0], p[1])
			}
		case pktDisconnect:
			s.err = errors.New("the broker disconnected the subscriber")
			return
		}
		if len(s.acks) > 0 && s.r.Buffered() == 0 {
			err := s.write(s.acks)
			s.acks = s.acks[:0]
			if err != nil {
				s.err = err
				return
			}
		}
	}
}

// publish counts one PUBLISH packet (first byte typ, the rest p) and
// queues its acknowledgement.
func (s *MQTTSubscriber) publish(typ byte, p []byte) error {
	qos := typ >> 1 & 3
	if len(p) < 2 {
		return errors.New("mqtt: PUBLISH too short")
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n {
		return errors.New("mqtt: PUBLISH topic longer than the packet")
	}
	topic, p := p[2:2+n], p[2+n:]
	if qos > 0 {
		if len(p) < 2 {
			return errors.New("mqtt: PUBLISH without its packet identifier")
		}
		if qos == 1 {
			s.acks = append(s.acks, pktPuback<<4, 2, p[0], p[1])
		} else {
			s.acks = append(s.acks, pktPubrec<<4, 2, p[0], p[1])
		}
		p = p[2:]
	}
	payload, err := skipProperties(p)
	if err != nil {
		return fmt.Errorf("mqtt: PUBLISH: %w", err)
	}
	if typ&1 != 0 {
		return nil // retained: not published during the run
	}
	now := time.Now()
	if s.onMessage != nil {
		s.onMessage(topic, payload, now)
	}
	s.last.Store(int64(now.Sub(s.epoch)))
	s.count.Add(1)
	return nil
}

// ping sends PINGREQ at the keep-alive interval until the reader ends.
func (s *MQTTSubscriber) ping() {
	t := time.NewTicker(keepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if s.write([]byte{pktPingreq << 4, 0}) != nil {
				return
			}
		case <-s.done:
			return
		}
	}
}

// next reads one packet: its first byte and the rest, which is valid
// until the next call.
func (s *MQTTSubscriber) next() (byte, []byte, error) {
	hlen, n, err := mqttwire.PeekFixedHeader(s.r)
	if errors.Is(err, mqttwire.ErrMalformedVarint) {
		return 0, nil, errors.New("mqtt: malformed remaining length")
	}
	if err != nil {
		return 0, nil, err
	}
	typ, _ := s.r.ReadByte()
	_, _ = s.r.Discard(hlen - 1)
	if n > maxIncoming {
		return 0, nil, fmt.Errorf("mqtt: packet of %d bytes, more than the %d announced", n, maxIncoming)
	}
	if n <= s.r.Size() {
		// Most packets: read in place, from the buffer.
		p, err := s.r.Peek(n)
		if err != nil {
			return 0, nil, err
		}
		_, _ = s.r.Discard(n)
		return typ, p, nil
	}
	p := make([]byte, n)
	_, err = io.ReadFull(s.r, p)
	return typ, p, err
}

func (s *MQTTSubscriber) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

// skipProperties returns what follows an MQTT 5 property list.
func skipProperties(p []byte) ([]byte, error) {
	n, i := mqttwire.ConsumeVarint(p)
	if i <= 0 {
		return nil, errors.New("malformed property length")
	}
	if len(p)-i < n {
		return nil, errors.New("properties longer than the packet")
	}
	return p[i+n:], nil
}

// packet frames a control packet.
func packet(first byte, body []byte) []byte {
	out := append([]byte{first}, mqttwire.AppendVarint(nil, len(body))...)
	return append(out, body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// Count returns how many messages have arrived so far.
func (s *MQTTSubscriber) Count() int64 { return s.count.Load() }

// lastArrival returns when the last counted message arrived.
func (s *MQTTSubscriber) lastArrival() time.Time {
	return s.epoch.Add(time.Duration(s.last.Load()))
}

// Settle waits until no message has arrived for quiet, or ctx ends, and
// returns the count then.
func (s *MQTTSubscriber) Settle(ctx context.Context, quiet time.Duration) int64 {
	poll := min(quiet/4, 50*time.Millisecond)
	prev, since := s.Count(), time.Now()
	for {
		if !sleep(ctx, poll) {
			return s.Count()
		}
		n := s.Count()
		if n != prev {
			prev, since = n, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return n
		}
	}
}

// Close disconnects from the broker.
func (s *MQTTSubscriber) Close() {
	s.closeOnce.Do(func() {
		_ = s.write([]byte{pktDisconnect << 4, 0})
		s.conn.Close()
		<-s.done
	})
}
