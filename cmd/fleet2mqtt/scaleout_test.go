package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// scaleWait bounds every wait of the scale-out test; it fails a test that
// hangs and measures nothing.
const scaleWait = 30 * time.Second

// TestScaleOut is the scale-out proof of docs/scaling.md: two replicas of
// fleet2mqtt on one mosquitto, six simulated cars spread across them by a
// TCP load balancer, and a QoS 1 subscriber that sees everything.
//
//  1. Both replicas run: every record acknowledged to a car is delivered
//     exactly once; every car is announced to Home Assistant; each
//     replica's state is its own and online, and so is tesla/bridge/state.
//  2. Replica a stops cleanly while the cars stream: its state reads
//     offline, b's and tesla/bridge/state stay online; a's cars reconnect
//     to b, resend what a had not acknowledged, and stream on; b
//     announces them with exactly the configs a had published.
//  3. a starts again, and b dies while the cars stream: its connections
//     (to the broker and to the cars) are cut without a goodbye, so the
//     broker publishes its last will. Its state reads offline, a's and
//     tesla/bridge/state stay online; the cars resend to a what b had not
//     acknowledged.
//  4. a stops too: it is the last one, so tesla/bridge/state reads
//     offline.
//
// Every acknowledged record reaches the subscriber; one that arrives twice
// must be explained by the car resending it. Throughout, no discovery
// config removes an entity, every config of a
// car is the same bytes whichever replica published it, and Home
// Assistant's availability topic never reads offline while a replica
// runs. A replica's death is simulated in-process by cutting its TCP
// connections; the process itself is not killed.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a broker, two replicas and six cars")
	}
	broker := testenv.Mosquitto(t, testenv.WithConfig("max_queued_messages 0", "max_inflight_messages 1000"))
	sub := watchBroker(t, broker.Addr, "tesla/+/Odometer", "tesla/bridge/#", "homeassistant/device/+/config")

	pkiDir := filepath.Join(t.TempDir(), "pki")
	runDevCertsOK(t, "--out", pkiDir)
	pki, err := certs.LoadDir(pkiDir)
	if err != nil {
		t.Fatal(err)
	}

	// b reaches the broker through a proxy, so that its death can be
	// played by cutting the connection.
	bLink := newBalancer(t, broker.Addr)
	a := startReplica(t, "a", broker.URL(), pkiDir, t.TempDir())
	b := startReplica(t, "b", "mqtt://"+bLink.addr(), pkiDir, t.TempDir())
	lb := newBalancer(t, a.vehicleAddr, b.vehicleAddr)
	for _, topic := range []string{"tesla/bridge/a/state", "tesla/bridge/b/state", "tesla/bridge/state"} {
		sub.waitLast(t, topic, "online")
	}

	// 1. Six cars, one at a time, so that round robin alternates them.
	fl := newFleet(t, lb.addr(), pki, 6)
	var onA, onB []*simulate.Car
	for i, c := range fl.cars {
		if i%2 == 0 {
			onA = append(onA, c)
		} else {
			onB = append(onB, c)
		}
	}
	a.waitMetric(t, "fleet2mqtt_vehicles_connected", 3)
	b.waitMetric(t, "fleet2mqtt_vehicles_connected", 3)
	fl.stream(t, fl.cars, 10, true)
	fl.checkDelivery(t, sub, true)
	configs := make(map[string]string) // VIN → the config first announced
	for _, c := range fl.cars {
		p := sub.waitFor(t, discovery.Topic(discovery.DefaultConfig(), c.VIN()), func(p string) bool { return p != "" })
		if !strings.Contains(p, `"availability":[{"topic":"tesla/bridge/state","payload_available":"online","payload_not_available":"offline"}]`) {
			t.Errorf("%s: availability is not tesla/bridge/state: %s", c.VIN(), p)
		}
		comps, err := discovery.ParseAnnounced([]byte(p))
		if err != nil || !hasKeys(comps, "Odometer", "Soc", "Gear", "Locked", "VehicleName", "streaming", "alerts") {
			t.Errorf("%s: components %v (%v)", c.VIN(), comps, err)
		}
		configs[c.VIN()] = p
	}
	for _, r := range []*replica{a, b} {
		if got := r.metric(t, "fleet2mqtt_mqtt_queue_capacity"); got != 10000 {
			t.Errorf("replica %s: queue capacity %v, want 10000", r.name, got)
		}
		r.waitMetric(t, "fleet2mqtt_mqtt_queue_depth", 0) // every record acknowledged
	}

	// 2. a stops cleanly while the cars stream; its cars move to b.
	mark := sub.mark()
	fl.send(t, fl.cars, 10, false)
	a.stop(t)
	sub.waitLast(t, "tesla/bridge/a/state", "offline")
	b.waitMetric(t, "fleet2mqtt_vehicles_connected", 6)
	fl.stream(t, fl.cars, 10, false)
	fl.checkDelivery(t, sub, false)
	for _, c := range onA { // b announces them once it has seen them
		sub.waitAfter(t, mark, discovery.Topic(discovery.DefaultConfig(), c.VIN()), func(string) bool { return true })
	}
	if got := sub.last("tesla/bridge/b/state"); got != "online" {
		t.Errorf("b's state after a stopped: %q", got)
	}

	// 3. a starts again; b dies.
	mark = sub.mark()
	a = startReplica(t, "a", broker.URL(), pkiDir, a.cfg.DataDir)
	lb.setBackend(0, a.vehicleAddr)
	sub.waitAfter(t, mark, "tesla/bridge/a/state", func(p string) bool { return p == "online" })
	mark = sub.mark()
	fl.send(t, fl.cars, 10, false)
	bLink.cut(0)
	lb.cut(1)
	sub.waitAfter(t, mark, "tesla/bridge/b/state", func(p string) bool { return p == "offline" })
	a.waitMetric(t, "fleet2mqtt_vehicles_connected", 6)
	fl.stream(t, fl.cars, 10, false)
	fl.checkDelivery(t, sub, false)
	for _, c := range onB { // a announces the cars it had not seen
		sub.waitAfter(t, mark, discovery.Topic(discovery.DefaultConfig(), c.VIN()), func(string) bool { return true })
	}
	if got := sub.last("tesla/bridge/a/state"); got != "online" {
		t.Errorf("a's state after b died: %q", got)
	}

	// Home Assistant's view: availability never read offline so far, and
	// every car's configs are the same bytes, none removing anything.
	if said := sub.all("tesla/bridge/state"); slices.Contains(said, "offline") {
		t.Errorf("tesla/bridge/state read offline while a replica ran: %v", said)
	}
	for _, c := range fl.cars {
		topic := discovery.Topic(discovery.DefaultConfig(), c.VIN())
		all := sub.all(topic)
		for i, p := range all {
			if p != configs[c.VIN()] {
				t.Errorf("%s: config %d of %d differs from the first:\n got %s\nwant %s", c.VIN(), i+1, len(all), p, configs[c.VIN()])
			}
		}
		if len(all) < 2 {
			t.Errorf("%s: announced %d times, want once by each replica that served it", c.VIN(), len(all))
		}
	}

	// 4. a stops: the last one out says offline for fleet2mqtt.
	a.stop(t)
	sub.waitLast(t, "tesla/bridge/a/state", "offline")
	sub.waitLast(t, "tesla/bridge/state", "offline")

	st := fl.stats()
	t.Logf("%d cars, %d records acknowledged, %d delivered more than once, %d frames resent by the cars, %d reconnections",
		len(fl.cars), st.acked, fl.dups(sub), st.resent, st.connects-int64(len(fl.cars)))

	// b, which only lost its connections, may stop now.
	bLink.restore(0)
	b.stop(t)
}

// TestScaleOutBirth: Home Assistant restarts (its birth message) while a
// car that moved from replica b to replica a streams to a. b, which still
// runs and still knows the car's older values, does not republish them:
// after the birth the car's topics carry its latest values, from a.
func TestScaleOutBirth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a broker, two replicas and two cars")
	}
	broker := testenv.Mosquitto(t)
	sub := watchBroker(t, broker.Addr, "tesla/+/Odometer", "homeassistant/device/+/config")
	pkiDir := filepath.Join(t.TempDir(), "pki")
	runDevCertsOK(t, "--out", pkiDir)
	pki, err := certs.LoadDir(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, "a", broker.URL(), pkiDir, t.TempDir())
	b := startReplica(t, "b", broker.URL(), pkiDir, t.TempDir())
	ids, _, err := simulate.Identities(pki, 2)
	if err != nil {
		t.Fatal(err)
	}
	moving, stays := ids[0], ids[1] // b republishes cars in VIN order: moving before stays
	if moving.VIN >= stays.VIN {
		t.Fatalf("identities out of order: %s, %s", moving.VIN, stays.VIN)
	}
	topic := func(id simulate.Identity) string { return "tesla/" + id.VIN + "/Odometer" }
	config := func(id simulate.Identity) string { return discovery.Topic(discovery.DefaultConfig(), id.VIN) }

	var fl fleet
	m, stopMoving := fl.connect(t, b.vehicleAddr, pki, moving)
	s, _ := fl.connect(t, b.vehicleAddr, pki, stays)
	fl.stream(t, []*simulate.Car{m, s}, 3, true) // markers 1 to 3
	sub.waitFor(t, config(moving), func(p string) bool { return p != "" })
	mark := sub.mark()
	stopMoving()
	m, _ = fl.connect(t, a.vehicleAddr, pki, moving)
	fl.stream(t, []*simulate.Car{m}, 3, false)                                // markers 4 to 6, on a
	sub.waitAfter(t, mark, config(moving), func(string) bool { return true }) // a has announced it

	mark = sub.mark()
	publishOnce(t, broker.Addr, "homeassistant/status", "online")
	// b's values of stays come after any of moving; a's of moving follow.
	sub.waitAfter(t, mark, topic(stays), func(string) bool { return true })
	sub.waitAfter(t, mark, topic(moving), func(string) bool { return true })
	for _, p := range sub.after(mark, topic(moving)) {
		if p != "6" {
			t.Errorf("after the birth %s = %s, want only the latest value 6 (all: %q)", topic(moving), p, sub.after(mark, topic(moving)))
		}
	}
}

// publishOnce publishes one message as a client of its own.
func publishOnce(t *testing.T, addr, topic, payload string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "scaleout-publish", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// replica is one fleet2mqtt replica running the real serve path with an
// external broker; one named "" is a single instance.
type replica struct {
	*app
	name   string
	cancel context.CancelFunc
	log    *syncBuffer
}

func startReplica(t *testing.T, name, brokerURL, pkiDir, dataDir string) *replica {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Vehicle.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Vehicle.TLS.CertFile = filepath.Join(pkiDir, certs.ServerFile)
	cfg.Vehicle.TLS.KeyFile = filepath.Join(pkiDir, certs.ServerKeyFile)
	cfg.Vehicle.TLS.ClientCAFiles = []string{filepath.Join(pkiDir, certs.VehicleCAFile)}
	cfg.MQTT.Broker = config.BrokerExternal
	cfg.MQTT.Replica = name
	cfg.MQTT.External.URL = brokerURL
	cfg.MQTT.External.ClientID = "scaleout-" + name
	cfg.MQTT.External.ConnectTimeout = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, log: new(syncBuffer)}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := start(ctx, cfg, slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn})).With("replica", name))
	if err != nil {
		cancel()
		t.Fatalf("replica %s: %v", name, err)
	}
	r.app, r.cancel = a, cancel
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("log of replica %s:\n%s", name, r.log.String())
		}
	})
	return r
}

// stop shuts the replica down cleanly and waits until it has.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := r.wait(); err != nil {
		t.Errorf("replica %s stopped with %v", r.name, err)
	}
}

// metric reads one unlabelled metric from the replica's /metrics.
func (r *replica) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("replica %s: no metric %s", r.name, name)
	return 0
}

// waitMetric waits until a metric of the replica reads want.
func (r *replica) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	r.waitMetricFunc(t, name, fmt.Sprint(want), func(v float64) bool { return v == want })
}

// waitMetricFunc waits until a metric of the replica satisfies ok; want
// says what ok wants.
func (r *replica) waitMetricFunc(t *testing.T, name, want string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(scaleWait)
	for {
		got := r.metric(t, name)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: %s = %v, want %s", r.name, name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// balancer is a TCP load balancer in passthrough mode, as docs/scaling.md
// asks for in front of the replicas: each new connection goes to the next
// backend, in turn, that accepts it. It also plays a replica's death:
// cut drops every connection to a backend at once, without a goodbye.
type balancer struct {
	t        *testing.T
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	down     []bool
	conns    [][]net.Conn // open connections by backend, both ends
	next     int
}

func newBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{t: t, ln: ln, backends: backends, down: make([]bool, len(backends)), conns: make([][]net.Conn, len(backends))}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.forward(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for i := range b.backends {
			b.cut(i)
		}
	})
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) forward(c net.Conn) {
	for range len(b.backends) {
		b.mu.Lock()
		i := b.next % len(b.backends)
		b.next++
		addr, down := b.backends[i], b.down[i]
		b.mu.Unlock()
		if down {
			continue
		}
		s, err := net.DialTimeout("tcp", addr, scaleWait)
		if err != nil {
			continue // a stopped replica: the next one
		}
		b.mu.Lock()
		if b.down[i] {
			b.mu.Unlock()
			s.Close()
			continue
		}
		b.conns[i] = append(b.conns[i], c, s)
		b.mu.Unlock()
		go func() {
			_, _ = io.Copy(s, c)
			s.Close()
			c.Close()
		}()
		_, _ = io.Copy(c, s)
		c.Close()
		s.Close()
		return
	}
	c.Close()
}

// cut closes every connection to backend i and takes it out of turn.
func (b *balancer) cut(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = true
	for _, c := range b.conns[i] {
		c.Close()
	}
	b.conns[i] = nil
}

// restore puts backend i in turn again.
func (b *balancer) restore(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = false
}

// setBackend replaces backend i (a replica started again) and puts it in
// turn.
func (b *balancer) setBackend(i int, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends[i], b.down[i] = addr, false
}

// fleet is the simulated cars, each record marked by its Odometer value:
// 1, 2, 3, … per car.
type fleet struct {
	cars []*simulate.Car

	mu    sync.Mutex
	acked map[string]map[int]bool // VIN → markers acknowledged
	sent  map[string]int          // VIN → the last marker sent
}

func newFleet(t *testing.T, addr string, pki *certs.Bundle, n int) *fleet {
	t.Helper()
	ids, _, err := simulate.Identities(pki, n)
	if err != nil {
		t.Fatal(err)
	}
	fl := &fleet{acked: map[string]map[int]bool{}, sent: map[string]int{}}
	for _, id := range ids {
		car, _ := fl.connect(t, addr, pki, id)
		fl.cars = append(fl.cars, car)
	}
	return fl
}

// connect connects a car with identity id to the vehicle listener at addr
// and waits until it is connected; the car runs until stop is called or
// the test ends.
func (fl *fleet) connect(t *testing.T, addr string, pki *certs.Bundle, id simulate.Identity) (car *simulate.Car, stop func()) {
	t.Helper()
	cfg := simulate.CarConfigFor(simulate.CarConfig{
		URL:        "wss://" + addr + "/",
		TLS:        &tls.Config{RootCAs: pki.ServerCA.Pool(), ServerName: "127.0.0.1"},
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}, id)
	cfg.OnAck = func(m *simulate.Message, _ time.Duration) {
		for _, d := range m.Data {
			if d.Field == telemetry.FieldOdometer {
				fl.mu.Lock()
				fl.acked[id.VIN][int(d.Value.Float())] = true
				fl.mu.Unlock()
			}
		}
	}
	car, err := simulate.NewCar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fl.mu.Lock()
	if fl.acked == nil {
		fl.acked, fl.sent = map[string]map[int]bool{}, map[string]int{}
	}
	if fl.acked[id.VIN] == nil {
		fl.acked[id.VIN] = map[int]bool{}
	}
	fl.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = car.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	fl.waitConnected(t, []*simulate.Car{car})
	return car, stop
}

func (fl *fleet) waitConnected(t *testing.T, cars []*simulate.Car) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	for _, c := range cars {
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatalf("%s does not connect: %v (%v)", c.VIN(), err, c.Err())
		}
	}
}

// stream sends n records from each car and waits until all are
// acknowledged. With full, a record carries four more signals than the
// marker, the car's name among them.
func (fl *fleet) stream(t *testing.T, cars []*simulate.Car, n int, full bool) {
	t.Helper()
	fl.send(t, cars, n, full)
	fl.flush(t, cars)
}

// send hands n records of each car to it; they go out while the car
// waits for their acknowledgements.
func (fl *fleet) send(t *testing.T, cars []*simulate.Car, n int, full bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	for range n {
		for i, c := range cars {
			fl.mu.Lock()
			fl.sent[c.VIN()]++
			marker := fl.sent[c.VIN()]
			fl.mu.Unlock()
			data := []telemetry.Datum{{Field: telemetry.FieldOdometer, Value: telemetry.FloatValue(float64(marker))}}
			if full {
				data = append(data,
					telemetry.Datum{Field: telemetry.FieldSoc, Value: telemetry.FloatValue(float64(50 + i))},
					telemetry.Datum{Field: telemetry.FieldGear, Value: telemetry.StringValue("D")},
					telemetry.Datum{Field: telemetry.FieldLocked, Value: telemetry.BoolValue(true)},
					telemetry.Datum{Field: telemetry.FieldVehicleName, Value: telemetry.StringValue(fmt.Sprintf("Car %d", i))})
			}
			if _, err := c.SendData(ctx, data); err != nil {
				t.Fatalf("%s: send: %v", c.VIN(), err)
			}
		}
	}
}

// flush waits until every record the cars sent is acknowledged.
func (fl *fleet) flush(t *testing.T, cars []*simulate.Car) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	for _, c := range cars {
		if err := c.Flush(ctx); err != nil {
			t.Fatalf("%s: %d records not acknowledged: %v", c.VIN(), c.Pending(), err)
		}
	}
}

// checkDelivery waits until the subscriber has every acknowledged record,
// then checks that none came more than once, or, unless exact, no more
// often than the car's resends explain.
func (fl *fleet) checkDelivery(t *testing.T, sub *brokerWatch, exact bool) {
	t.Helper()
	fl.mu.Lock()
	want := make(map[string][]int)
	for vin, markers := range fl.acked {
		for m := range markers {
			want[vin] = append(want[vin], m)
		}
	}
	fl.mu.Unlock()
	deadline := time.Now().Add(scaleWait)
	for vin, markers := range want {
		for _, m := range markers {
			for sub.count("tesla/"+vin+"/Odometer", strconv.Itoa(m)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: acknowledged record %d never reached the subscriber", vin, m)
				}
				sub.wake(10 * time.Millisecond)
			}
		}
	}
	for _, c := range fl.cars {
		dups := sub.dupsOf("tesla/" + c.VIN() + "/Odometer")
		resent := c.Stats().Resent
		switch {
		case exact && (dups > 0 || resent > 0):
			t.Errorf("%s: %d records delivered more than once, %d resent; want none", c.VIN(), dups, resent)
		case int64(dups) > resent:
			t.Errorf("%s: %d records delivered more than once, but the car resent only %d", c.VIN(), dups, resent)
		}
	}
}

type fleetStats struct{ acked, resent, connects int64 }

func (fl *fleet) stats() fleetStats {
	var s fleetStats
	for _, c := range fl.cars {
		st := c.Stats()
		s.acked += st.Acked
		s.resent += st.Resent
		s.connects += st.Connects
	}
	return s
}

func (fl *fleet) dups(sub *brokerWatch) int {
	n := 0
	for _, c := range fl.cars {
		n += sub.dupsOf("tesla/" + c.VIN() + "/Odometer")
	}
	return n
}

// brokerWatch is a QoS 1 subscriber that keeps every message, in order.
type brokerWatch struct {
	mu   sync.Mutex
	msgs []received
	more chan struct{}
}

type received struct{ topic, payload string }

func watchBroker(t *testing.T, addr string, filters ...string) *brokerWatch {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := &brokerWatch{more: make(chan struct{}, 1)}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			w.mu.Lock()
			w.msgs = append(w.msgs, received{pr.Packet.Topic, string(pr.Packet.Payload)})
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "scaleout-watch", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return w
}

func (w *brokerWatch) wake(d time.Duration) {
	select {
	case <-w.more:
	case <-time.After(d):
	}
}

// mark returns the number of messages received so far.
func (w *brokerWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.msgs)
}

// all returns the payloads received on topic, in order.
func (w *brokerWatch) all(topic string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func (w *brokerWatch) last(topic string) string {
	all := w.all(topic)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

func (w *brokerWatch) count(topic, payload string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if m.topic == topic && m.payload == payload {
			n++
		}
	}
	return n
}

// dupsOf counts the messages on topic that repeat an earlier payload.
func (w *brokerWatch) dupsOf(topic string) int {
	seen := map[string]bool{}
	n := 0
	for _, p := range w.all(topic) {
		if seen[p] {
			n++
		}
		seen[p] = true
	}
	return n
}

// waitAfter waits for a message on topic, among those from index from on,
// that satisfies ok, and returns its payload.
func (w *brokerWatch) waitAfter(t *testing.T, from int, topic string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(scaleWait)
	for {
		w.mu.Lock()
		for _, m := range w.msgs[min(from, len(w.msgs)):] {
			if m.topic == topic && ok(m.payload) {
				w.mu.Unlock()
				return m.payload
			}
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no message on %s as wanted; got %q", topic, w.all(topic))
		}
		w.wake(10 * time.Millisecond)
	}
}

// after returns the payloads received on topic from index from on.
func (w *brokerWatch) after(from int, topic string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs[min(from, len(w.msgs)):] {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func (w *brokerWatch) waitFor(t *testing.T, topic string, ok func(string) bool) string {
	t.Helper()
	return w.waitAfter(t, 0, topic, ok)
}

// waitLast waits until the last message on topic is want.
func (w *brokerWatch) waitLast(t *testing.T, topic, want string) {
	t.Helper()
	deadline := time.Now().Add(scaleWait)
	for w.last(topic) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s reads %q, want %q (all: %q)", topic, w.last(topic), want, w.all(topic))
		}
		w.wake(10 * time.Millisecond)
	}
}

func hasKeys(m map[string]string, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
