//go:build hardening

package hardening

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// markerField carries each record's marker: every record a car sends has
// a VehicleName of its own ("r0000042"), so that a subscriber can tell
// exactly which acknowledged records it received.
const markerField = "VehicleName"

// otherFields fill records up to the configured number of signals, of
// mixed kinds.
var otherFields = []string{"Soc", "Odometer", "Gear", "Locked", "InsideTemp", "OutsideTemp",
	"ChargeLimitSoc", "VehicleSpeed", "EstBatteryRange", "SentryMode"}

// marker is the VehicleName of record seq.
func marker(seq int) string { return fmt.Sprintf("r%07d", seq) }

// markerSeq reads a marker back; -1 if it is not one.
func markerSeq(s string) int {
	if len(s) != 8 || s[0] != 'r' {
		return -1
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil {
		return -1
	}
	return n
}

// ledger is what the cars know: which records the server acknowledged.
type ledger struct {
	mu        sync.Mutex
	acked     map[string]int // "VIN/marker" → acknowledgements
	lastAcked map[string]int // VIN → highest record acknowledged
	rejected  int
}

func newLedger() *ledger {
	return &ledger{acked: map[string]int{}, lastAcked: map[string]int{}}
}

func (l *ledger) ack(vin string, m *simulate.Message) {
	if len(m.Data) == 0 {
		return
	}
	mk := m.Data[0].Value.Str()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[vin+"/"+mk]++
	if seq := markerSeq(mk); seq > l.lastAcked[vin] {
		l.lastAcked[vin] = seq
	}
}

func (l *ledger) reject() {
	l.mu.Lock()
	l.rejected++
	l.mu.Unlock()
}

// snapshot returns the records acknowledged so far.
func (l *ledger) snapshot() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.acked))
	for k := range l.acked {
		out[k] = true
	}
	return out
}

// count returns how many records were acknowledged.
func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// last returns the highest record acknowledged per car.
func (l *ledger) last() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.lastAcked))
	for k, v := range l.lastAcked {
		out[k] = v
	}
	return out
}

// poolConfig describes a pool of simulated cars.
type poolConfig struct {
	URL        string
	TLS        *tls.Config
	IDs        []simulate.Identity
	Fields     int           // signals per record (at least 1: the marker)
	AckTimeout time.Duration // resend on the same connection after this
	MaxBackoff time.Duration
	// ConnectLimit bounds TLS handshakes under way while the pool connects.
	ConnectLimit int
	// Window is how many records a car keeps unacknowledged at most
	// (simulate's default when 0).
	Window int
}

// pool is many simulated cars streaming numbered records.
type pool struct {
	t      *testing.T
	cfg    poolConfig
	cars   []*simulate.Car
	next   []atomic.Int64 // next record number, per car
	fields []telemetry.Field
	led    *ledger

	runCtx    context.Context
	runCancel context.CancelFunc
	running   sync.WaitGroup
	senders   sync.WaitGroup
}

func newPool(t *testing.T, cfg poolConfig) *pool {
	t.Helper()
	cfg.Fields = max(cfg.Fields, 1)
	cfg.ConnectLimit = max(cfg.ConnectLimit, 1)
	p := &pool{t: t, cfg: cfg, led: newLedger(), next: make([]atomic.Int64, len(cfg.IDs))}
	for _, name := range append([]string{markerField}, otherFields...)[:min(cfg.Fields, 1+len(otherFields))] {
		f, ok := telemetry.FieldByName(name)
		if !ok {
			t.Fatalf("no field %s in the catalog", name)
		}
		p.fields = append(p.fields, f)
	}
	for _, id := range cfg.IDs {
		vin := id.VIN
		car, err := simulate.NewCar(simulate.CarConfigFor(simulate.CarConfig{
			URL:        cfg.URL,
			TLS:        cfg.TLS,
			AckTimeout: cfg.AckTimeout,
			Window:     cfg.Window,
			MinBackoff: 100 * time.Millisecond,
			MaxBackoff: max(cfg.MaxBackoff, 100*time.Millisecond),
			OnAck:      func(m *simulate.Message, _ time.Duration) { p.led.ack(vin, m) },
			OnReject:   func(*simulate.Message, string) { p.led.reject() },
		}, id))
		if err != nil {
			t.Fatal(err)
		}
		p.cars = append(p.cars, car)
	}
	p.runCtx, p.runCancel = context.WithCancel(context.Background())
	t.Cleanup(p.stop)
	return p
}

// connect starts every car and waits until all are connected, at most
// ConnectLimit handshakes at a time.
func (p *pool) connect(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sem := make(chan struct{}, p.cfg.ConnectLimit)
	var failed atomic.Pointer[simulate.Car]
	var wg sync.WaitGroup
	for _, c := range p.cars {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("cars connecting: %w", ctx.Err())
		}
		p.running.Go(func() { _ = c.Run(p.runCtx) })
		wg.Go(func() {
			defer func() { <-sem }()
			if c.WaitConnected(ctx) != nil {
				failed.CompareAndSwap(nil, c)
			}
		})
	}
	wg.Wait()
	if c := failed.Load(); c != nil {
		return fmt.Errorf("car %s did not connect within %v: %v", c.VIN(), timeout, c.Err())
	}
	return nil
}

// record builds the data of record seq of car i.
func (p *pool) record(i, seq int) []telemetry.Datum {
	data := make([]telemetry.Datum, len(p.fields))
	for k, f := range p.fields {
		info, _ := telemetry.Lookup(f)
		var v telemetry.Value
		switch {
		case k == 0:
			v = telemetry.StringValue(marker(seq))
		case info.Kind == telemetry.KindBool:
			v = telemetry.BoolValue(seq%2 == 1)
		case info.Kind == telemetry.KindEnum:
			v = telemetry.EnumOf(info.Enum, info.Enum.Values[1+seq%(len(info.Enum.Values)-1)])
		case info.Kind == telemetry.KindInt:
			v = telemetry.IntValue(int64(seq%100 + i%7))
		default:
			v = telemetry.FloatValue(float64(seq%1000)/4 + float64(i%100)/100)
		}
		data[k] = telemetry.Datum{Field: f, Value: v}
	}
	return data
}

// stream makes every car send records, one every interval (spread over
// the interval), until each has sent n (n < 0: until ctx ends). It returns
// at once; wait waits for the senders.
func (p *pool) stream(ctx context.Context, interval time.Duration, n int) {
	for i, c := range p.cars {
		p.senders.Go(func() {
			if interval > 0 && !sleepCtx(ctx, time.Duration(mrand.Int64N(int64(interval)))) {
				return
			}
			for sent := 0; n < 0 || sent < n; sent++ {
				seq := int(p.next[i].Load()) + 1 // one sender per car
				if _, err := c.SendData(ctx, p.record(i, seq)); err != nil {
					if ctx.Err() == nil {
						p.t.Logf("car %s stops sending: %v", c.VIN(), err)
					}
					return
				}
				p.next[i].Store(int64(seq))
				if !sleepCtx(ctx, interval) {
					return
				}
			}
		})
	}
}

// wait waits until the senders have stopped.
func (p *pool) wait() { p.senders.Wait() }

// flush waits until every record sent is acknowledged; it returns the
// number of cars that still wait for acknowledgements.
func (p *pool) flush(timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var mu sync.Mutex
	left := 0
	var wg sync.WaitGroup
	for _, c := range p.cars {
		wg.Go(func() {
			if c.Flush(ctx) != nil {
				mu.Lock()
				left++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return left
}

// connected counts the cars connected now.
func (p *pool) connected() int {
	n := 0
	for _, c := range p.cars {
		if c.Connected() {
			n++
		}
	}
	return n
}

// stats sums the cars' counters.
func (p *pool) stats() simulate.CarStats {
	var s simulate.CarStats
	for _, c := range p.cars {
		cs := c.Stats()
		s.Connects += cs.Connects
		s.Sent += cs.Sent
		s.Written += cs.Written
		s.Resent += cs.Resent
		s.Acked += cs.Acked
		s.Rejected += cs.Rejected
		s.UnmatchedAcks += cs.UnmatchedAcks
	}
	return s
}

// stop ends the senders and disconnects every car cleanly.
func (p *pool) stop() {
	p.runCancel()
	p.senders.Wait()
	p.running.Wait()
}

// sent returns the number of the last record each car sent.
func (p *pool) sent() map[string]int {
	out := make(map[string]int, len(p.cars))
	for i, c := range p.cars {
		out[c.VIN()] = int(p.next[i].Load())
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
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

// subscriber is an MQTT 5 client at QoS 1 that keeps what it receives
// under the vehicle prefix: the record markers, message counts by kind,
// the retained messages it got at subscription and the last payload per
// topic.
type subscriber struct {
	name string
	cm   *autopaho.ConnectionManager
	stop context.CancelFunc
	// proc is mosquitto_sub, when the subscriber is a process of its own.
	proc     *exec.Cmd
	procDone chan struct{}

	subscribed chan struct{}
	once       sync.Once

	mu       sync.Mutex
	markers  map[string]int   // "VIN/marker" of live messages → deliveries
	byName   map[string]int64 // live messages on tesla/<VIN>/<name>, by name
	states   int64            // live messages on tesla/<VIN>/state
	conns    int64            // live messages on tesla/<VIN>/connected
	retained map[string]string
	last     map[string]string
	total    atomic.Int64
	lastAt   atomic.Int64
}

// subOptions say how a subscriber connects.
type subOptions struct {
	ClientID string
	// Persistent keeps the session on the broker across disconnections
	// (clean start off, an hour of session expiry), so that messages
	// published while it reconnects wait for it.
	Persistent         bool
	Username, Password string
	Filter             string // default tesla/#
}

// subscribe connects a subscriber to the broker at addr and waits until
// its subscription is in place.
func subscribe(t *testing.T, addr string, o subOptions) *subscriber {
	t.Helper()
	s, err := dialSubscriber(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

func dialSubscriber(addr string, o subOptions) (*subscriber, error) {
	if o.Filter == "" {
		o.Filter = "tesla/#"
	}
	if o.ClientID == "" {
		o.ClientID = "hardening-sub-" + strconv.Itoa(int(mrand.Int32()))
	}
	s := &subscriber{
		name:       o.ClientID,
		subscribed: make(chan struct{}),
		markers:    map[string]int{},
		byName:     map[string]int64{},
		retained:   map[string]string{},
		last:       map[string]string{},
	}
	u, err := url.Parse("mqtt://" + addr)
	if err != nil {
		return nil, err
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     20,
		CleanStartOnInitialConnection: !o.Persistent,
		ConnectTimeout:                5 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(200 * time.Millisecond),
		ConnectUsername:               o.Username,
		ConnectPassword:               []byte(o.Password),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: o.Filter, QoS: 1}}}); err == nil {
				s.once.Do(func() { close(s.subscribed) })
			}
		},
		OnConnectError: func(error) {},
		ClientConfig: paho.ClientConfig{
			ClientID:          o.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.receive},
			OnClientError:     func(error) {},
		},
	}
	if o.Persistent {
		cfg.SessionExpiryInterval = 3600
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s.cm, s.stop = cm, cancel
	select {
	case <-s.subscribed:
		s.lastAt.Store(time.Now().UnixNano()) // settle counts quiet from here
		return s, nil
	case <-time.After(20 * time.Second):
		cancel()
		return nil, fmt.Errorf("subscriber %s: not subscribed to %s at %s after 20s", o.ClientID, o.Filter, addr)
	}
}

func (s *subscriber) receive(pr paho.PublishReceived) (bool, error) {
	s.count(pr.Packet.Topic, string(pr.Packet.Payload), pr.Packet.Retain)
	return true, nil
}

// count keeps one message.
func (s *subscriber) count(topic, payload string, retain bool) {
	s.total.Add(1)
	s.lastAt.Store(time.Now().UnixNano())
	vin, rest := "", ""
	if parts := strings.SplitN(topic, "/", 3); len(parts) == 3 {
		vin, rest = parts[1], parts[2]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[topic] = payload
	if retain {
		s.retained[topic] = payload
		return
	}
	switch {
	case vin == "" || vin == "bridge":
	case rest == "state":
		s.states++
	case rest == "connected":
		s.conns++
	case strings.Contains(rest, "/"):
	default:
		s.byName[rest]++
		if rest == markerField {
			s.markers[vin+"/"+payload]++
		}
	}
}

// settle waits until no message arrived for quiet (or timeout passed).
func (s *subscriber) settle(quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last := time.Unix(0, s.lastAt.Load())
		if time.Since(last) >= quiet {
			return
		}
		time.Sleep(quiet / 5)
	}
}

// missing returns the acknowledged records this subscriber did not get,
// and how many it got more than once.
func (s *subscriber) missing(acked map[string]bool) (missing []string, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range acked {
		switch n := s.markers[k]; {
		case n == 0:
			missing = append(missing, k)
		case n > 1:
			dups += n - 1
		}
	}
	return missing, dups
}

// lastPayload returns the last payload seen on topic.
func (s *subscriber) lastPayload(topic string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.last[topic]
	return p, ok
}

// counts returns the live messages on the signal topics of fields, on
// the state topics and on the connected topics.
func (s *subscriber) counts(fields []telemetry.Field) (signals, states, conns int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fields {
		info, _ := telemetry.Lookup(f)
		signals += s.byName[info.Name]
	}
	return signals, s.states, s.conns
}

func (s *subscriber) close() {
	if s.proc != nil {
		_ = s.proc.Process.Kill()
		<-s.procDone
		return
	}
	if s.cm == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.cm.Disconnect(ctx)
	s.stop()
}

// gate is a TCP proxy in front of the vehicle listener: open, it passes
// connections through; closed, it refuses them and cuts those it carries,
// as a network outage would. The cars dial the gate, so that a test
// decides when they can reach the server.
type gate struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	open  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, open: true, conns: map[net.Conn]struct{}{}}
	g.wg.Go(g.serve)
	t.Cleanup(func() {
		ln.Close()
		g.setOpen(false)
		g.wg.Wait()
	})
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		if !open {
			c.Close()
			continue
		}
		g.wg.Go(func() { g.pipe(c) })
	}
}

func (g *gate) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", g.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	g.mu.Lock()
	if !g.open {
		g.mu.Unlock()
		return
	}
	g.conns[c], g.conns[up] = struct{}{}, struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		delete(g.conns, up)
		g.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// setOpen opens or closes the gate; closing cuts every connection.
func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
	if !open {
		for c := range g.conns {
			c.Close()
		}
	}
}

// subscribeProcess subscribes to tesla/# at QoS 1 with mosquitto_sub, a
// process of its own: under heavy load a subscriber inside the test
// process, which also runs the cars, may fall behind, and the embedded
// broker drops messages for a subscriber that reads too slowly (as it
// documents). Without mosquitto_sub it falls back to subscribe.
func subscribeProcess(t *testing.T, addr string) *subscriber {
	t.Helper()
	return subscribeProcessQoS(t, addr, 1)
}

// subscribeProcessQoS is subscribeProcess at the given QoS (0 or 1).
func subscribeProcessQoS(t *testing.T, addr string, qos int) *subscriber {
	t.Helper()

	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Logf("no mosquitto_sub (Debian package mosquitto-clients): subscribing in-process")
		return subscribe(t, addr, subOptions{})
	}
	host, port, _ := net.SplitHostPort(addr)
	id := "hardening-sub-" + strconv.Itoa(int(mrand.Int32()))
	cmd := exec.Command(bin, "-h", host, "-p", port, "-V", "mqttv5", "-i", id, "-q", strconv.Itoa(qos), "-v", "-R",
		"-t", "tesla/#", "-t", "hardening/probe")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{name: id, proc: cmd, procDone: make(chan struct{}), subscribed: make(chan struct{}),
		markers: map[string]int{}, byName: map[string]int64{}, retained: map[string]string{}, last: map[string]string{}}
	go func() {
		defer close(s.procDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), " ")
			if topic == "hardening/probe" {
				s.once.Do(func() { close(s.subscribed) })
				continue
			}
			s.count(topic, payload, false)
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(s.close)
	// Ready once a probe published now comes back.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := publishRetained(addr, "hardening/probe", "probe"); err != nil {
			t.Fatalf("probe the subscriber: %v", err)
		}
		select {
		case <-s.subscribed:
			s.lastAt.Store(time.Now().UnixNano())
			return s
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("mosquitto_sub did not subscribe within 20 s")
		}
	}
}
