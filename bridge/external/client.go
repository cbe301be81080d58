// Package external connects the bridge to the user's own MQTT broker
// (Mosquitto, EMQX, HiveMQ, ...) over MQTT 5 with paho.golang's autopaho:
// mqtt://, mqtts://, ws:// and wss:// URLs, username and password, a private
// CA, a last will on the bridge state topic, reconnection with backoff and a
// bounded wait while the broker is away.
//
//	broker:
//	  url: mqtts://broker.lan:8883
//	  username: fleet2mqtt
//	  password: secret
//	  ca_file: /config/broker-ca.pem
//
// Client implements pubsub.Publisher and pubsub.Subscriber:
//
//	c, err := external.New(cfg, log, external.WithStateTopic("tesla/bridge/state"))
//	err = c.Start(ctx)            // connects in the background until ctx ends
//	err = c.Publish(ctx, msgs)    // nil once the broker accepted every message
//	<-c.Done()                    // after ctx ended: "offline" published, disconnected
//
// # Delivery
//
// Publish returns nil only when the broker has acknowledged every QoS 1
// message (PUBACK) and every QoS 0 message has been handed to the
// connection. A QoS 1 message whose connection drops before its PUBACK is
// sent again on the next connection (with DUP in a resumed session, as new
// when the broker lost the session) and Publish keeps waiting; it gives up
// only when its context ends, with an error, so the vehicle's frame is not
// acknowledged. While the broker is away Publish waits, but never for more
// than queue_size messages in total: beyond that it fails at once with
// ErrQueueFull (back-pressure: the car sends again later).
//
// # Performance
//
// paho writes one system call per PUBLISH and allocates a dozen objects per
// PUBACK. Here autopaho keeps the connection (dial, CONNECT, keep-alive,
// reconnection, subscriptions, incoming messages), while the publish path
// is our own, through autopaho's hooks: ClientConfig.AttemptConnection
// supplies conn, which coalesces writes (one write per batch, and one for
// all batches that became ready during a round trip) and takes PUBACKs out
// of the incoming stream, and ClientConfig.Session supplies session, which
// assigns packet identifiers and tracks acknowledgements without
// allocating. MQTT 5 topic aliases are not used: mosquitto allows 10 per
// client by default, far fewer than the topics of one vehicle, and they
// would save only broker-side bytes.
//
// Broker settings that matter: mosquitto's default max_inflight_messages 20
// is also the Receive Maximum it announces, so at most 20 QoS 1 messages
// (one record) are unacknowledged at a time per client; with many vehicles
// set it higher (e.g. 1000) on the broker.
//
// # Pinned to paho v0.23.0
//
// conn.go and session.go take over paho's publish path through its hooks
// and rely on how paho v0.23.0 uses them: it writes each packet between
// Lock and Unlock of a connection that is a sync.Locker, reads the
// connection from one goroutine a header byte at a time, and leaves the
// session state (packet identifiers, acknowledgements) to a
// session.SessionManager. TestPinnedPaho fails when go.mod moves paho to
// another version, and lists per file what to check again in the new
// version's source.
package external

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
)

var (
	// ErrQueueFull means that QueueSize messages already wait for the
	// broker; the caller should not acknowledge and try again later.
	ErrQueueFull = errors.New("external broker: queue full")
	// ErrClosed means that the client has shut down.
	ErrClosed = errors.New("external broker: client closed")
	// ErrRefused means that the broker refused a message (PUBACK reason
	// code 0x80 or above, e.g. not authorised for the topic).
	ErrRefused = errors.New("external broker: message refused")
	// ErrTooLarge means that a message exceeds the broker's maximum
	// packet size.
	ErrTooLarge = errors.New("external broker: message too large")
	// ErrInvalidTopic means a topic that cannot be published to (empty,
	// wildcards, NUL, invalid UTF-8, too long) or a malformed filter.
	ErrInvalidTopic = errors.New("external broker: invalid topic")
	// ErrStarted means that Start was called twice.
	ErrStarted = errors.New("external broker: already started")
)

// Bridge state payloads, as Home Assistant's availability expects them.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

const (
	// receiveMaximum bounds the incoming QoS 1 messages in flight (and the
	// buffer paho allocates for them per connection).
	receiveMaximum = 64
	// shutdownTimeout bounds publishing "offline" and disconnecting.
	shutdownTimeout = 5 * time.Second
)

// Client is the connection to an external broker. Create it with New, run it
// with Start.
type Client struct {
	cfg        Config
	url        *url.URL
	tlsConfig  *tls.Config
	log        *slog.Logger
	stateTopic string
	backoff    func(attempt int) time.Duration

	sess   *session
	queued atomic.Int64 // messages in Publish calls
	limit  int64

	mu      sync.Mutex
	cm      *autopaho.ConnectionManager
	started bool
	subs    map[string][]*handler // by filter

	done     chan struct{}
	stopping bool           // guarded by mu: no more background work
	bg       sync.WaitGroup // background work (resubscribe, online, unsubscribe)
	bgCtx    context.Context
	bgCancel context.CancelFunc

	onConnectError func(error) // for tests
}

type handler struct {
	filter string
	opts   SubscribeOptions
	handle func(Delivery)
}

// SubscribeOptions are the MQTT 5 subscription options of SubscribeWith.
type SubscribeOptions struct {
	// NoRetained: the broker sends no retained messages on subscribing
	// (Retain Handling 2, also on every resubscription after a
	// reconnection), and each message delivered carries the retain flag
	// as its publisher set it (Retain As Published), so that a handler
	// can refuse messages published to be retained. For topics whose
	// messages act, such as commands: a retained one would act again on
	// every start.
	NoRetained bool
}

// Delivery is one message delivered to a subscription.
type Delivery struct {
	Topic   string
	Payload []byte
	// Retain is the message's retain flag: by default set on the
	// retained messages the broker sends on subscribing; with
	// SubscribeOptions.NoRetained, as the publisher set it.
	Retain bool
}

// ErrSubscribeOptions: a filter is already subscribed with other options.
var ErrSubscribeOptions = errors.New("external broker: filter already subscribed with other options")

// Option configures a Client.
type Option func(*Client)

// WithStateTopic sets the bridge state topic, e.g. "tesla/bridge/state": the
// broker publishes "offline" there (retained, QoS 1) as the client's last
// will when the connection drops, the client publishes "online" retained on
// every connection and "offline" when it shuts down.
func WithStateTopic(topic string) Option { return func(c *Client) { c.stateTopic = topic } }

// New checks cfg (after filling defaults) and loads the CA file. It does
// not connect; see Start. log receives what the client has to say; nil
// discards it.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := parseURL(cfg.URL)
	c := &Client{
		cfg:     cfg,
		url:     u,
		log:     log,
		backoff: autopaho.NewExponentialBackoff(200*time.Millisecond, 30*time.Second, time.Second, 2),
		limit:   int64(cfg.QueueSize),
		subs:    make(map[string][]*handler),
		done:    make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.backoff == nil {
		return nil, errors.New("external broker: no reconnection backoff (an Option set it to nil)")
	}
	if c.stateTopic != "" && !validTopic(c.stateTopic) {
		return nil, fmt.Errorf("%w: state topic %q", ErrInvalidTopic, c.stateTopic)
	}
	c.log = c.log.With("broker", u.Redacted())
	c.sess = newSession(c.log)
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	if isTLS(u.Scheme) {
		tc, err := tlsConfig(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		c.tlsConfig = tc
	}
	return c, nil
}

func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %q: no PEM certificate in it", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// Start connects in the background and keeps reconnecting until ctx ends;
// then it publishes "offline" (with a state topic), disconnects and closes
// Done. It returns at once; use AwaitConnection to wait for the broker.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrStarted
	}
	c.started = true

	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{c.url},
		KeepAlive:                     uint16(c.cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: true, // a new process has no session state to resume
		SessionExpiryInterval:         uint32(c.cfg.SessionExpiry / time.Second),
		ReconnectBackoff:              c.backoff,
		ConnectTimeout:                c.cfg.ConnectTimeout,
		AttemptConnection:             c.attemptConnection,
		OnConnectionUp:                c.onConnectionUp,
		OnConnectionDown:              c.onConnectionDown,
		OnConnectError:                c.connectError,
		ConnectUsername:               c.cfg.Username,
		ConnectPassword:               []byte(c.cfg.Password.Reveal()),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			rm := uint16(receiveMaximum)
			cp.Properties.ReceiveMaximum = &rm
			return cp, nil
		},
		Debug:      pahoLogger{c.log},
		Errors:     pahoLogger{c.log},
		PahoDebug:  pahoLogger{c.log},
		PahoErrors: pahoLogger{c.log},
		ClientConfig: paho.ClientConfig{
			ClientID:          c.cfg.ClientID,
			Session:           c.sess,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.route},
			PacketTimeout:     c.cfg.ConnectTimeout,
		},
	}
	if c.stateTopic != "" {
		cfg.WillMessage = &paho.WillMessage{Topic: c.stateTopic, Payload: []byte(StateOffline), QoS: 1, Retain: true}
		cfg.WillProperties = &paho.WillProperties{}
	}
	// autopaho sends DISCONNECT as soon as its context ends; it gets its own
	// so that "offline" can be published first.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cm, err := autopaho.NewConnection(runCtx, cfg)
	if err != nil {
		cancel()
		return fmt.Errorf("start broker connection: %w", err)
	}
	c.cm = cm
	go c.run(ctx, cm, cancel)
	return nil
}

func (c *Client) run(ctx context.Context, cm *autopaho.ConnectionManager, cancel context.CancelFunc) {
	defer close(c.done)
	defer cancel()
	select {
	case <-ctx.Done():
	case <-cm.Done():
	}
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.bgCancel()
	c.bg.Wait()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if up, _ := c.sess.connected(); up && c.stateTopic != "" {
		msg := []pubsub.Message{{Topic: c.stateTopic, Payload: []byte(StateOffline), QoS: 1, Retain: true}}
		if err := c.Publish(sctx, msg); err != nil {
			c.log.Warn("publish bridge state offline", "err", err)
		}
	}
	if err := cm.Disconnect(sctx); err != nil {
		c.log.Warn("disconnect from broker", "err", err)
	}
	c.sess.close(ErrClosed)
	c.log.Info("disconnected from broker")
}

// Done is closed when the client has shut down after Start's context ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// AwaitConnection returns nil once the client is connected, or an error when
// ctx ends or the client shuts down first.
func (c *Client) AwaitConnection(ctx context.Context) error {
	for {
		up, changed := c.sess.connected()
		if up {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("await broker connection: %w", ctx.Err())
		case <-c.done:
			return ErrClosed
		}
	}
}

// Publish sends msgs and returns nil once the broker has accepted every one:
// QoS 1 (and 2, sent as 1) acknowledged with PUBACK, QoS 0 handed to the
// connection, whose buffer is written within a millisecond. While the
// broker is away Publish waits for it, bounded by ctx and by QueueSize
// messages across all callers: beyond that it fails at once with
// ErrQueueFull. It does not keep msgs after it returns.
func (c *Client) Publish(ctx context.Context, msgs []pubsub.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if !validTopic(msgs[i].Topic) {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, msgs[i].Topic)
		}
	}
	n := int64(len(msgs))
	for {
		q := c.queued.Load()
		if q+n > c.limit {
			return ErrQueueFull
		}
		if c.queued.CompareAndSwap(q, q+n) {
			break
		}
	}
	defer c.queued.Add(-n)
	b := getBatch(msgs)
	defer putBatch(b)
	return c.sess.publish(ctx, b)
}

// QueueLen returns how many messages wait in Publish calls now, for the
// connection or for the broker's acknowledgement: from 0 to
// Config.QueueSize, beyond which Publish fails with ErrQueueFull. It is
// meant for monitoring.
func (c *Client) QueueLen() int { return int(c.queued.Load()) }

// Subscribe calls handle for every message on filter (wildcards allowed),
// including the retained ones the broker sends on subscribing, until ctx
// ends. It returns once the subscription is registered and, when connected,
// granted by the broker; it is made again on every reconnection. It fails
// only for a malformed filter, an ended ctx or a broker's refusal. Handlers
// run on paho's message goroutine and must not block for long; the payload
// is handle's to keep.
func (c *Client) Subscribe(ctx context.Context, filter string, handle func(topic string, payload []byte)) error {
	return c.SubscribeWith(ctx, filter, SubscribeOptions{}, func(d Delivery) { handle(d.Topic, d.Payload) })
}

// SubscribeWith is Subscribe with MQTT 5 subscription options, and the
// message's retain flag for handle. Subscriptions of one filter share its
// options: a second one with other options fails with
// ErrSubscribeOptions.
func (c *Client) SubscribeWith(ctx context.Context, filter string, opts SubscribeOptions, handle func(Delivery)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validFilter(filter) {
		return fmt.Errorf("%w: filter %q", ErrInvalidTopic, filter)
	}
	h := &handler{filter: filter, opts: opts, handle: handle}
	c.mu.Lock()
	if hs := c.subs[filter]; len(hs) > 0 && hs[0].opts != opts {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrSubscribeOptions, filter)
	}
	first := len(c.subs[filter]) == 0
	c.subs[filter] = append(c.subs[filter], h)
	cm := c.cm
	c.mu.Unlock()

	if first && cm != nil {
		if up, _ := c.sess.connected(); up {
			if err := c.subscribe(ctx, cm, filter, opts); err != nil {
				c.removeHandler(h)
				return err
			}
		}
	}
	context.AfterFunc(ctx, func() { c.removeHandler(h) })
	return nil
}

// retainHandlingNone is MQTT 5's Retain Handling 2: do not send retained
// messages when the subscription is made.
const retainHandlingNone = 2

// subscribe sends one SUBSCRIBE at QoS 1. Only a refusal is an error: a
// lost connection is made good by the resubscription on the next one.
func (c *Client) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, filter string, opts SubscribeOptions) error {
	sub := paho.SubscribeOptions{Topic: filter, QoS: 1}
	if opts.NoRetained {
		sub.RetainHandling = retainHandlingNone
		sub.RetainAsPublished = true
	}
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{sub}})
	if err != nil && sa != nil {
		return fmt.Errorf("subscribe %q: %w", filter, err)
	}
	if err != nil {
		c.log.Debug("subscribe deferred to the next connection", "filter", filter, "err", err)
	}
	return nil
}

func (c *Client) removeHandler(h *handler) {
	c.mu.Lock()
	hs := c.subs[h.filter]
	for i, x := range hs {
		if x == h {
			hs = append(hs[:i:i], hs[i+1:]...)
			break
		}
	}
	last := len(hs) == 0
	if last {
		delete(c.subs, h.filter)
	} else {
		c.subs[h.filter] = hs
	}
	cm := c.cm
	c.mu.Unlock()
	if !last || cm == nil {
		return
	}
	if up, _ := c.sess.connected(); !up {
		return
	}
	c.background(func() {
		ctx, cancel := context.WithTimeout(c.bgCtx, c.cfg.ConnectTimeout)
		defer cancel()
		if _, err := cm.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{h.filter}}); err != nil {
			c.log.Debug("unsubscribe", "filter", h.filter, "err", err)
		}
	})
}

// background runs f in a goroutine that shutdown waits for, unless the
// client is already shutting down.
func (c *Client) background(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
}

// route passes an incoming message to the handlers whose filter matches.
func (c *Client) route(pr paho.PublishReceived) (bool, error) {
	d := Delivery{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload, Retain: pr.Packet.Retain}
	name := d.Topic
	var hs []*handler
	c.mu.Lock()
	for filter, list := range c.subs {
		if topic.Match(filter, name) {
			hs = append(hs, list...)
		}
	}
	c.mu.Unlock()
	for _, h := range hs {
		h.handle(d)
	}
	return len(hs) > 0, nil
}

// attemptConnection dials the broker for autopaho and wraps the connection
// in the write-coalescing conn.
func (c *Client) attemptConnection(ctx context.Context, _ autopaho.ClientConfig, _ *url.URL) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	nc, err := dial(ctx, c.url, c.tlsConfig)
	if err != nil {
		return nil, err
	}
	return newConn(nc, &c.sess.waiting, c.sess.pubacks), nil
}

func (c *Client) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	c.log.Info("connected to broker", "client_id", c.cfg.ClientID, "session_present", ca.SessionPresent)
	c.mu.Lock()
	filters := make(map[string]SubscribeOptions, len(c.subs))
	for f, hs := range c.subs {
		filters[f] = hs[0].opts
	}
	c.mu.Unlock()
	// OnConnectionUp must not block: resubscribe and announce in the
	// background.
	c.background(func() {
		for f, opts := range filters {
			if err := c.subscribe(c.bgCtx, cm, f, opts); err != nil {
				c.log.Error("resubscribe", "filter", f, "err", err)
			}
		}
		if c.stateTopic == "" {
			return
		}
		msg := []pubsub.Message{{Topic: c.stateTopic, Payload: []byte(StateOnline), QoS: 1, Retain: true}}
		if err := c.Publish(c.bgCtx, msg); err != nil && c.bgCtx.Err() == nil {
			c.log.Warn("publish bridge state online", "err", err)
		}
	})
}

func (c *Client) onConnectionDown() bool {
	c.log.Warn("connection to broker lost; reconnecting")
	return true
}

func (c *Client) connectError(err error) {
	c.log.Warn("connect to broker", "err", err)
	if c.onConnectError != nil {
		c.onConnectError(err)
	}
}

// pahoLogger sends paho's log lines to slog at debug level.
type pahoLogger struct{ l *slog.Logger }

func (p pahoLogger) Println(v ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintln(v...), "component", "paho")
	}
}

func (p pahoLogger) Printf(format string, v ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, v...), "component", "paho")
	}
}

var (
	_ pubsub.Publisher  = (*Client)(nil)
	_ pubsub.Subscriber = (*Client)(nil)
)
