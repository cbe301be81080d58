package simulate

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/internal/uuid"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// DeviceType is the device type a car names in its frames.
const DeviceType = "vehicle_device"

// Defaults of CarConfig.
const (
	DefaultNetworkInterface = "wifi"
	DefaultVersion          = "2025.44.25.5 fleet2mqtt-simulator"
	DefaultWindow           = 64
	DefaultAckTimeout       = time.Minute // longer than a server's usual time to publish
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMinBackoff       = 250 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
)

// Errors of a Car.
var (
	// ErrRunning is returned by Run when the car is already running.
	ErrRunning = errors.New("car is already running")
	// ErrDuplicateTxID is returned by Send for a record whose txid is
	// still waiting for its acknowledgement.
	ErrDuplicateTxID = errors.New("txid already pending")
	// ErrClosedByServer is returned when the server ends the connection.
	ErrClosedByServer = errors.New("connection closed by server")
)

// CarConfig describes one simulated car. URL, VIN and TLS are required; zero
// values of the rest take the defaults above.
type CarConfig struct {
	// URL is the server's WebSocket address, such as wss://127.0.0.1:8443/.
	URL string
	// VIN names the car in its frames (sender_id, device_id, payload vin).
	// Servers take the identity from the client certificate, so it should
	// be the certificate's subject common name.
	VIN string
	// TLS holds the client certificate and the authorities trusted for the
	// server (RootCAs), and ServerName when the URL's host is not in the
	// server certificate.
	TLS *tls.Config
	// NetworkInterface is sent in the X-Network-Interface header.
	NetworkInterface string
	// Version is sent in the Version header.
	Version string
	// LegacyStrings sends fields below FirstTypedField as strings, as older
	// firmware does.
	LegacyStrings bool
	// Window is how many records may wait for their acknowledgement at
	// once; Send blocks while it is full. Negative means no limit.
	Window int
	// AckTimeout is how long a record may wait for its acknowledgement
	// before it is sent again on the same connection. Negative disables
	// these resends; records are then resent after a reconnect only.
	AckTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and WebSocket upgrade.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing one frame.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before reconnecting; it
	// doubles after every failed attempt and starts over after a
	// connection that worked.
	MinBackoff, MaxBackoff time.Duration
	// Log receives connection events; nil discards them.
	Log *slog.Logger
	// OnAck, when set, is called once per record, on its first
	// acknowledgement, with the time since the record was last written.
	// It runs on the car's reading goroutine: keep it short.
	OnAck func(m *Message, latency time.Duration)
	// OnReject, when set, is called once per record the server answered
	// with the protocol's error response (the record is not sent again),
	// with the server's reason. It runs on the car's reading goroutine.
	OnReject func(m *Message, reason string)
}

func (c *CarConfig) setDefaults() {
	c.NetworkInterface = cmp.Or(c.NetworkInterface, DefaultNetworkInterface)
	c.Version = cmp.Or(c.Version, DefaultVersion)
	c.Window = cmp.Or(c.Window, DefaultWindow)
	c.AckTimeout = cmp.Or(c.AckTimeout, DefaultAckTimeout)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.MinBackoff = cmp.Or(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *CarConfig) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return fmt.Errorf("car url: %w", err)
	case u.Scheme != "wss":
		return fmt.Errorf("car url %q: scheme must be wss: cars only speak TLS", c.URL)
	case u.Host == "":
		return fmt.Errorf("car url %q: no host", c.URL)
	case c.VIN == "":
		return errors.New("car vin: must be set")
	case c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetClientCertificate == nil):
		return errors.New("car tls: a client certificate is required: servers refuse cars without one")
	case c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("car backoff: minimum %v exceeds maximum %v", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// Message is one record as a car sends it.
type Message struct {
	// Topic is V, alerts or errors.
	Topic telemetry.Topic
	// TxID and MessageID identify the record; the acknowledgement echoes
	// TxID. A resend keeps both.
	TxID, MessageID string
	// CreatedAt is when the car made the record.
	CreatedAt time.Time
	// Payload is the protobuf payload as first sent.
	Payload []byte
	// Data, Alerts and Errors are what Payload encodes, when the message
	// was made from them (nil in load mode).
	Data   []telemetry.Datum
	Alerts []telemetry.Alert
	Errors []telemetry.VehicleError

	frame   []byte       // the envelope to write; owned by the writer
	resent  bool         // frame is the resend form; owned by the writer
	sentAt  atomic.Int64 // last write, nanoseconds since the car's epoch
	seq     uint64       // order of Send; guarded by Car.mu from here on
	sends   int          // writes so far
	resend  bool         // the next write is a resend
	queued  bool         // in Car.queue
	settled bool         // acknowledged or rejected
}

// CarStats counts what a car did.
type CarStats struct {
	Connects      int64 // connections established
	Sent          int64 // records handed to Send
	Written       int64 // frames written, resends included
	Resent        int64 // frames written again
	Acked         int64 // records acknowledged
	Rejected      int64 // records answered with the protocol's error response
	UnmatchedAcks int64 // responses whose txid matched no waiting record
	Pings         int64 // pings answered
}

type carCounters struct {
	connects, sent, written, resent, acked, rejected, unmatched, pings atomic.Int64
}

// Car is one simulated vehicle. Send, Flush and the accessors may be called
// from any goroutine; Run keeps the connection.
type Car struct {
	cfg      CarConfig
	log      *slog.Logger
	senderID []byte
	epoch    time.Time
	window   chan struct{} // one token per unacknowledged record; nil: no limit
	wake     chan struct{} // tells the writer there is something to write
	stats    carCounters

	mu      sync.Mutex
	seq     uint64
	pending map[string]*Message // sent, not yet acknowledged, by txid
	queue   []*Message          // to write, in order
	drained chan struct{}       // closed when pending empties; nil unless awaited
	up      chan struct{}       // closed while connected
	running bool
	lastErr error // why the last connection attempt or connection failed
}

// NewCar returns a car for cfg; it connects once Run is called.
func NewCar(cfg CarConfig) (*Car, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Car{
		cfg:      cfg,
		log:      cfg.Log.With("vin", cfg.VIN),
		senderID: []byte(DeviceType + "." + cfg.VIN),
		epoch:    time.Now(),
		wake:     make(chan struct{}, 1),
		pending:  make(map[string]*Message),
		up:       make(chan struct{}),
	}
	if cfg.Window > 0 {
		c.window = make(chan struct{}, cfg.Window)
	}
	return c, nil
}

// VIN returns the car's VIN.
func (c *Car) VIN() string { return c.cfg.VIN }

// Stats returns a snapshot of the car's counters.
func (c *Car) Stats() CarStats {
	s := &c.stats
	return CarStats{
		Connects: s.connects.Load(), Sent: s.sent.Load(), Written: s.written.Load(),
		Resent: s.resent.Load(), Acked: s.acked.Load(), Rejected: s.rejected.Load(),
		UnmatchedAcks: s.unmatched.Load(), Pings: s.pings.Load(),
	}
}

// Pending returns how many records wait for their acknowledgement.
func (c *Car) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Connected reports whether the car is connected now.
func (c *Car) Connected() bool {
	c.mu.Lock()
	ch := c.up
	c.mu.Unlock()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// WaitConnected waits until the car is connected or ctx ends.
func (c *Car) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ch := c.up
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err returns why the last connection attempt, or the last connection,
// failed; nil before any failure.
func (c *Car) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Flush waits until every record sent so far is acknowledged (or
// rejected), or ctx ends.
func (c *Car) Flush(ctx context.Context) error {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	ch := c.drained
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SendData encodes data as a V record made now and sends it.
func (c *Car) SendData(ctx context.Context, data []telemetry.Datum) (*Message, error) {
	now := time.Now()
	payload, err := EncodeData(c.cfg.VIN, now, data, c.cfg.LegacyStrings)
	if err != nil {
		return nil, err
	}
	m := c.NewMessage(telemetry.TopicV, payload, now)
	m.Data = data
	return m, c.Send(ctx, m)
}

// SendAlerts encodes alerts as an alerts record made now and sends it.
func (c *Car) SendAlerts(ctx context.Context, alerts []telemetry.Alert) (*Message, error) {
	now := time.Now()
	payload, err := EncodeAlerts(c.cfg.VIN, now, alerts)
	if err != nil {
		return nil, err
	}
	m := c.NewMessage(telemetry.TopicAlerts, payload, now)
	m.Alerts = alerts
	return m, c.Send(ctx, m)
}

// SendErrors encodes errs as an errors record made now and sends it.
func (c *Car) SendErrors(ctx context.Context, errs []telemetry.VehicleError) (*Message, error) {
	now := time.Now()
	payload, err := EncodeErrors(c.cfg.VIN, now, errs)
	if err != nil {
		return nil, err
	}
	m := c.NewMessage(telemetry.TopicErrors, payload, now)
	m.Errors = errs
	return m, c.Send(ctx, m)
}

// NewMessage wraps a protobuf payload of topic in the envelope this car
// sends, with a fresh random txid and message id.
func (c *Car) NewMessage(topic telemetry.Topic, payload []byte, createdAt time.Time) *Message {
	m := &Message{Topic: topic, TxID: uuid.New(), MessageID: uuid.New(), CreatedAt: createdAt, Payload: payload}
	m.frame = c.appendFrame(nil, m, payload)
	return m
}

// appendFrame appends the envelope of m around payload.
func (c *Car) appendFrame(dst []byte, m *Message, payload []byte) []byte {
	return envelope.AppendFrame(dst, envelope.Frame{
		TxID:      []byte(m.TxID),
		Topic:     []byte(m.Topic),
		MessageID: []byte(m.MessageID),
		Type:      envelope.TypeStream,
		Stream: envelope.Stream{
			CreatedAt:  uint32(m.CreatedAt.Unix()),
			SenderID:   c.senderID,
			Payload:    payload,
			DeviceType: []byte(DeviceType),
			DeviceID:   []byte(c.cfg.VIN),
		},
	})
}

// Send queues m, made by NewMessage and not sent before, for writing and
// returns without waiting for its acknowledgement; it blocks while the
// window of unacknowledged records is full. The car keeps m until it is
// acknowledged, across reconnects.
func (c *Car) Send(ctx context.Context, m *Message) error {
	if c.window != nil {
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	if _, dup := c.pending[m.TxID]; dup {
		c.mu.Unlock()
		c.release()
		return fmt.Errorf("send %s: %w", m.TxID, ErrDuplicateTxID)
	}
	c.seq++
	m.seq = c.seq
	m.queued = true
	c.pending[m.TxID] = m
	c.queue = append(c.queue, m)
	c.mu.Unlock()
	c.stats.sent.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// release gives back one window token.
func (c *Car) release() {
	if c.window != nil {
		<-c.window
	}
}

// Run connects the car and keeps it connected, reconnecting with backoff,
// until ctx ends; then it closes the connection cleanly and returns nil.
// Records still unacknowledged stay with the car and are sent again by the
// next Run. Run returns ErrRunning if the car is running already.
func (c *Car) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return ErrRunning
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		ws, err := c.dial(ctx)
		if err == nil {
			started, acked := time.Now(), c.stats.acked.Load()
			err = c.session(ctx, ws)
			if c.stats.acked.Load() > acked || time.Since(started) > c.cfg.MaxBackoff {
				backoff = c.cfg.MinBackoff
			}
		}
		if ctx.Err() != nil {
			break
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		wait := jitter(backoff)
		c.log.Warn("vehicle connection failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			break
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
	return nil
}

// dial opens the WebSocket as a car does: TLS with the client
// certificate, the upgrade headers, no subprotocol, no compression.
func (c *Car) dial(ctx context.Context) (*websocket.Conn, error) {
	d := websocket.Dialer{
		TLSClientConfig:  c.cfg.TLS,
		HandshakeTimeout: c.cfg.HandshakeTimeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  2048,
	}
	// Set directly, not with Header.Set, so that the names go out spelt as
	// a car spells them.
	h := http.Header{}
	h["X-TXID"] = []string{uuid.New()}
	h["X-Network-Interface"] = []string{c.cfg.NetworkInterface}
	h["Version"] = []string{c.cfg.Version}
	ws, resp, err := d.DialContext(ctx, c.cfg.URL, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("connect %s: %w (%s: %s)", c.cfg.URL, err, resp.Status, trimBody(body))
		}
		return nil, fmt.Errorf("connect %s: %w", c.cfg.URL, err)
	}
	return ws, nil
}

func trimBody(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// session runs one connection: it writes queued records, reads responses
// and resends overdue records until the connection fails (the error is
// returned) or ctx ends (nil).
func (c *Car) session(ctx context.Context, ws *websocket.Conn) error {
	defer ws.Close()
	c.stats.connects.Add(1)
	c.requeueAll()
	c.setUp(true)
	defer c.setUp(false)
	c.log.Info("vehicle connected", "url", c.cfg.URL, "pending", c.Pending())

	ws.SetPingHandler(func(data string) error {
		c.stats.pings.Add(1)
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop(ws) }()

	var overdue <-chan time.Time
	if c.cfg.AckTimeout > 0 {
		t := time.NewTicker(max(c.cfg.AckTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		overdue = t.C
	}
	for {
		if err := c.writeQueued(ws); err != nil {
			ws.Close()
			<-readErr
			return err
		}
		select {
		case <-ctx.Done():
			c.closeSession(ws, readErr)
			return nil
		case err := <-readErr:
			return err
		case <-c.wake:
		case <-overdue:
			c.requeueOverdue()
		}
	}
}

// closeSession ends the connection with a close handshake, waiting a
// moment for the server's answer (and the acknowledgements before it).
func (c *Car) closeSession(ws *websocket.Conn, readErr <-chan error) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err == nil {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-readErr:
			return
		case <-t.C:
		}
	}
	ws.Close()
	<-readErr
}

func (c *Car) setUp(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if up {
		close(c.up)
	} else {
		c.up = make(chan struct{})
	}
}

// writeQueued writes every queued record.
func (c *Car) writeQueued(ws *websocket.Conn) error {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return nil
		}
		m := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		m.queued = false
		if m.settled {
			c.mu.Unlock()
			continue
		}
		resend := m.resend
		m.sends++
		m.sentAt.Store(int64(time.Since(c.epoch)))
		c.mu.Unlock()

		if resend && !m.resent {
			payload := m.Payload
			if m.Topic == telemetry.TopicV {
				payload = markResend(payload)
			}
			m.frame = c.appendFrame(m.frame[:0], m, payload)
			m.resent = true
		}
		// Counted before the write: its acknowledgement may be read before
		// WriteMessage returns.
		c.stats.written.Add(1)
		if resend {
			c.stats.resent.Add(1)
		}
		_ = ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		if err := ws.WriteMessage(websocket.BinaryMessage, m.frame); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
	}
}

// requeueAll queues every unacknowledged record again, in the order they
// were sent, at the start of a connection; those written before are marked
// as resends.
func (c *Car) requeueAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.queue)
	c.queue = c.queue[:0]
	for _, m := range c.pending {
		m.queued = true
		if m.sends > 0 {
			m.resend = true
		}
		c.queue = append(c.queue, m)
	}
	slices.SortFunc(c.queue, func(a, b *Message) int { return cmp.Compare(a.seq, b.seq) })
}

// requeueOverdue queues the records whose acknowledgement is overdue.
func (c *Car) requeueOverdue() {
	now := int64(time.Since(c.epoch))
	limit := int64(c.cfg.AckTimeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	start := len(c.queue)
	for _, m := range c.pending {
		if !m.queued && m.sends > 0 && now-m.sentAt.Load() >= limit {
			m.queued = true
			m.resend = true
			c.queue = append(c.queue, m)
		}
	}
	if len(c.queue) > start+1 {
		slices.SortFunc(c.queue[start:], func(a, b *Message) int { return cmp.Compare(a.seq, b.seq) })
	}
}

// readLoop reads the server's responses until the connection fails.
func (c *Car) readLoop(ws *websocket.Conn) error {
	buf := make([]byte, 0, 512)
	for {
		kind, r, err := ws.NextReader()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				return fmt.Errorf("%w: %w", ErrClosedByServer, err)
			}
			return fmt.Errorf("read response: %w", err)
		}
		buf, err = readAll(r, buf[:0])
		if err != nil {
			return fmt.Errorf("read response: %w", err)
		}
		if kind != websocket.BinaryMessage {
			c.log.Warn("server sent a text frame; ignored", "size", len(buf))
			continue
		}
		c.handleResponse(buf)
	}
}

// readAll appends everything r holds to buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// handleResponse settles the record a response names: an acknowledgement
// (StreamAck) or the protocol's error response (a Stream whose payload
// says what was wrong).
func (c *Car) handleResponse(frame []byte) {
	f, err := envelope.Parse(frame)
	if err != nil {
		c.stats.unmatched.Add(1)
		c.log.Warn("unreadable response from server", "err", err, "size", len(frame))
		return
	}
	now := int64(time.Since(c.epoch))
	var drained chan struct{}
	c.mu.Lock()
	m, ok := c.pending[string(f.TxID)]
	if ok {
		delete(c.pending, m.TxID)
		m.settled = true
		if len(c.pending) == 0 {
			drained, c.drained = c.drained, nil
		}
	}
	c.mu.Unlock()
	if !ok {
		c.stats.unmatched.Add(1)
		c.log.Debug("response matches no waiting record", "txid", string(f.TxID), "type", f.Type)
		return
	}
	// Flush returns once the callbacks have run and the counters moved.
	if drained != nil {
		defer close(drained)
	}
	c.release()
	if f.Type != envelope.TypeStreamAck {
		c.stats.rejected.Add(1)
		reason := string(f.Stream.Payload)
		c.log.Warn("server refused a record", "txid", m.TxID, "topic", m.Topic, "reason", reason)
		if c.cfg.OnReject != nil {
			c.cfg.OnReject(m, reason)
		}
		return
	}
	c.stats.acked.Add(1)
	if c.cfg.OnAck != nil {
		c.cfg.OnAck(m, time.Duration(now-m.sentAt.Load()))
	}
}

// jitter spreads d by ±20% so that many cars do not reconnect in step.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((mrand.Float64()*0.4-0.2)*float64(d))
}

// sleep waits for d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
