package external

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/eclipse/paho.golang/packets"
	paholog "github.com/eclipse/paho.golang/paho/log"
	pahosession "github.com/eclipse/paho.golang/paho/session"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
)

// session is the MQTT session state of the client and its publish path. It
// implements paho's session.SessionManager, through which paho's reader
// hands over SUBACKs and incoming messages (and any PUBACK that conn left in
// the stream), and it writes the bridge's PUBLISH packets itself, a whole
// batch at a time, onto the connection that autopaho established through
// Client.attemptConnection; conn passes PUBACKs straight to puback.
//
// Why not paho's own publish: autopaho's ConnectionManager offers only a
// blocking Publish (one round trip per message unless every message gets a
// goroutine) and PublishViaQueue (no delivery status), and paho's default
// session serialises every packet into a store and starts a goroutine per
// packet. Here a batch costs one buffer append per message, one map entry
// per QoS 1 message, and one wake-up when the last PUBACK arrives; nothing
// is allocated.
//
// Delivery: a QoS 1 message stays in flights, with its packet identifier,
// until its PUBACK arrives. When the connection drops, the flights stay;
// if the broker resumes the session (CONNACK with Session Present) they are
// sent again with DUP set and their old identifiers, before anything else;
// if it does not, they are sent again as new messages. A Publish that gives
// up (context, shutdown) detaches its batch: its messages are forgotten
// when the connection drops, since the caller was told they may be lost.
type session struct {
	log *slog.Logger

	// waiting counts publishers waiting for mu. A writer leaves the flush
	// to them, so that concurrent batches share one write (see conn).
	waiting atomic.Int32

	mu      sync.Mutex
	conn    *conn         // nil while disconnected
	changed chan struct{} // closed and replaced when conn changes
	quit    chan struct{} // closed by close
	err     error         // why the session was closed

	flights map[uint16]flight
	seq     uint64 // send order of flights, for retransmission
	lastID  uint16
	// quota is how many more QoS 1 PUBLISH packets the broker accepts
	// before it has acknowledged some (its Receive Maximum).
	quota int
	// quotaWaiters are the batches waiting for quota, first come first
	// served: a batch that comes while others wait queues behind them,
	// even when some quota is free, and a batch whose quota ran out half
	// way waits first in line, so that no vehicle's record waits much
	// longer than the others'. One at a time is woken (through its wake
	// channel) when the quota reaches wakeQuota; it passes the turn on
	// when it is done and quota is left, so that a PUBACK does not wake
	// every waiting vehicle.
	quotaWaiters []*batch
	// wakeQuota is half the broker's Receive Maximum, so that a waiting
	// batch goes out in a few writes rather than one per PUBACK. It is safe
	// because a batch waits only when the whole quota is in flight.
	wakeQuota int

	// Broker limits from the CONNACK.
	maxQoS      byte
	retainOK    bool
	maxPacket   int
	warnedLimit bool // logged a downgrade on this connection

	// Messages sent again after a reconnection: with DUP in a resumed
	// session, or as new messages when the broker had no session.
	resentDup, resentNew int
}

// flight is a packet identifier in use.
type flight struct {
	kind  byte   // packets.PUBLISH, SUBSCRIBE or UNSUBSCRIBE
	seq   uint64 // PUBLISH: send order
	batch *batch // PUBLISH: the waiting batch; nil once it gave up
	index int    // PUBLISH: message index in batch
	// resp receives the SUBACK or UNSUBACK of paho's Subscribe and
	// Unsubscribe, or a zero packet when the connection drops.
	resp chan<- packets.ControlPacket
}

// Message states in a batch.
const (
	msgUnsent   uint8 = iota // not written on the current connection
	msgInFlight              // QoS 1, written, waiting for PUBACK
	msgDone                  // acknowledged (QoS 1) or written (QoS 0)
)

// batch is one Publish call. All fields but wake are guarded by session.mu.
type batch struct {
	msgs    []pubsub.Message
	state   []uint8
	ids     []uint16
	pending int   // messages not done
	unsent  int   // messages in state msgUnsent
	err     error // a permanent failure (refused, too large)
	queued  bool  // in session.quotaWaiters
	turn    bool  // it was woken from quotaWaiters, or is taking quota: it goes before waiters
	wake    chan struct{}
}

var batchPool = sync.Pool{New: func() any { return &batch{wake: make(chan struct{}, 1)} }}

func getBatch(msgs []pubsub.Message) *batch {
	b := batchPool.Get().(*batch)
	b.msgs = msgs
	b.state = slices.Grow(b.state[:0], len(msgs))[:len(msgs)]
	clear(b.state)
	b.ids = slices.Grow(b.ids[:0], len(msgs))[:len(msgs)]
	b.pending, b.unsent, b.err, b.turn = len(msgs), len(msgs), nil, false
	return b
}

func putBatch(b *batch) {
	b.msgs = nil // keep nothing of the caller's
	select {
	case <-b.wake:
	default:
	}
	batchPool.Put(b)
}

func (b *batch) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// errBroken means that the current connection failed to write; the
// publisher waits for the next one.
var errBroken = errors.New("connection broken")

func newSession(log *slog.Logger) *session {
	return &session{
		log:     log,
		changed: make(chan struct{}),
		quit:    make(chan struct{}),
		flights: make(map[uint16]flight),
	}
}

// publish sends the batch and waits until every message is done, the batch
// failed, ctx ends or the session is closed.
func (s *session) publish(ctx context.Context, b *batch) error {
	for {
		s.waiting.Add(1)
		s.mu.Lock()
		s.waiting.Add(-1)
		if s.err != nil {
			err := s.err
			s.detachLocked(b)
			s.mu.Unlock()
			return err
		}
		if b.err != nil {
			err := b.err
			s.detachLocked(b)
			s.flushIfIdleLocked()
			s.mu.Unlock()
			return err
		}
		if b.pending == 0 {
			s.flushIfIdleLocked()
			s.mu.Unlock()
			return nil
		}
		var changed <-chan struct{}
		if b.unsent > 0 {
			if s.conn != nil {
				err := s.sendLocked(ctx, b)
				if err == nil {
					s.mu.Unlock()
					continue
				}
				if !errors.Is(err, errBroken) {
					s.detachLocked(b)
					s.mu.Unlock()
					return err
				}
			}
			changed = s.changed // wait for a (new) connection
		} else {
			s.flushIfIdleLocked()
		}
		s.mu.Unlock()

		select {
		case <-b.wake:
		case <-changed:
		case <-s.quit:
		case <-ctx.Done():
			s.mu.Lock()
			s.detachLocked(b)
			s.mu.Unlock()
			return fmt.Errorf("publish: %w", ctx.Err())
		}
	}
}

// sendLocked writes the batch's unsent messages to the connection. It
// returns with mu held, possibly released in between while waiting for
// quota; a batch that is left unsent then (connection change) is picked up
// by the publish loop.
func (s *session) sendLocked(ctx context.Context, b *batch) error {
	c := s.conn
	c.Lock()
	if c.err != nil {
		c.Unlock()
		return errBroken
	}
	for i := range b.msgs {
		if b.state[i] != msgUnsent {
			continue
		}
		m := &b.msgs[i]
		qos, retain := s.limitLocked(m)
		h := mqttwire.Publish{Topic: m.Topic, QoS: qos, Retain: retain, Version: 5}
		if size := h.Size(len(m.Payload)); size > mqttwire.MaxRemaining || (s.maxPacket > 0 && size > s.maxPacket) {
			b.err = fmt.Errorf("%w: %s is %d bytes, the broker takes at most %d", ErrTooLarge, m.Topic, size, s.maxPacket)
			break
		}
		if qos == 0 {
			c.buf = mqttwire.AppendPublish(c.buf, &h, m.Payload)
			b.state[i] = msgDone
			b.unsent--
			b.pending--
			continue
		}
		for s.quota <= 0 || len(s.flights) >= 0xFFFF || !b.turn && len(s.quotaWaiters) > 0 && s.quotaWaiters[0] != b {
			// Let what is buffered go out, then wait for PUBACKs.
			c.flushLocked()
			c.Unlock()
			s.queueLocked(b)
			s.mu.Unlock()
			select {
			case <-b.wake:
			case <-s.quit:
			case <-ctx.Done():
				s.mu.Lock()
				s.unqueueLocked(b)
				if b.turn && s.quota > 0 {
					s.wakeWaiterLocked() // the turn it was given goes to the next
				}
				return fmt.Errorf("publish: %w", ctx.Err())
			}
			s.mu.Lock()
			if s.conn != c || s.err != nil {
				s.unqueueLocked(b)
				return nil // the publish loop starts over
			}
			c.Lock()
		}
		id := s.nextIDLocked()
		s.quota--
		s.unqueueLocked(b) // a batch woken first in line leaves it now
		b.turn = true
		s.seq++
		s.flights[id] = flight{kind: packets.PUBLISH, seq: s.seq, batch: b, index: i}
		b.ids[i] = id
		b.state[i] = msgInFlight
		b.unsent--
		h.ID = id
		c.buf = mqttwire.AppendPublish(c.buf, &h, m.Payload)
		c.appended++
		if len(c.buf) >= flushSize {
			c.flushLocked()
		}
	}
	c.Unlock()
	if s.quota > 0 {
		s.wakeWaiterLocked() // pass the turn on
	}
	return nil
}

// flushIfIdleLocked writes the connection's buffer when no other publisher
// is about to add to it (the writers themselves defer to waiting ones).
func (s *session) flushIfIdleLocked() {
	if s.conn != nil && s.waiting.Load() == 0 {
		s.conn.Lock()
		s.conn.Unlock()
	}
}

// limitLocked returns the QoS and retain flag that the broker allows for m:
// QoS 2 is sent as QoS 1 (every value the bridge publishes is idempotent),
// and a broker without QoS 1 or without retained messages gets what it
// supports, with a warning once per connection.
func (s *session) limitLocked(m *pubsub.Message) (qos byte, retain bool) {
	qos, retain = min(m.QoS, 1), m.Retain
	if qos > s.maxQoS || (retain && !s.retainOK) {
		if !s.warnedLimit {
			s.warnedLimit = true
			s.log.Warn("broker does not support what the bridge asks; publishing anyway with less",
				"topic", m.Topic, "qos", qos, "max_qos", s.maxQoS, "retain", retain, "retain_available", s.retainOK)
		}
		qos, retain = min(qos, s.maxQoS), retain && s.retainOK
	}
	return qos, retain
}

// nextIDLocked returns a free packet identifier; the caller has checked
// that one exists.
func (s *session) nextIDLocked() uint16 {
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if _, used := s.flights[s.lastID]; !used {
			return s.lastID
		}
	}
}

// detachLocked forgets the batch's messages that still wait for a PUBACK:
// their identifiers stay in use until the PUBACK arrives or the connection
// drops, but nothing refers to the batch (and so to the caller's payloads)
// any more.
func (s *session) detachLocked(b *batch) {
	for i, st := range b.state {
		if st != msgInFlight {
			continue
		}
		if f, ok := s.flights[b.ids[i]]; ok && f.batch == b {
			f.batch = nil
			s.flights[b.ids[i]] = f
		}
	}
}

// queueLocked puts b in line for quota: first when it has taken quota
// already (its record is half sent), else last. A batch that queues
// behind others while enough quota is free wakes the first of them,
// which is then due.
func (s *session) queueLocked(b *batch) {
	if b.queued {
		return
	}
	b.queued = true
	if b.turn {
		s.quotaWaiters = slices.Insert(s.quotaWaiters, 0, b)
	} else {
		s.quotaWaiters = append(s.quotaWaiters, b)
	}
	b.turn = false
	if s.quota >= s.wakeQuota {
		s.wakeWaiterLocked()
	}
}

// wakeWaiterLocked wakes the first batch waiting for quota and gives it
// the turn. It stays first in line until it takes quota, so that batches
// coming meanwhile queue behind it rather than take the quota first.
func (s *session) wakeWaiterLocked() {
	if len(s.quotaWaiters) == 0 {
		return
	}
	b := s.quotaWaiters[0]
	b.turn = true
	b.signal()
}

// unqueueLocked takes b out of the quota waiters.
func (s *session) unqueueLocked(b *batch) {
	if !b.queued {
		return
	}
	b.queued = false
	if i := slices.Index(s.quotaWaiters, b); i >= 0 {
		s.quotaWaiters = slices.Delete(s.quotaWaiters, i, i+1)
	}
}

func (s *session) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	// Every quota waiter starts over on the new connection, in order.
	for _, b := range s.quotaWaiters {
		b.queued, b.turn = false, true
		b.signal()
	}
	clear(s.quotaWaiters)
	s.quotaWaiters = s.quotaWaiters[:0]
}

// connected returns whether the session has a connection, and a channel
// closed at the next change.
func (s *session) connected() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil, s.changed
}

// close fails every waiting publisher with err and refuses new ones.
func (s *session) close(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	close(s.quit)
}

// ConAckReceived takes the new connection into use and resends what the
// previous one left unacknowledged.
func (s *session) ConAckReceived(w io.Writer, _ *packets.Connect, ca *packets.Connack) error {
	c, ok := w.(*conn)
	if !ok {
		return fmt.Errorf("session: unexpected connection type %T", w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	s.maxQoS, s.retainOK, s.maxPacket, s.quota = 2, true, 0, 65535
	if p := ca.Properties; p != nil {
		if p.MaximumQOS != nil {
			s.maxQoS = *p.MaximumQOS
		}
		if p.RetainAvailable != nil {
			s.retainOK = *p.RetainAvailable != 0
		}
		if p.MaximumPacketSize != nil {
			s.maxPacket = int(*p.MaximumPacketSize)
		}
		if p.ReceiveMaximum != nil {
			s.quota = int(*p.ReceiveMaximum)
		}
	}
	s.warnedLimit = false
	s.wakeQuota = max(1, s.quota/2)

	resend := make([]uint16, 0, len(s.flights))
	for id, f := range s.flights {
		switch {
		case f.kind != packets.PUBLISH, f.batch == nil:
			delete(s.flights, id)
		case !ca.SessionPresent || s.maxQoS == 0:
			// The broker has no record of these: send them again as new
			// messages.
			f.batch.state[f.index] = msgUnsent
			f.batch.unsent++
			f.batch.signal()
			delete(s.flights, id)
			s.resentNew++
		default:
			resend = append(resend, id)
		}
	}
	if len(resend) > 0 {
		slices.SortFunc(resend, func(a, b uint16) int {
			return cmp.Compare(s.flights[a].seq, s.flights[b].seq)
		})
		c.Lock()
		for _, id := range resend {
			f := s.flights[id]
			m := &f.batch.msgs[f.index]
			_, retain := s.limitLocked(m)
			h := mqttwire.Publish{Topic: m.Topic, QoS: 1, Retain: retain, Dup: true, ID: id, Version: 5}
			c.buf = mqttwire.AppendPublish(c.buf, &h, m.Payload)
			c.appended++
			s.quota-- // resent messages count, and may take the quota below zero
		}
		s.resentDup += len(resend)
		c.Unlock()
		s.log.Debug("resent unacknowledged messages", "count", len(resend))
	}
	s.conn = c
	s.changedLocked()
	return nil
}

// ConnectionLost drops the connection. Flights of waiting batches stay for
// the next connection; paho's Subscribe and Unsubscribe calls are told that
// the connection was lost.
func (s *session) ConnectionLost(*packets.Disconnect) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	s.conn = nil
	for id, f := range s.flights {
		switch {
		case f.kind != packets.PUBLISH:
			select {
			case f.resp <- packets.ControlPacket{}:
			default:
			}
			delete(s.flights, id)
		case f.batch == nil:
			delete(s.flights, id)
		}
	}
	s.changedLocked()
	return nil
}

// AddToSession gives paho's SUBSCRIBE and UNSUBSCRIBE packets an
// identifier. The bridge publishes through Client.Publish only.
func (s *session) AddToSession(_ context.Context, p pahosession.Packet, resp chan<- packets.ControlPacket) error {
	t := p.Type()
	if t != packets.SUBSCRIBE && t != packets.UNSUBSCRIBE {
		return fmt.Errorf("session: packet type %d is not sent through paho", t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return pahosession.ErrNoConnection
	}
	if len(s.flights) >= 0xFFFF {
		return pahosession.ErrPacketIdentifiersExhausted
	}
	id := s.nextIDLocked()
	s.flights[id] = flight{kind: t, resp: resp}
	p.SetIdentifier(id)
	return nil
}

// PacketReceived handles acknowledgements and incoming QoS 1 and 2
// messages.
func (s *session) PacketReceived(recv *packets.ControlPacket, pubs chan<- *packets.Publish) error {
	switch p := recv.Content.(type) {
	case *packets.Puback:
		s.puback(p.PacketID, p.ReasonCode)
	case *packets.Suback, *packets.Unsuback:
		id := recv.PacketID()
		s.mu.Lock()
		if f, ok := s.flights[id]; ok && f.kind != packets.PUBLISH {
			delete(s.flights, id)
			select {
			case f.resp <- *recv:
			default:
			}
		}
		s.mu.Unlock()
	case *packets.Publish:
		// Acknowledged through Ack once paho's handlers have run.
		pubs <- p
	case *packets.Pubrel:
		// Second half of an incoming QoS 2 message (the bridge subscribes
		// with QoS 1, so only a misbehaving broker sends these).
		if c := s.current(); c != nil {
			_, err := (&packets.Pubcomp{PacketID: p.PacketID, Properties: &packets.Properties{}}).WriteTo(c)
			return err
		}
	default:
		s.log.Debug("unexpected packet from broker", "type", recv.PacketType())
	}
	return nil
}

func (s *session) puback(id uint16, reason byte) {
	s.pubacks([]puback{{id, reason}})
}

// pubacks handles PUBACKs that arrived together, under one lock: a batch
// that is done is woken once, and at most one quota waiter (it passes the
// turn on, see quotaWaiters).
func (s *session) pubacks(acks []puback) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range acks {
		if s.pubackLocked(a.id, a.reason) {
			n++
		}
	}
	if n == 0 {
		return
	}
	if s.conn != nil {
		s.conn.acked.Add(int64(n))
	}
	if s.quota >= s.wakeQuota {
		s.wakeWaiterLocked()
	}
}

// pubackLocked settles the message of one PUBACK and reports whether it
// was one of ours.
func (s *session) pubackLocked(id uint16, reason byte) bool {
	f, ok := s.flights[id]
	if !ok || f.kind != packets.PUBLISH {
		return false
	}
	delete(s.flights, id)
	s.quota++
	b := f.batch
	if b == nil {
		return true
	}
	b.state[f.index] = msgDone
	b.pending--
	if reason >= 0x80 && b.err == nil {
		b.err = fmt.Errorf("%w: %s: reason code 0x%02x", ErrRefused, b.msgs[f.index].Topic, reason)
	}
	if b.pending == 0 || b.err != nil {
		b.signal()
	}
	return true
}

// Ack acknowledges an incoming message after paho's handlers ran.
func (s *session) Ack(pb *packets.Publish) error {
	c := s.current()
	if c == nil {
		return nil // the broker sends it again on the next connection
	}
	var err error
	switch pb.QoS {
	case 1:
		_, err = (&packets.Puback{PacketID: pb.PacketID, Properties: &packets.Properties{}}).WriteTo(c)
	case 2:
		_, err = (&packets.Pubrec{PacketID: pb.PacketID, Properties: &packets.Properties{}}).WriteTo(c)
	}
	return err
}

func (s *session) current() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Close is called by paho only for sessions it created itself.
func (s *session) Close() error { return nil }

// SetErrorLogger is part of paho's interface; the session logs to slog.
func (s *session) SetErrorLogger(paholog.Logger) {}

// SetDebugLogger is part of paho's interface; the session logs to slog.
func (s *session) SetDebugLogger(paholog.Logger) {}

var _ pahosession.SessionManager = (*session)(nil)
