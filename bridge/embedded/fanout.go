package embedded

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
)

// fanout delivers the messages the bridge publishes to the broker's
// subscribers, in place of mochi's own publish path, which costs about 25
// allocations and a fresh subscriber search per message and subscriber
// (mochi v2.7.9: Server.Publish copies the packet for the retained store,
// builds four maps per topic lookup, copies every matching subscription
// map, and encodes each outgoing packet into a new buffer). For every
// message fanout
//
//   - keeps it in mochi's retained index (TopicsIndex.RetainMessage) when
//     retained, so that mochi's store, its $SYS counters and the
//     persistence see what they always saw; a message that is retained
//     already, unchanged, on a topic only the bridge writes is not kept
//     again (a car sends many values that did not change), and one that
//     replaces another there waits in the topic's kept state until the
//     index is read (see kept);
//   - looks its topic up in a cache of routes (who subscribes to it), which
//     mochi's subscriber search fills and any change of subscriptions or
//     sessions empties;
//   - encodes it once per subscriber straight into that subscriber's
//     pending buffer, which one goroutine per connection writes with a
//     single system call whenever it is woken.
//
// QoS 1 and 2 deliveries go through mochi's in-flight store of the client,
// with packet identifiers from mochi, so that mochi processes the
// acknowledgements, resends on session resumption and keeps them while a
// persistent session is offline, as for its own deliveries. An MQTT 5
// client's receive maximum is applied here, and mochi's own flow control
// is switched off for every client (its send quota is set to zero when the
// session is established). mochi v2.7.9's flow control loses messages and
// can deadlock: a message it holds back for the receive maximum is deleted
// from the in-flight store when it is finally sent, so its PUBACK frees no
// quota and every later message waits for ever; and after each packet a
// client sends, it looks for held-back messages with a read lock taken
// twice (Inflight.NextImmediate, then GetAll), which blocks for good when
// a publisher adds a message to the store in between. With a zero quota
// mochi neither holds messages back nor looks for them. mochi's own
// deliveries (messages of other clients, on topics the bridge does not
// write) are then not limited by the receive maximum; they are few.
//
// Retained messages sent when a client subscribes come from here too (the
// subscription's retain handling is turned off for mochi and applied here):
// they then share the client's queue with live messages, so that a client
// never receives a newer live value of a bridge topic before an older
// retained one. Messages of other publishers (clients) are delivered by
// mochi as before; for their topics, a retained message sent on subscribe
// and a live one published at that very moment may arrive in either order,
// as they may with mochi alone.
//
// A topic with shared subscriptions ($share/…) is left to mochi, which
// chooses the group member.
//
// # Back-pressure
//
// A subscriber's backlog is what waits for it: messages not yet written to
// its connection, and QoS 1 and 2 messages not yet acknowledged (or held
// back for its receive maximum). It is bounded in messages (max_queued)
// and in bytes (max_queued_bytes: unwritten messages count their encoded
// size, messages in flight inflightCost each). When a message of the
// bridge would go to a subscriber whose backlog is full, the publisher
// waits until the subscriber makes progress (the kernel takes another
// chunk of its buffer, or it acknowledges a message), at most until its
// context ends: the record is then not acknowledged to the car, which
// keeps it and sends it again. Publishers that wait for a subscriber take
// turns, first come first served (see awaitTurn): one that arrives while
// others wait queues behind them even if there is room, and each turn is
// given as room appears, one publisher at a time, so that no car's record
// waits much longer than the others' and a publisher is woken once per
// wait, not once per chunk of progress. A publisher waits only before the first
// message of a batch (a record's messages, see admission) for each
// subscriber, not once per message, unless the subscriber's session is
// full. So a subscriber that reads slowly slows the
// cars' acknowledgements down to its pace, as with an external broker,
// and loses nothing. A subscriber whose backlog stays full with no
// progress for stall_timeout is stuck: the publisher that finds it so
// disconnects it (logging its client id, address and backlog) and goes
// on. Its persistent session keeps its QoS 1 and 2 messages, up to
// max_queued, as MQTT intends; its unwritten QoS 0 messages, and the
// messages of a session that ends with the connection, are counted as
// dropped (DropStuckSubscriber). Retained messages sent on subscribe do
// not wait: they come on top of the bound, and are bounded by the
// retained store.
type fanout struct {
	mqtt.HookBase

	server *mqtt.Server
	// mayRead reports whether a client may receive a topic (the ACL).
	mayRead func(cl *mqtt.Client, topic string) bool
	// bridgeOnly reports whether only the bridge may publish on a topic.
	bridgeOnly func(topic string) bool
	// drops counts and logs the messages given up for a client.
	drops *drops
	log   *slog.Logger
	// retainedChanged is told that the retained messages changed; may be
	// nil.
	retainedChanged func()
	limits          backlogLimits
	offline         *offlineBudget

	gen     atomic.Uint64 // numbers the states of subscriptions and sessions
	holding atomic.Int32  // senders holding messages back for a receive maximum
	waiters atomic.Int32  // publishers waiting for a subscriber's progress
	waits   atomic.Int64  // times a publisher waited for a subscriber
	full    atomic.Int32  // senders whose backlog is full

	quit     chan struct{} // closed when the broker closes: waiting publishers give up
	quitOnce sync.Once

	mu     sync.RWMutex
	routes map[string]*route

	kmu     sync.Mutex
	kept    map[string]*kept // by topic, for topics only the bridge writes
	pending []*kept          // kept states whose message waits for flushRetained

	smu     sync.RWMutex
	senders map[*mqtt.Client]*sender
	closed  bool

	rmu       sync.Mutex
	requests  map[*mqtt.Client][]retainRequest // from OnSubscribe to OnSubscribed
	overQuota map[*mqtt.Client]bool            // clients told they have max_subscriptions (logged once)
}

// maxRoutes bounds the route cache; past it the cache starts over. A route
// is a few dozen bytes; bridge topics number a few hundred per vehicle.
const maxRoutes = 1 << 15

// maxKeptBuffer is the largest write buffer a sender keeps between writes.
const maxKeptBuffer = 256 << 10

// writeChunk is the most a sender writes with one system call, so that a
// subscriber reading slowly but steadily shows its progress (and the
// publishers waiting for it move on) at least every writeChunk bytes.
const writeChunk = 64 << 10

// inflightCost is what a QoS 1 or 2 message waiting for its
// acknowledgement counts in a subscriber's backlog bytes: mochi keeps a
// packet structure of 800 bytes for it in a map, the client's in-flight
// store, which with the map's slack makes about 2 KiB (the payload is
// shared by every subscriber).
const inflightCost = 2 << 10

// backlogLimits bound one subscriber's backlog (see fanout).
type backlogLimits struct {
	msgs    int           // max_queued
	bytes   int           // max_queued_bytes
	stall   time.Duration // stall_timeout
	offline int           // max_offline_queued, for all offline sessions (see offlineBudget)
	subs    int           // max_subscriptions, per client
}

// errStuck is why a stuck subscriber's connection is closed.
var errStuck = errors.New("subscriber read nothing for stall_timeout while its backlog was full")

// route is where the messages of one topic go.
type route struct {
	gen     uint64 // the fanout's gen when the route was made
	mochi   bool   // shared subscriptions: mochi delivers
	inline  []mqtt.InlineSubscription
	targets []target

	// kept is the retained state of a topic only the bridge may publish
	// on (see guard); nil for other topics, which clients write too,
	// through mochi.
	kept *kept
}

// kept is what fanout knows of the retained message of a topic only the
// bridge may publish on, whoever wrote it last being the bridge: its
// payload and QoS, so that publishing the same message again does not
// rewrite mochi's retained index, and a newer message that replaced it
// and is not in the index yet (pending). A car changes most of its values
// with every record; writing each into the index (an 800-byte packet into
// a map, under the one lock every publisher shares) took a tenth of the
// broker's CPU at saturation, for messages that the next record replaces
// before anybody reads them. So a replacement waits here, and
// flushRetained writes what waits before anything reads the index: a
// client's subscription (its retained messages), an in-process
// subscription, the persistence. A topic's kept state outlives the routes
// (which any change of subscriptions empties), so that a topic's messages
// reach the index in the order they were published; there is one per
// topic the bridge retained on, each with its message in mochi's index.
type kept struct {
	mu      sync.Mutex // publishers of one topic keep in the order they note
	topic   string
	last    []byte // nil when unknown
	lastQoS byte
	created int64 // of last
	pending bool  // last is not in mochi's index yet (see flushRetained)
}

// target is one client subscribed to a topic, with its subscriptions to the
// topic merged as mochi merges them.
type target struct {
	cl     *mqtt.Client
	s      *sender // nil when the client was offline
	qos    byte    // the highest QoS of its matching subscriptions
	retain bool    // retain as published (MQTT 5)
	ids    []int   // subscription identifiers (MQTT 5), ascending
}

// retainRequest is what a SUBSCRIBE asked about retained messages, kept
// while mochi processes the packet.
type retainRequest struct {
	handling  byte // the subscription's retain handling: 0 send, 1 send if new, 2 do not send
	existed   bool // the client had this subscription before
	overQuota bool // refused: the client has max_subscriptions already
}

func newFanout(server *mqtt.Server, mayRead func(*mqtt.Client, string) bool, bridgeOnly func(string) bool,
	drops *drops, log *slog.Logger, limits backlogLimits, retainedChanged func()) *fanout {
	return &fanout{
		server:          server,
		mayRead:         mayRead,
		bridgeOnly:      bridgeOnly,
		drops:           drops,
		log:             log,
		retainedChanged: retainedChanged,
		limits:          limits,
		offline:         newOfflineBudget(limits.offline),
		quit:            make(chan struct{}),
		routes:          make(map[string]*route),
		kept:            make(map[string]*kept),
		senders:         make(map[*mqtt.Client]*sender),
		requests:        make(map[*mqtt.Client][]retainRequest),
		overQuota:       make(map[*mqtt.Client]bool),
	}
}

// validPublish checks a message the bridge publishes as mochi checks a
// client's PUBLISH (the inline client is exempt from some checks; the
// encoder here is not: a topic must fit its 16-bit length).
func validPublish(topic string, payload []byte, qos byte) error {
	for i := 0; i < len(topic); i++ {
		if c := topic[i]; c == '+' || c == '#' {
			return packets.ErrProtocolViolationSurplusWildcard
		}
	}
	switch {
	case topic == "":
		return packets.ErrProtocolViolationNoTopic
	case len(topic) > 0xffff:
		return packets.ErrProtocolViolationInvalidTopic
	case qos > 2:
		return packets.ErrProtocolViolationQosOutOfRange
	case len(topic)+len(payload) > mqttwire.MaxRemaining-64: // room for the identifier and properties
		return packets.ErrPacketTooLarge
	}
	return nil
}

// admission is the subscribers that took a message of one batch (one
// call of Broker.Publish, one record of a car): the batch's later
// messages go to them without looking at their backlogs again. So a
// record waits once for each subscriber, before its first message, not
// once per message; a backlog may pass its bounds by the batches being
// admitted, by a quarter at most (overfull), and a QoS 1 or 2 message
// still waits while the client's session holds max_queued in flight
// (more would be dropped). The zero value is empty.
type admission struct {
	few  [4]*sender
	n    int
	more []*sender
}

func (a *admission) has(s *sender) bool {
	for _, x := range a.few[:min(a.n, len(a.few))] {
		if x == s {
			return true
		}
	}
	return slices.Contains(a.more, s)
}

func (a *admission) add(s *sender) {
	if a.n < len(a.few) {
		a.few[a.n] = s
	} else {
		a.more = append(a.more, s)
	}
	a.n++
}

// publish delivers one message of the bridge, created at now (Unix
// seconds), as part of the batch adm. It reports false, having done
// nothing, when the topic has shared subscriptions: the caller then
// publishes through mochi. The payload is copied. It waits while the
// backlog of a subscriber not yet in adm is full (see fanout), and fails
// when ctx ends or the broker closes meanwhile; the message may then have
// reached some subscribers but not all.
func (f *fanout) publish(ctx context.Context, adm *admission, topic string, payload []byte, qos byte, retain bool, now int64) (bool, error) {
	r := f.route(topic)
	if r.mochi {
		return false, nil
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Origin:      mqtt.InlineClientId,
		Created:     now,
	}
	if retain {
		f.keepRetained(r, &pk, payload)
		// Look again if subscriptions changed meanwhile: a client that
		// subscribed before the message was kept must get it from here,
		// since its retained messages may have been read before.
		if r.gen != f.gen.Load() {
			if r = f.route(topic); r.mochi {
				return false, nil
			}
		}
	} else if len(payload) > 0 {
		pk.Payload = bytes.Clone(payload) // shared by in-flight stores and handlers; never written
	}
	for _, in := range r.inline {
		in.Handler(f.inlineClient(), in.Subscription, pk)
	}
	// First to every client with room, then, waiting, to those without:
	// so that clients stuck at the same time find their backlogs full at
	// the same time, and are disconnected after one stall timeout, not
	// one after another.
	var full []int
	for i := range r.targets {
		t := &r.targets[i]
		admitted := t.s == nil || adm.has(t.s)
		if !f.tryDeliver(t.cl, t.s, &pk, t.qos, t.retain && retain, t.ids, admitted) {
			full = append(full, i)
		} else if !admitted {
			adm.add(t.s)
		}
	}
	for _, i := range full {
		t := &r.targets[i]
		if err := f.deliver(ctx, t.cl, t.s, &pk, t.qos, t.retain && retain, t.ids, t.s == nil || adm.has(t.s)); err != nil {
			return true, err
		}
		adm.add(t.s)
	}
	return true, nil
}

// keepRetained keeps the message pk, with a copy of payload, in mochi's
// retained index, unless the route knows that the same message is kept
// already; pk's payload is then the kept one.
func (f *fanout) keepRetained(r *route, pk *packets.Packet, payload []byte) {
	k := r.kept
	if k == nil {
		if len(payload) > 0 {
			pk.Payload = bytes.Clone(payload) // shared by the retained store, in-flight stores and handlers; never written
		}
		f.retain(*pk)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	qos := pk.FixedHeader.Qos
	if len(payload) > 0 && k.last != nil && k.lastQoS == qos && bytes.Equal(k.last, payload) {
		pk.Payload = k.last
		return
	}
	pk.Payload = nil
	if len(payload) > 0 {
		pk.Payload = bytes.Clone(payload)
	}
	if k.last != nil && len(pk.Payload) > 0 {
		f.replaceRetained(k, pk)
	} else {
		k.pending = false // what waited is replaced, or deleted, now
		f.retain(*pk)
	}
	k.last, k.lastQoS = pk.Payload, qos
}

// replaceRetained notes that pk replaces the retained message of its
// topic, which k kept (k.mu is held): it waits in k until flushRetained
// (see kept). Only the message changes, not mochi's topic tree.
func (f *fanout) replaceRetained(k *kept, pk *packets.Packet) {
	if f.server.Options.Capabilities.RetainAvailable == 0 {
		return
	}
	k.created = pk.Created
	if k.pending {
		return
	}
	k.pending = true
	f.kmu.Lock()
	f.pending = append(f.pending, k)
	f.kmu.Unlock()
	if f.retainedChanged != nil {
		f.retainedChanged()
	}
}

// flushRetained writes the retained messages that wait in kept states
// into mochi's retained index. Call it before reading the index.
func (f *fanout) flushRetained() {
	f.kmu.Lock()
	pending := f.pending
	f.pending = nil
	f.kmu.Unlock()
	for _, k := range pending {
		f.flushKept(k)
	}
}

// flushTopic writes the retained message that waits in topic's kept
// state, if any, into mochi's retained index.
func (f *fanout) flushTopic(topic string) {
	f.kmu.Lock()
	k := f.kept[topic]
	f.kmu.Unlock()
	if k != nil {
		f.flushKept(k)
	}
}

// flushKept writes the retained message that waits in k, if any, into
// mochi's retained index. (k stays in f.pending until flushRetained.)
func (f *fanout) flushKept(k *kept) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.pending {
		return
	}
	k.pending = false
	f.server.Topics.Retained.Add(k.topic, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: k.lastQoS, Retain: true},
		TopicName:   k.topic,
		Payload:     k.last,
		Origin:      mqtt.InlineClientId,
		Created:     k.created,
	})
}

// keptFor returns the kept state of a topic only the bridge writes.
func (f *fanout) keptFor(topic string) *kept {
	f.kmu.Lock()
	defer f.kmu.Unlock()
	k := f.kept[topic]
	if k == nil {
		k = &kept{topic: strings.Clone(topic)}
		f.kept[k.topic] = k
	}
	return k
}

// retain keeps pk in mochi's retained index (an empty payload deletes).
func (f *fanout) retain(pk packets.Packet) {
	if f.server.Options.Capabilities.RetainAvailable == 0 {
		return
	}
	if f.server.Topics.RetainMessage(pk) != 0 && f.retainedChanged != nil && !strings.HasPrefix(pk.TopicName, "$") {
		f.retainedChanged()
	}
	atomic.StoreInt64(&f.server.Info.Retained, int64(f.server.Topics.Retained.Len()))
}

func (f *fanout) inlineClient() *mqtt.Client {
	cl, _ := f.server.Clients.Get(mqtt.InlineClientId)
	return cl
}

// route returns the route of topic, from the cache when it is current.
func (f *fanout) route(topic string) *route {
	gen := f.gen.Load()
	f.mu.RLock()
	r := f.routes[topic]
	f.mu.RUnlock()
	if r != nil && r.gen == gen {
		return r
	}
	r = f.makeRoute(topic, gen)
	f.mu.Lock()
	if len(f.routes) >= maxRoutes {
		clear(f.routes)
	}
	f.routes[strings.Clone(topic)] = r
	f.mu.Unlock()
	return r
}

// makeRoute asks mochi who subscribes to topic. gen must have been read
// before, so that a route made while subscriptions change is made again.
func (f *fanout) makeRoute(topic string, gen uint64) *route {
	r := &route{gen: gen}
	if f.bridgeOnly(topic) {
		r.kept = f.keptFor(topic)
	}
	subs := f.server.Topics.Subscribers(topic)
	if len(subs.Shared) > 0 {
		r.mochi = true
		return r
	}
	for _, in := range subs.InlineSubscriptions {
		r.inline = append(r.inline, in)
	}
	for id, sub := range subs.Subscriptions {
		cl, ok := f.server.Clients.Get(id)
		if !ok || cl.Net.Inline || !f.mayRead(cl, topic) {
			continue
		}
		t := target{cl: cl, s: f.sender(cl), qos: sub.Qos}
		if cl.Properties.ProtocolVersion == 5 {
			t.retain = sub.RetainAsPublished
			for _, n := range sub.Identifiers {
				if n > 0 {
					t.ids = append(t.ids, n)
				}
			}
			slices.Sort(t.ids)
		}
		r.targets = append(r.targets, t)
	}
	return r
}

// invalidate forgets the routes: subscriptions or sessions changed.
func (f *fanout) invalidate() {
	f.gen.Add(1)
	f.mu.Lock()
	clear(f.routes)
	f.mu.Unlock()
}

// tryDeliver is deliver for a client whose backlog is not full, or that
// is admitted already (see admission); it reports false, having done
// nothing, when neither is so.
func (f *fanout) tryDeliver(cl *mqtt.Client, s *sender, pk *packets.Packet, subQoS byte, retain bool, ids []int, admitted bool) bool {
	if s == nil {
		f.deliverLocked(cl, s, pk, subQoS, retain, ids)
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mustQueue(admitted, inFlight(pk, subQoS)) {
		return false
	}
	f.deliverLocked(cl, s, pk, subQoS, retain, ids)
	return true
}

// mustQueue reports whether a message must wait its turn (see awaitTurn):
// it does not fit in the backlog, or others wait before it (a batch
// admitted already goes before them). s.mu is held.
func (s *sender) mustQueue(admitted, inFlight bool) bool {
	return !s.dead && (!admitted && len(s.queue) > 0 || !s.fits(admitted, inFlight))
}

// inFlight reports whether pk goes to a subscription of QoS subQoS at QoS 1
// or 2, through the client's in-flight store.
func inFlight(pk *packets.Packet, subQoS byte) bool { return min(pk.FixedHeader.Qos, subQoS) > 0 }

// deliver hands pk to one client at the QoS of its subscription (capped by
// the message's) with the given retain flag and subscription identifiers.
// s is the client's sender, nil when it is offline; admitted tells
// whether the message's batch was admitted already (see admission).
// Unless the message fits in the client's backlog and nobody waits before
// it, it waits its turn (see awaitTurn), and disconnects a client that
// makes no progress for the stall timeout (see fanout); it fails when ctx
// ends or the broker closes first.
func (f *fanout) deliver(ctx context.Context, cl *mqtt.Client, s *sender, pk *packets.Packet, subQoS byte, retain bool, ids []int, admitted bool) error {
	if s == nil {
		f.deliverLocked(cl, s, pk, subQoS, retain, ids)
		return nil
	}
	s.mu.Lock()
	if inFlight := inFlight(pk, subQoS); s.mustQueue(admitted, inFlight) {
		w := s.enqueue(admitted, inFlight, admitted)
		for !s.dead {
			if w.granted {
				s.granting = false
				if s.fits(w.admitted, w.inFlight) {
					break
				}
				// Others (batches admitted before) took the room
				// meanwhile: wait again, first in the queue.
				w = s.enqueue(w.admitted, w.inFlight, true)
				continue
			}
			if s.stalled(f.limits.stall) {
				st := s.kickLocked() // ends the queue, w with it
				s.mu.Unlock()
				f.disconnectStuck(cl, st)
				s.mu.Lock()
				break
			}
			if err := s.awaitTurn(ctx, w); err != nil { // unlocks and locks s.mu
				s.leave(w)
				s.mu.Unlock()
				return err
			}
		}
	}
	f.deliverLocked(cl, s, pk, subQoS, retain, ids)
	s.grantTurn()
	s.mu.Unlock()
	return nil
}

// setFull notes whether the backlog is full (stalled and progressed look
// at it), and counts the clients whose backlog is full. s.mu is held.
func (s *sender) setFull(full bool) {
	switch {
	case full && s.fullSince.IsZero():
		s.fullSince = time.Now()
		s.f.full.Add(1)
	case !full && !s.fullSince.IsZero():
		s.fullSince = time.Time{}
		s.f.full.Add(-1)
	}
}

// backlog returns how many messages and bytes wait for the client (see
// fanout). s.mu is held.
func (s *sender) backlog() (msgs, bytes int) {
	inflight := s.cl.State.Inflight.Len()
	return s.queued0 + inflight, s.bytes + inflight*inflightCost
}

// full reports whether the backlog is at one of its bounds. An empty
// backlog is never full, whatever the size of the message to come. s.mu
// is held.
func (s *sender) full() bool {
	msgs, bytes := s.backlog()
	return (msgs > 0 || bytes > 0) && (msgs >= s.f.limits.msgs || bytes >= s.f.limits.bytes)
}

// overfull reports whether the backlog has passed its bounds by a quarter,
// with the batches admitted before it was full: a message of such a
// batch waits too, so that memory stays bounded however many cars publish
// at once. s.mu is held.
func (s *sender) overfull() bool {
	msgs, bytes := s.backlog()
	l := s.f.limits
	return msgs >= l.msgs+l.msgs/4 || bytes >= l.bytes+l.bytes/4
}

// sessionFull reports whether the client's in-flight store holds as many
// messages as it may (max_queued): a QoS 1 or 2 message added now would
// be dropped, so it waits even when its batch was admitted. s.mu is held.
func (s *sender) sessionFull() bool {
	return s.cl.State.Inflight.Len() >= int(s.f.server.Options.Capabilities.MaximumInflight)
}

// fits reports whether the backlog has room for a message: below its
// bounds, or for a batch admitted already below its bounds plus a quarter
// (overfull); and, for a message that goes in flight, the session not
// full. It notes whether the backlog is full. s.mu is held.
func (s *sender) fits(admitted, inFlight bool) bool {
	full := s.full()
	s.setFull(full)
	if inFlight && s.sessionFull() {
		return false
	}
	if admitted {
		return !s.overfull()
	}
	return !full
}

// stallStart is when the client's current stall began: its last progress,
// or when its backlog last went from empty to not empty. Its backlog
// need not have been full all that time: clients stuck at the same moment
// fill up one after another while publishers wait for the first, and are
// then all found stalled together. s.mu is held.
func (s *sender) stallStart() time.Time { return s.lastProgress }

// stalled reports whether the backlog is full and the client has made no
// progress for the stall timeout. s.mu is held.
func (s *sender) stalled(timeout time.Duration) bool {
	return !s.fullSince.IsZero() && time.Since(s.stallStart()) >= timeout
}

// waiter is a publisher waiting for its turn to deliver to a client.
type waiter struct {
	turn     chan struct{} // closed when it is its turn, or the connection ended
	granted  bool          // it is its turn
	admitted bool          // its batch was admitted before (see admission)
	inFlight bool          // its message goes in flight (QoS 1 or 2)
}

// enqueue puts a publisher in the client's queue: at its end, or at its
// head when first (a batch admitted already, so that a batch that has
// begun is finished first, or a publisher whose turn came and whose room
// was taken). s.mu is held.
func (s *sender) enqueue(admitted, inFlight, first bool) *waiter {
	w := &waiter{turn: make(chan struct{}), admitted: admitted, inFlight: inFlight}
	if first {
		s.queue = slices.Insert(s.queue, 0, w)
	} else {
		s.queue = append(s.queue, w)
	}
	s.f.waits.Add(1)
	s.grantTurn() // there may be room for the head already
	return w
}

// grantTurn gives the turn to the publisher at the head of the queue when
// the backlog has room for its message and no turn given is still
// unused: each publisher, once it has delivered, gives the next turn, so
// that turns go one at a time, in order, while there is room, and
// progress gives the first. s.mu is held.
func (s *sender) grantTurn() {
	if s.granting || len(s.queue) == 0 || !s.fits(s.queue[0].admitted, s.queue[0].inFlight) {
		return
	}
	w := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	w.granted = true
	s.granting = true
	close(w.turn)
}

// leave takes a publisher that gives up out of the queue; a turn it was
// given goes to the next. s.mu is held.
func (s *sender) leave(w *waiter) {
	if w.granted {
		s.granting = false
		s.grantTurn()
		return
	}
	if i := slices.Index(s.queue, w); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
	}
}

// awaitTurn waits, with s.mu released, until it is w's turn, the client's
// connection ends, or the stall timeout since the client's last progress
// has passed (the caller looks whether it stalled). s.mu is held on entry
// and on return.
func (s *sender) awaitTurn(ctx context.Context, w *waiter) error {
	left := s.f.limits.stall - time.Since(s.stallStart())
	if left <= 0 {
		left = s.f.limits.stall // not full: waiting behind others that wait
	}
	s.mu.Unlock()
	s.f.waiters.Add(1)
	timer := time.NewTimer(left)
	var err error
	select {
	case <-w.turn:
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.f.quit:
		err = ErrNotRunning
	}
	timer.Stop()
	s.f.waiters.Add(-1)
	s.mu.Lock()
	return err
}

// progressed notes that the client took something from its backlog, and
// gives the next turn when there is room. s.mu is held.
func (s *sender) progressed() {
	s.lastProgress = time.Now()
	s.roomMayHaveAppeared()
}

// wrote notes that a chunk of the backlog was written to the connection,
// and gives the next turn when there is room. It is the client's progress
// only while it has no message to acknowledge: the connection's buffers
// take what a client that reads nothing is sent, for a while, so for a
// client with messages in flight the acknowledgements tell (progressed,
// from OnQosComplete). Otherwise clients stuck together would be found
// one after another, each stall timeout after the one before: the first
// ones' full backlogs make the publishers wait, the others stop filling
// up just short of full, and the writes that fill them once the first are
// disconnected would start their stall clocks anew. s.mu is held.
func (s *sender) wrote() {
	if s.cl.State.Inflight.Len() == 0 {
		s.lastProgress = time.Now()
	}
	s.roomMayHaveAppeared()
}

// roomMayHaveAppeared gives the next turn when the backlog has room.
// s.mu is held.
func (s *sender) roomMayHaveAppeared() {
	if s.fullSince.IsZero() && len(s.queue) == 0 {
		return // nobody waits, and the backlog was not full
	}
	s.setFull(s.full())
	s.grantTurn()
}

// wakeWaiters wakes every publisher waiting for the client, whose
// connection ended: they find it dead. s.mu is held.
func (s *sender) wakeWaiters() {
	for _, w := range s.queue {
		close(w.turn)
	}
	s.queue = nil
	s.granting = false
}

// stuckBacklog is what a stuck client held when it was disconnected.
type stuckBacklog struct {
	unwritten0 int // QoS 0 messages not written
	bytes      int // bytes not written
	inflight   int // QoS 1 and 2 messages unacknowledged
	stalled    time.Duration
}

// kickLocked ends the sender of a stuck client and returns its backlog.
// s.mu is held.
func (s *sender) kickLocked() stuckBacklog {
	st := stuckBacklog{unwritten0: s.queued0, bytes: s.bytes, inflight: s.cl.State.Inflight.Len(), stalled: time.Since(s.stallStart())}
	s.endLocked()
	return st
}

// disconnectStuck closes the connection of a stuck client (mochi then
// ends or keeps its session) and says so.
func (f *fanout) disconnectStuck(cl *mqtt.Client, st stuckBacklog) {
	cl.Stop(errStuck) // closes the connection: a write blocked on it returns
	lost := st.unwritten0
	kept := 0
	if st.inflight > 0 {
		if sessionEnds(cl) {
			lost += st.inflight
		} else {
			kept = st.inflight
		}
	}
	f.log.Warn("MQTT subscriber reads too slowly: it read nothing for stall_timeout while its backlog was full, so the broker disconnected it and the cars carry on",
		"client", cl.ID, "remote", cl.Net.Remote, "stall_timeout", f.limits.stall,
		"backlog_bytes", st.bytes+st.inflight*inflightCost, "backlog_messages", st.unwritten0+st.inflight,
		"kept_in_session", kept, "dropped", lost)
	f.drop(cl, DropStuckSubscriber, lost)
}

// deliverLocked is deliver with s.mu held (when s is not nil).
func (f *fanout) deliverLocked(cl *mqtt.Client, s *sender, pk *packets.Packet, subQoS byte, retain bool, ids []int) {
	d := delivery{
		version: cl.Properties.ProtocolVersion,
		qos:     min(pk.FixedHeader.Qos, subQoS, f.server.Options.Capabilities.MaximumQos),
		retain:  retain,
	}
	if d.version == 5 {
		d.ids = ids
	}
	closed := cl.Closed()
	online := s != nil && !s.dead && !closed
	if online && s.bytes == 0 && cl.State.Inflight.Len() == 0 {
		s.lastProgress = time.Now() // an empty backlog: the stall clock starts with this message
	}
	if !online && (d.qos == 0 || !closed || sessionEnds(cl)) {
		return // nothing to keep for a connection that is gone, or a broker that closes
	}
	if d.qos > 0 {
		if !online && !f.offline.take(cl.ID) {
			f.drop(cl, DropOfflineFull, 1)
			return
		}
		var ok bool
		if d.id, ok = f.track(cl, pk, d); !ok || !online {
			if !ok && !online {
				f.offline.giveBack(cl.ID)
			}
			return // dropped, or kept in flight for the session
		}
		if s.mustWait(cl) {
			s.wait(d)
			// An acknowledgement that came between mustWait and wait
			// found nothing held back (OnQosComplete reads holding
			// first) and released nothing: look again, now that
			// holding counts this client, or its window shrinks by one
			// for good.
			s.release(cl)
			return
		}
	} else if !online {
		return
	}
	s.write(cl, pk, d)
}

// write encodes a delivery into the pending buffer and wakes the writer.
// s.mu is held.
func (s *sender) write(cl *mqtt.Client, pk *packets.Packet, d delivery) {
	start := len(s.buf)
	s.buf = appendPublish(s.buf, pk, d)
	if max := cl.Properties.Props.MaximumPacketSize; max > 0 && len(s.buf)-start > int(max) {
		// Too large for the client ([MQTT-3.1.2-24]): mochi drops it too.
		s.buf = s.buf[:start]
		s.f.untrack(cl, d)
		s.f.drop(cl, DropTooLarge, 1)
		return
	}
	s.n++
	s.bytes += len(s.buf) - start
	if d.qos == 0 {
		s.n0++
		s.queued0++
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// mustWait reports whether a QoS 1 or 2 message, already in flight, must
// wait before it is sent: the client (MQTT 5) has as many unacknowledged
// messages as its receive maximum allows, or others wait before it. mochi
// counts the same in a send quota of its own, but loses track when a
// message it held back is acknowledged; here what waits is counted
// directly. s.mu is held.
func (s *sender) mustWait(cl *mqtt.Client) bool {
	rm := int(cl.Properties.Props.ReceiveMaximum)
	return rm > 0 && (len(s.waiting) > 0 || cl.State.Inflight.Len()-1 >= rm)
}

// wait holds a delivery back until the client acknowledges others. The
// message itself is in the client's in-flight store already; only how it
// goes is kept here.
func (s *sender) wait(d delivery) {
	if len(s.waiting) == 0 {
		s.f.holding.Add(1)
	}
	s.waiting = append(s.waiting, d)
}

// release sends the deliveries that waited, as far as the client's
// receive maximum now allows. s.mu is held.
func (s *sender) release(cl *mqtt.Client) {
	if len(s.waiting) == 0 || s.dead {
		return
	}
	rm := int(cl.Properties.Props.ReceiveMaximum)
	for len(s.waiting) > 0 && cl.State.Inflight.Len()-len(s.waiting) < rm {
		d := s.waiting[0]
		if pk, ok := cl.State.Inflight.Get(d.id); ok { // not cleared meanwhile
			s.write(cl, &pk, d)
		}
		s.waiting[0] = delivery{}
		s.waiting = s.waiting[1:]
	}
	if len(s.waiting) == 0 {
		s.waiting = nil
		s.f.holding.Add(-1)
	}
}

// delivery is how a message goes to one client.
type delivery struct {
	version byte // the client's MQTT version: 3, 4 or 5
	qos     byte
	retain  bool
	id      uint16 // packet identifier, for QoS 1 and 2
	ids     []int  // subscription identifiers (MQTT 5)
}

// packet returns pk as delivered with d, for mochi's in-flight store and
// encoder. It shares pk's payload, which nobody writes.
func (d delivery) packet(pk *packets.Packet) packets.Packet {
	out := *pk
	out.FixedHeader.Qos, out.FixedHeader.Retain, out.FixedHeader.Dup = d.qos, d.retain, false
	out.PacketID = d.id
	out.ProtocolVersion = d.version
	out.Properties.SubscriptionIdentifier = d.ids
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	return out
}

// track puts a QoS 1 or 2 delivery in the client's in-flight store, with a
// packet identifier from mochi, as mochi's own delivery does: mochi then
// processes the acknowledgement, resends the message when the session
// resumes, and keeps it while a persistent session is offline. It returns
// the identifier, or false when the store is full and the message is
// dropped.
func (f *fanout) track(cl *mqtt.Client, pk *packets.Packet, d delivery) (uint16, bool) {
	if cl.State.Inflight.Len() >= int(f.server.Options.Capabilities.MaximumInflight) {
		atomic.AddInt64(&f.server.Info.InflightDropped, 1)
		f.drop(cl, DropSessionFull, 1)
		return 0, false
	}
	id, err := cl.NextPacketID()
	if err != nil {
		atomic.AddInt64(&f.server.Info.InflightDropped, 1)
		f.drop(cl, DropSessionFull, 1)
		return 0, false
	}
	d.id = uint16(id)
	if cl.State.Inflight.Set(d.packet(pk)) {
		atomic.AddInt64(&f.server.Info.Inflight, 1)
	}
	return d.id, true
}

// untrack takes a delivery that is not sent back out of the in-flight
// store.
func (f *fanout) untrack(cl *mqtt.Client, d delivery) {
	if d.qos == 0 {
		return
	}
	if cl.State.Inflight.Delete(d.id) {
		atomic.AddInt64(&f.server.Info.Inflight, -1)
	}
}

// drop counts n messages given up for cl, for mochi's $SYS statistics
// too.
func (f *fanout) drop(cl *mqtt.Client, reason DropReason, n int) {
	atomic.AddInt64(&f.server.Info.MessagesDropped, int64(n))
	f.drops.add(cl, reason, n)
}

// sessionEnds reports whether cl's session ends with its connection (so
// that nothing is kept for it while it is offline), as mochi decides it.
// Read it only once cl is closed: mochi may change the session expiry
// while processing the client's DISCONNECT.
func sessionEnds(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// sender writes what fanout delivers to one client connection.
type sender struct {
	f    *fanout
	cl   *mqtt.Client
	wake chan struct{} // something is pending
	stop chan struct{} // closed when the connection ends

	mu      sync.Mutex // held while a message is added; orders a client's messages
	buf     []byte     // encoded packets waiting to be written
	n       int        // packets in buf
	n0      int        // QoS 0 packets in buf
	waiting []delivery // held back for the client's receive maximum, in flight
	dead    bool       // the connection failed or ended

	// The backlog (see fanout), besides the client's in-flight store.
	bytes        int       // bytes encoded and not yet written (in buf, or being written)
	queued0      int       // QoS 0 packets not yet written
	fullSince    time.Time // when the backlog was found full; zero once there is room again
	lastProgress time.Time // the client's last progress (see stallStart)

	queue    []*waiter // publishers waiting for their turn, in order (see awaitTurn)
	granting bool      // a turn was given and is not used yet
}

// sender returns the sender of cl, starting it on first use, or nil when
// cl is offline or the broker is closing.
func (f *fanout) sender(cl *mqtt.Client) *sender {
	f.smu.Lock()
	defer f.smu.Unlock()
	if s := f.senders[cl]; s != nil {
		return s
	}
	// OnDisconnect runs after the client is closed and removes its sender
	// under smu, so a sender made here is always removed.
	if f.closed || cl.Closed() || cl.Net.Conn == nil {
		return nil
	}
	s := &sender{f: f, cl: cl, wake: make(chan struct{}, 1), stop: make(chan struct{}), lastProgress: time.Now()}
	f.senders[cl] = s
	go s.run()
	return s
}

// endSender stops the sender of cl, if it has one.
func (f *fanout) endSender(cl *mqtt.Client) {
	f.smu.Lock()
	s := f.senders[cl]
	delete(f.senders, cl)
	f.smu.Unlock()
	if s != nil {
		s.end()
	}
}

// stopWaiting makes publishers that wait for a subscriber give up: the
// broker is closing.
func (f *fanout) stopWaiting() { f.quitOnce.Do(func() { close(f.quit) }) }

// close stops every sender; the broker is going away.
func (f *fanout) close() {
	f.stopWaiting()
	f.smu.Lock()
	f.closed = true
	senders := f.senders
	f.senders = make(map[*mqtt.Client]*sender)
	f.smu.Unlock()
	for _, s := range senders {
		s.end()
	}
	f.invalidate()
}

func (s *sender) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

// endLocked is end with s.mu held.
func (s *sender) endLocked() {
	if !s.dead {
		s.dead = true
		s.buf, s.n, s.n0 = nil, 0, 0
		s.setFull(false)
		s.wakeWaiters()         // they look again, and find it dead
		if len(s.waiting) > 0 { // in flight: resent if the session resumes
			s.waiting = nil
			s.f.holding.Add(-1)
		}
		close(s.stop)
	}
}

// run writes the pending packets whenever woken, all in one write: writes
// of mochi's own packets to the same connection go in between, whole
// (net.Conn, tls.Conn and the WebSocket connection serialise Write calls).
func (s *sender) run() {
	var out []byte
	info := s.f.server.Info
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		out, s.buf = s.buf, out[:0]
		n, n0 := s.n, s.n0
		s.n, s.n0 = 0, 0
		s.mu.Unlock()
		if n == 0 {
			continue
		}
		written0 := 0 // QoS 0 packets of out counted as written
		for off := 0; off < len(out); {
			end := min(off+writeChunk, len(out))
			written, err := s.cl.Net.Conn.Write(out[off:end])
			atomic.AddInt64(&info.BytesSent, int64(written))
			if err != nil {
				// The connection is broken; mochi's reader ends the
				// client. Messages in flight stay in its store for a
				// resumed session.
				s.end()
				return
			}
			off = end
			// A chunk's QoS 0 packets leave the backlog with its bytes
			// (in proportion: the packets of one batch are much alike),
			// so that a backlog full by its message bound has room
			// again as soon as a chunk is written, not only once the
			// whole of out is.
			done0 := int(int64(n0) * int64(off) / int64(len(out)))
			s.mu.Lock()
			s.bytes -= written
			s.queued0 -= done0 - written0
			written0 = done0
			s.wrote()
			s.mu.Unlock()
		}
		atomic.AddInt64(&info.PacketsSent, int64(n))
		atomic.AddInt64(&info.MessagesSent, int64(n))
		if cap(out) > maxKeptBuffer {
			out = nil
		}
	}
}

// appendPublish appends the PUBLISH packet of pk delivered with d.
// Packets without properties (every message of the bridge) are encoded
// here; others by mochi.
func appendPublish(dst []byte, pk *packets.Packet, d delivery) []byte {
	if !plain(pk) {
		return appendMochiPublish(dst, d.packet(pk))
	}
	h := mqttwire.Publish{Topic: pk.TopicName, QoS: d.qos, Retain: d.retain, ID: d.id, Version: d.version, SubscriptionIDs: d.ids}
	return mqttwire.AppendPublish(dst, &h, pk.Payload)
}

// plain reports whether pk carries no property but subscription
// identifiers: no expiry, payload format, content type, response topic,
// correlation data or user property.
func plain(pk *packets.Packet) bool {
	p := &pk.Properties
	return pk.Expiry <= 0 && !p.PayloadFormatFlag && p.MessageExpiryInterval == 0 && p.ContentType == "" &&
		p.ResponseTopic == "" && len(p.CorrelationData) == 0 && len(p.User) == 0
}

// appendMochiPublish encodes out with mochi's encoder, as mochi's
// WritePacket would for the client (message expiry counted down).
func appendMochiPublish(dst []byte, out packets.Packet) []byte {
	if out.Expiry > 0 {
		out.Properties.MessageExpiryInterval = uint32(max(out.Expiry-time.Now().Unix(), 1))
	}
	out.Mods.AllowResponseInfo = true
	var b bytes.Buffer
	if err := out.PublishEncode(&b); err != nil {
		return dst // only a QoS > 0 packet without identifier fails, which fanout never makes
	}
	return append(dst, b.Bytes()...)
}

// The broker hook: keeps the routes current and takes over retained
// messages on subscribe.

func (f *fanout) ID() string { return "fleet2mqtt-fanout" }

func (f *fanout) Provides(b byte) bool {
	switch b {
	case mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnQosComplete, mqtt.OnQosPublish:
		return true
	}
	return false
}

// OnSessionEstablish switches mochi's flow control off for the client (see
// fanout) before the client is known to publishers.
func (f *fanout) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
}

// OnSessionEstablished switches mochi's flow control off again, since a
// resumed session's in-flight store, taken over from the previous
// connection, comes with a quota of its own; it runs before mochi reads
// the client's first packet.
func (f *fanout) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
	f.offline.release(cl.ID) // resumed, or replaced by a clean start
	f.invalidate()
}

// OnClientExpired forgets a session that ended while its client was away:
// what it kept leaves the offline budget, and its subscriptions leave the
// topic index (mochi removes the client but not them) unless the client
// came back meanwhile.
func (f *fanout) OnClientExpired(cl *mqtt.Client) {
	f.offline.release(cl.ID)
	if cur, ok := f.server.Clients.Get(cl.ID); ok && cur == cl {
		f.server.UnsubscribeClient(cl)
	}
	f.invalidate()
}

// OnQosPublish counts a message of another MQTT client that mochi keeps
// for an offline persistent session against the offline budget, and takes
// it out of the session again when the budget is spent (see
// offlineBudget); the bridge's own messages do not come through here.
func (f *fanout) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if resends > 0 || cl.Net.Inline || !cl.Closed() || f.offline.take(cl.ID) {
		return
	}
	if cl.State.Inflight.Delete(pk.PacketID) {
		atomic.AddInt64(&f.server.Info.Inflight, -1)
	}
	f.drop(cl, DropOfflineFull, 1)
}

func (f *fanout) OnUnsubscribed(*mqtt.Client, packets.Packet) { f.invalidate() }

// OnQosComplete notes the client's progress (see stallStart), sends what
// waited for its receive maximum now that it acknowledged a message, and
// wakes the publishers that wait for its backlog to shrink.
func (f *fanout) OnQosComplete(cl *mqtt.Client, _ packets.Packet) {
	f.smu.RLock()
	s := f.senders[cl]
	f.smu.RUnlock()
	if s != nil {
		s.mu.Lock()
		s.release(cl)
		s.progressed()
		s.mu.Unlock()
	}
}

func (f *fanout) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	f.invalidate()
	f.endSender(cl)
	f.rmu.Lock()
	delete(f.requests, cl)
	delete(f.overQuota, cl)
	f.rmu.Unlock()
}

// OnSubscribe notes what each subscription asks about retained messages
// and tells mochi not to send them: OnSubscribed sends them instead,
// through the client's queue. It also refuses the new filters of a client
// that has max_subscriptions already: each costs about 2 KiB in mochi's
// topic index, and nothing else bounds how many one client asks for. A
// refused filter is made empty here, which mochi refuses as invalid;
// OnSubscribed then answers it with 0x97, quota exceeded (MQTT 5; 0x80
// for MQTT 3).
func (f *fanout) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk // mochi hands retained messages to in-process handlers itself
	}
	reqs := make([]retainRequest, len(pk.Filters))
	filters := slices.Clone(pk.Filters)
	have := cl.State.Subscriptions.Len()
	refused := 0
	for i := range filters {
		_, existed := cl.State.Subscriptions.Get(filters[i].Filter)
		reqs[i] = retainRequest{handling: filters[i].RetainHandling, existed: existed}
		filters[i].RetainHandling = 2
		if !existed && filters[i].Filter != "" {
			if have >= f.limits.subs {
				reqs[i].overQuota = true
				filters[i].Filter = ""
				refused++
				continue
			}
			have++ // a filter twice in one packet counts twice: never too few
		}
	}
	pk.Filters = filters
	f.rmu.Lock()
	f.requests[cl] = reqs
	first := refused > 0 && !f.overQuota[cl]
	if refused > 0 {
		f.overQuota[cl] = true
	}
	f.rmu.Unlock()
	if first { // once per connection
		f.log.Warn("MQTT client has as many subscriptions as a client may (mqtt.embedded.max_subscriptions); more are refused",
			"client", cl.ID, "remote", cl.Net.Remote, "max_subscriptions", f.limits.subs, "refused", refused)
	}
	return pk
}

// OnSubscribed sends the retained messages of the new subscriptions (mochi
// calls it once they are in its index, before it answers with SUBACK,
// which MQTT allows).
func (f *fanout) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	f.invalidate()
	// The retained messages sent below, and those mochi hands an
	// in-process subscription next, come from mochi's index.
	f.flushRetained()
	if cl.Net.Inline {
		return
	}
	f.rmu.Lock()
	reqs := f.requests[cl]
	delete(f.requests, cl)
	f.rmu.Unlock()
	if len(reqs) != len(pk.Filters) || len(codes) != len(pk.Filters) {
		return
	}
	if cl.Properties.ProtocolVersion == 5 {
		for i := range reqs {
			if reqs[i].overQuota {
				// codes is the SUBACK's (mochi writes it after this hook).
				codes[i] = packets.ErrQuotaExceeded.Code
			}
		}
	}
	var retained []string // every retained topic, read once for the packet's wildcard filters
	for i, sub := range pk.Filters {
		r := reqs[i]
		if codes[i] >= packets.ErrUnspecifiedError.Code || mqtt.IsSharedFilter(sub.Filter) ||
			r.handling == 2 || (r.handling == 1 && r.existed) { // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
			continue
		}
		topics := []string{sub.Filter}
		if strings.ContainsAny(sub.Filter, "+#") {
			if retained == nil {
				retained = f.retainedTopics()
			}
			topics = topics[:0]
			for _, t := range retained {
				if topic.Match(sub.Filter, t) {
					topics = append(topics, t)
				}
			}
		}
		f.sendRetained(cl, sub, topics)
	}
}

// retainedTopics returns the topics of all retained messages, sorted. (It
// does not walk mochi's topic tree as mochi's TopicsIndex.Messages does:
// that reads the tree without its lock, racing with RetainMessage.)
func (f *fanout) retainedTopics() []string {
	all := f.server.Topics.Retained.GetAll()
	topics := make([]string, 0, len(all))
	for t := range all {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	return topics
}

// sendRetained queues the retained messages of topics (which match sub)
// for cl, flagged retained. Each is read from the index just before it is
// queued, under the client's queue lock: a live message of the same topic
// that is queued meanwhile was retained before, so the client never gets
// an older value after a newer one.
func (f *fanout) sendRetained(cl *mqtt.Client, sub packets.Subscription, topics []string) {
	s := f.sender(cl)
	if s == nil {
		return
	}
	var ids []int
	if sub.Identifier > 0 && cl.Properties.ProtocolVersion == 5 {
		ids = []int{sub.Identifier}
	}
	now := time.Now().Unix()
	const chunk = 256 // messages queued per lock, so that live ones are not held up long
	for len(topics) > 0 {
		n := min(chunk, len(topics))
		s.mu.Lock()
		for _, t := range topics[:n] {
			// A bridge message that replaced this one may wait in the
			// topic's kept state, and may be on its way to this client
			// live already: write it into the index first, so that the
			// client gets it, not the one it replaced, before the live
			// copy (which waits for s.mu).
			f.flushTopic(t)
			pk, ok := f.server.Topics.Retained.Get(t)
			if !ok || len(pk.Payload) == 0 || !f.mayRead(cl, t) || (pk.Expiry > 0 && pk.Expiry < now) {
				continue // gone, not for this client, or expired (see stopRetainedSweep)
			}
			f.deliverLocked(cl, s, &pk, sub.Qos, true, ids)
		}
		s.mu.Unlock()
		topics = topics[n:]
	}
}
