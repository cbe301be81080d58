// Package embedded is fleet2mqtt's built-in MQTT broker (mochi-mqtt), for
// users without a broker of their own. The bridge publishes into it
// in-process, through mochi's inline client, with no socket on its side;
// Home Assistant, Node-RED and other clients connect over TCP, TLS or
// WebSocket.
//
// Access: users with passwords from the configuration may connect from
// anywhere a listener is reachable; clients without credentials only from
// this machine unless allow_anonymous says otherwise. Every client may
// subscribe to everything, and publish anywhere except under the vehicle
// prefix (which holds <prefix>/bridge/state), other prefixes the bridge
// writes (Protect), single topics the bridge owns (ProtectTopics: its
// cars' Home Assistant discovery configs) and $ topics: only the bridge
// writes vehicle data. Home Assistant's birth message on
// homeassistant/status, other devices' discovery and command topics stay
// open. A client whose last will targets a protected topic is refused at
// connect; a refused QoS 1 or 2 publish, $SYS included, is answered with
// reason code 0x87.
//
// Retained messages, the last value of every topic, are kept in the data
// directory and restored on start, so that a dashboard shows the cars'
// last state right after a restart. Unlike mochi's default, retained
// messages never expire. Clients' retained messages on topics outside the
// bridge's are bounded (Config.ClientRetainedMessages and
// ClientRetainedBytes, retainquota.go) and kept in a file of their own,
// rewritten only when they change (store.go). A save that fails is logged
// with back-off and reported by Persistence; a failed final save fails
// Close.
//
// Delivery: Publish returns once the broker has taken the messages (kept
// the retained ones, queued them for every subscriber). A subscriber that
// reads more slowly than the cars send fills its backlog (Config.MaxQueued
// messages, Config.MaxQueuedBytes bytes); Publish then waits for it, so
// that the cars' acknowledgements slow down to its pace and nothing is
// lost. A subscriber that reads nothing for Config.StallTimeout while its
// backlog is full is disconnected, with a log line naming it, and the
// cars carry on (see fanout). Messages the broker does drop are counted
// by reason (Dropped) and logged with their counts. The bridge's messages do not take mochi's
// general publish path, which costs some 25 allocations per message and
// subscriber, but a direct one (fanout.go): a cached subscriber lookup per
// topic, one encoding per subscriber into a buffer that is written with
// one system call per batch, and mochi's own retained index and in-flight
// stores, so that retained messages, QoS 1 acknowledgements and resumed
// sessions behave as before.
//
// # Pinned to mochi v2.7.9
//
// Parts of this package rely on mochi's internals, not only on its API,
// and were verified against mochi v2.7.9: fanout.go (its own publish path
// through mochi's retained index, subscriber search and in-flight stores,
// with mochi's flow control switched off because it loses messages and can
// deadlock), store.go (mochi's retained-message hooks and packet fields),
// deadline.go (mochi sets no deadline before CONNECT), broker.go's
// safeClose (Clients.GetByListener can deadlock), auth.go's will check and
// websocket.go's connection. Each file's comments give the reasons.
// TestPinnedMochi fails when go.mod moves mochi to another version, and
// lists per file what to check again in the new version's source.
package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// Errors of the broker.
var (
	// ErrNotRunning means the broker was not started, or was closed.
	ErrNotRunning = errors.New("embedded broker not running")
)

// maxPacketSize is the largest packet a client may send, and the least
// max_queued_bytes (a subscriber's backlog must hold one message).
const (
	maxPacketSize  = 1 << 20
	minQueuedBytes = maxPacketSize
)

// maxPacketIDs is how many QoS 1 and 2 messages may be in flight to one
// client at most: packet identifiers are 16-bit and never 0.
const maxPacketIDs = 65535

// Listener names, for Addr.
const (
	ListenerTCP       = "tcp"
	ListenerTLS       = "tls"
	ListenerWebSocket = "websocket"
)

// Broker is the embedded MQTT broker. It implements pubsub.Publisher and
// pubsub.Subscriber.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	server *mqtt.Server
	guard  *guard
	store  *store // nil without persistence
	quota  *retainQuota
	fan    *fanout // delivers what the bridge publishes
	drops  *drops  // counts and logs the messages given up

	mu      sync.RWMutex // guards running against Publish
	running bool
	closed  bool

	// connectTimeout bounds the time from accepting a connection to its
	// CONNECT packet (see defaultConnectTimeout); tests shorten it.
	connectTimeout time.Duration
	listeners      map[string]listeners.Listener

	subID atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

var (
	_ pubsub.Publisher  = (*Broker)(nil)
	_ pubsub.Subscriber = (*Broker)(nil)
)

// New prepares a broker; Start opens its listeners. dataDir holds the
// retained messages (it may be empty when cfg.Persist is false); prefix is
// the bridge's topic prefix, which only the bridge may publish under.
// logger may be nil.
func New(cfg Config, dataDir, prefix string, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Persist && dataDir == "" {
		return nil, configerr.Errorf("persist", "keeping retained messages needs a data directory")
	}
	if prefix == "" {
		return nil, errors.New("embedded broker: no topic prefix to protect")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi drops retained messages older than this (a day by default):
	// a car parked for a week would lose its last state. 0 keeps them.
	caps.MaximumMessageExpiryInterval = 0
	// A client may not make the broker allocate more than this for one
	// packet, whatever length it announces (the largest message the bridge
	// publishes, a car's Home Assistant discovery config, is ~100 KB).
	caps.MaximumPacketSize = maxPacketSize
	// How far a subscriber may fall behind before the broker drops
	// messages for it (Config.MaxQueued): mochi's 8192 are about a second
	// of a thousand cars.
	caps.MaximumInflight = uint16(cfg.MaxQueued)
	// Sessions nobody comes back for end (Config.MaxSessionExpiry); mochi
	// would keep them for ever.
	caps.MaximumSessionExpiryInterval = uint32(cfg.MaxSessionExpiry / time.Second)
	// Connections, each about 30 KiB, are bounded too (Config.MaxClients).
	caps.MaximumClients = int64(cfg.MaxClients)
	caps.MaximumClientWritesPending = int32(cfg.MaxQueued)
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// Writes to a subscriber are coalesced until its queue drains or
		// this much is buffered: fewer system calls under load.
		ClientNetWriteBufferSize: 16 << 10,
		InlineClient:             true,
		// $SYS statistics every 10 s rather than every second.
		SysTopicResendInterval: 10,
		Logger:                 slog.New(quiet{logger.Handler()}).With("component", "mqtt-broker"),
	})
	if err := stopRetainedSweep(server); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	b := &Broker{
		cfg:       cfg,
		log:       logger,
		server:    server,
		guard:     newGuard(&cfg, logger),
		listeners: make(map[string]listeners.Listener),

		connectTimeout: defaultConnectTimeout,
	}
	b.guard.server = server
	b.guard.protect(prefix)
	b.drops = newDrops(logger.With("component", "mqtt-broker"))
	var retainedChanged func()
	if cfg.Persist {
		b.store = newStore(dataDir, b.guard.bridgesOwn, logger)
		retainedChanged = b.store.changed
	}
	limits := backlogLimits{msgs: cfg.MaxQueued, bytes: cfg.MaxQueuedBytes, stall: cfg.StallTimeout, offline: cfg.MaxOfflineQueued, subs: cfg.MaxSubscriptions}
	b.fan = newFanout(server, b.guard.mayRead, b.guard.bridgeOnly, b.drops, logger.With("component", "mqtt-broker"), limits, retainedChanged)
	b.quota = newRetainQuota(cfg.ClientRetainedMessages, cfg.ClientRetainedBytes, b.guard.bridgesOwn, logger)
	hooks := []mqtt.Hook{b.guard, b.drops, b.fan, &sysRefusal{}, &ownedGuard{guard: b.guard}, b.quota}
	if b.store != nil {
		hooks = append(hooks, b.store)
	}
	for _, h := range hooks {
		if err := server.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	return b, nil
}

// Protect reserves another topic prefix for the bridge, such as the base
// of the compatibility layout. Clients may not publish under it from then
// on; call it before Start to leave no gap.
func (b *Broker) Protect(prefix string) { b.guard.protect(prefix) }

// Start restores the retained messages, opens the listeners and starts
// serving. ctx bounds the start only; the broker runs until Close.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || b.closed {
		return errors.New("embedded broker: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var cert *certs.Files
	if b.cfg.TLS.Listen != "" || (b.cfg.WebSocket.Listen != "" && b.cfg.WebSocket.TLS) {
		var err error
		if cert, err = loadCertificate(b.cfg.TLS, b.log); err != nil {
			return err
		}
	}
	var ls []listeners.Listener
	fail := func(err error) error {
		for _, l := range ls {
			l.Close(func(string) {})
		}
		b.server.Close()
		b.closed = true
		return fmt.Errorf("embedded broker: %w", err)
	}
	for _, tl := range []struct {
		id, addr string
		secure   bool
	}{
		{ListenerTCP, b.cfg.Listen, false},
		{ListenerTLS, b.cfg.TLS.Listen, true},
	} {
		if tl.addr == "" {
			continue
		}
		var tlsConfig *tls.Config
		if tl.secure {
			tlsConfig = serverTLS(cert)
		}
		l, err := listenTCP(tl.id, tl.addr, tlsConfig, b.connectTimeout)
		if err != nil {
			return fail(fmt.Errorf("listen %s on %s: %w", tl.id, tl.addr, err))
		}
		ls = append(ls, l)
	}
	if b.cfg.WebSocket.Listen != "" {
		ws := newWSListener(ListenerWebSocket, b.cfg.WebSocket.Listen, nil, b.cfg.WebSocket.AllowedOrigins)
		ws.connectTimeout = b.connectTimeout
		if b.cfg.WebSocket.TLS {
			ws.tls = serverTLS(cert)
		}
		ls = append(ls, ws)
	}
	busy := &busyLog{log: b.log, max: b.cfg.MaxClients}
	for i, l := range ls {
		l = busyListener{Listener: l, busy: busy}
		l = safeClose{Listener: l, server: b.server}
		ls[i] = l
		if err := b.server.AddListener(l); err != nil {
			b.server.Close()
			b.closed = true
			return fmt.Errorf("embedded broker: listen %s on %s: %w", l.ID(), l.Address(), err)
		}
		b.listeners[l.ID()] = l
		b.warnIfOpen(l)
	}
	if b.store != nil { // before any client can connect (see store.load)
		if err := b.store.load(b.retainLoaded); err != nil {
			return fail(err)
		}
	}
	if err := b.server.Serve(); err != nil {
		b.server.Close()
		b.closed = true
		return fmt.Errorf("embedded broker: %w", err)
	}
	b.running = true
	for _, l := range ls {
		b.log.Info("MQTT broker listening", "listener", l.ID(), "protocol", l.Protocol(), "address", l.Address())
	}
	if b.store != nil {
		b.stop, b.done = make(chan struct{}), make(chan struct{})
		go b.persist()
	}
	return nil
}

// safeClose wraps a listener so that closing it disconnects its clients
// without mochi's Clients.GetByListener, which takes its read lock twice
// and so deadlocks when a client disconnects at the same moment (mochi
// v2.7.9; seen in tests as a Close that never returns).
type safeClose struct {
	listeners.Listener
	server *mqtt.Server
}

func (l safeClose) Close(listeners.CloseFn) {
	l.Listener.Close(func(id string) {
		for _, cl := range l.server.Clients.GetAll() {
			if cl.Net.Listener != id || cl.Closed() {
				continue
			}
			// MQTT 3.1.1 has no DISCONNECT from the server: its
			// clients (Home Assistant's among them) take mochi's for a
			// protocol error and log it. They only see the connection
			// close, as the protocol says.
			if cl.Properties.ProtocolVersion < 5 {
				cl.Stop(packets.ErrServerShuttingDown)
				continue
			}
			_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown) // the client is going anyway
		}
	})
}

// warnIfOpen warns when anonymous clients may connect from the network.
func (b *Broker) warnIfOpen(l listeners.Listener) {
	if b.cfg.AllowAnonymous != AnonymousAlways {
		return
	}
	host, _, err := net.SplitHostPort(l.Address())
	if ip := net.ParseIP(host); err == nil && (ip == nil || !ip.IsLoopback()) {
		b.log.Warn("MQTT clients without a password may connect from the network and read every vehicle's data",
			"listener", l.ID(), "address", l.Address(), "allow_anonymous", string(b.cfg.AllowAnonymous))
	}
}

// persist saves the retained messages every PersistInterval while
// something changed, until Close.
func (b *Broker) persist() {
	defer close(b.done)
	t := time.NewTicker(b.cfg.PersistInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.saveNow() // logged, and reported by Persistence
		}
	}
}

// Addr returns the address a listener (ListenerTCP, ListenerTLS,
// ListenerWebSocket) is bound to, or "" if it is not running.
func (b *Broker) Addr(listener string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if l, ok := b.listeners[listener]; ok && b.running {
		return l.Address()
	}
	return ""
}

// Close disconnects every client, closes the listeners and saves the
// retained messages. Publish fails afterwards.
func (b *Broker) Close() error {
	b.fan.stopWaiting() // publishers waiting for a subscriber hold b.mu
	b.mu.Lock()
	wasRunning := b.running && !b.closed
	b.closed, b.running = true, false
	b.mu.Unlock()
	if !wasRunning {
		return nil
	}
	// Not under b.mu: a subscription handler that publishes while the
	// clients are being disconnected must get ErrNotRunning, not wait for
	// a Close that waits for it.
	err := b.server.Close()
	b.fan.close()
	b.drops.close()
	if b.store != nil {
		close(b.stop)
		<-b.done
		if serr := b.saveNow(); serr != nil {
			err = errors.Join(err, fmt.Errorf("final save: %w", serr))
		}
	}
	return err
}

// Publish hands msgs to the broker, which keeps the retained ones and
// queues every message for its subscribers; it returns once all are
// accepted. It waits while a subscriber's backlog is full (see the package
// doc), and fails when ctx ends first: the messages may then have reached
// some subscribers and not others, and the caller leaves the record
// unacknowledged for the car to send again. The broker copies what it keeps, so msgs may be reused
// afterwards. The messages bypass mochi's publish path and its publish
// hooks (see fanout); a topic with shared subscriptions, which mochi
// serves better, goes through mochi.
func (b *Broker) Publish(ctx context.Context, msgs []pubsub.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.running {
		return ErrNotRunning
	}
	var direct int64
	var adm admission
	now := time.Now().Unix()
	for i := range msgs {
		m := &msgs[i]
		if err := validPublish(m.Topic, m.Payload, m.QoS); err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
		done, err := b.fan.publish(ctx, &adm, m.Topic, m.Payload, m.QoS, m.Retain, now)
		if err != nil {
			atomic.AddInt64(&b.server.Info.PacketsReceived, direct)
			atomic.AddInt64(&b.server.Info.MessagesReceived, direct)
			return fmt.Errorf("publish %s: waiting for a subscriber that reads slowly: %w", m.Topic, err)
		}
		if done {
			direct++
			continue
		}
		if err := b.server.Publish(m.Topic, m.Payload, m.Retain, m.QoS); err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
	}
	// mochi counts the inline client's messages as received ($SYS).
	atomic.AddInt64(&b.server.Info.PacketsReceived, direct)
	atomic.AddInt64(&b.server.Info.MessagesReceived, direct)
	return nil
}

// Subscribe calls handle for every message on filter, and at once for the
// retained messages that match it, until ctx ends. handle runs on the
// publisher's goroutine (a client's, or the bridge's): it must not block
// for long. The payload is handle's to keep.
func (b *Broker) Subscribe(ctx context.Context, filter string, handle func(topic string, payload []byte)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := int(b.subID.Add(1) % math.MaxInt32)
	err := b.server.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		if ctx.Err() == nil { // unsubscribing runs later, on its own goroutine
			handle(pk.TopicName, slices.Clone(pk.Payload))
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	context.AfterFunc(ctx, func() {
		if err := b.server.Unsubscribe(filter, id); err != nil {
			b.log.Debug("unsubscribe", "filter", filter, "error", err)
		}
	})
	return nil
}

// Dropped returns how many messages the broker gave up for a subscriber
// so far, for reason (one of DropReasons).
func (b *Broker) Dropped(reason DropReason) int64 { return b.drops.count(reason) }

// Waits returns how many times a publisher waited for a subscriber whose
// backlog was full.
func (b *Broker) Waits() int64 { return b.fan.waits.Load() }

// OfflineQueued returns how many QoS 1 and 2 messages are kept for
// persistent sessions whose clients are offline (at most
// Config.MaxOfflineQueued).
func (b *Broker) OfflineQueued() int64 { return b.fan.offline.Held() }
