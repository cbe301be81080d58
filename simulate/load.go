package simulate

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/uuid"
	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Defaults of LoadConfig.
const (
	DefaultLoadRecords   = 1000
	DefaultLoadFields    = 20
	DefaultMQTTTopic     = "tesla/#"
	DefaultSettle        = 2 * time.Second
	DefaultConnectLimit  = 32
	DefaultLoadMaxWait   = 10 * time.Minute
	defaultConnectBudget = time.Minute
	// templateRing is how many distinct records each car cycles through.
	// Consecutive records differ in every field but those a car keeps
	// steady (see loadValue), as a car's do; 60 is divisible by 2 to 6,
	// so the wrap-around keeps that true for short enums too. The marker
	// field (delivery.go) never repeats.
	templateRing = 60
)

// Errors of RunLoad.
var (
	// ErrIncomplete is returned with the partial result of a run that did
	// not see every record acknowledged.
	ErrIncomplete = errors.New("load run incomplete")
	// ErrTooManyFields is returned for more fields than the catalog has.
	ErrTooManyFields = errors.New("more fields than the catalog has")
)

// LoadConfig describes a load run.
type LoadConfig struct {
	// URL is the server's WebSocket address, such as wss://127.0.0.1:8443/.
	URL string
	// TLS holds the authorities trusted for the server (RootCAs) and, if
	// needed, ServerName. Client certificates come from Identities.
	TLS *tls.Config
	// Identities are the cars, one each.
	Identities []Identity
	// Inflight is how many records each car keeps unacknowledged at most;
	// zero means 1.
	Inflight int
	// Records is how many V records each car sends as fast as its window
	// allows (closed loop); zero only connects the cars (for memory per
	// connection). Ignored when Rate is set.
	Records int
	// Rate, when above zero, makes the run open loop: Rate records per
	// second across all cars, for Duration, each sent at its time whether
	// or not earlier ones were acknowledged (the window, Inflight, only
	// bounds how far a car may fall behind). Ack latency is then measured
	// from when a record was due, so a server that falls behind shows.
	Rate float64
	// Duration is how long an open-loop run sends.
	Duration time.Duration
	// Fields is how many signals each record holds, of mixed kinds; zero
	// means 20.
	Fields int
	// MQTT, when Addr is set, counts what the server publishes.
	MQTT MQTTOptions
	// Settle is how long the MQTT count must stay unchanged to be final.
	Settle time.Duration
	// ServerPID, when set, is the server process whose CPU time and
	// memory are read from /proc.
	ServerPID int
	// BrokerPID, when set, is an MQTT broker process (such as the
	// mosquitto the server publishes to) whose CPU time is read as well.
	BrokerPID int
	// Hold keeps the cars connected this long before the timed part (and
	// before the server's memory with connections is read).
	Hold time.Duration
	// ConnectLimit bounds concurrent TLS handshakes while connecting.
	ConnectLimit int
	// MaxWait bounds the timed part.
	MaxWait time.Duration
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// LoadResult is what a load run measured. Its JSON form is the one-line
// summary scripts read.
type LoadResult struct {
	Cars          int `json:"cars"`
	Inflight      int `json:"inflight"`
	RecordsPerCar int `json:"records_per_car"`
	Fields        int `json:"fields"`
	FrameBytes    int `json:"frame_bytes"`
	// RatePerSec and DurationSecs describe an open-loop run (--rate).
	RatePerSec   float64 `json:"rate_per_s,omitempty"`
	DurationSecs float64 `json:"duration_s,omitempty"`
	// Complete is true when every record was acknowledged and, with a
	// subscriber, every acknowledged record's messages all arrived.
	Complete      bool    `json:"complete"`
	Sent          int64   `json:"sent"`
	Records       int64   `json:"records"` // acknowledged in the timed part
	Resent        int64   `json:"resent"`
	Rejected      int64   `json:"rejected"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	AckP50Ms      float64 `json:"ack_p50_ms"`
	AckP90Ms      float64 `json:"ack_p90_ms"`
	AckP99Ms      float64 `json:"ack_p99_ms"`
	AckMaxMs      float64 `json:"ack_max_ms"`
	ConnectSecs   float64 `json:"connect_s"`
	// DriverCPUSecsPer100k is this process's CPU time per 100k records:
	// on a machine shared with the server, it bounds what can be measured.
	DriverCPUSecsPer100k float64 `json:"driver_cpu_s_per_100k_records"`

	MQTT   *MQTTResult   `json:"mqtt,omitempty"`
	Server *ServerResult `json:"server,omitempty"`
	Broker *BrokerResult `json:"broker,omitempty"`
}

// BrokerResult is an external broker's CPU time during the timed part.
type BrokerResult struct {
	PID            int     `json:"pid"`
	CPUSeconds     float64 `json:"cpu_s"`
	CPUSecsPer100k float64 `json:"cpu_s_per_100k_records"`
}

// MQTTResult is what the MQTT subscriber counted during the timed part.
type MQTTResult struct {
	Topic       string  `json:"topic"`
	QoS         byte    `json:"qos"`
	Messages    int64   `json:"messages"`
	Seconds     float64 `json:"seconds"` // from the start to the last message
	MessagesSec float64 `json:"messages_per_s"`
	PerRecord   float64 `json:"messages_per_record"`
	// LastAfterAckMs is how long after the last acknowledgement the last
	// message of a car's signal arrived (negative: before it): how far
	// delivery trails the acknowledgements at the end of a run. Messages
	// the server sends later on its own (state objects it held back,
	// status) do not count.
	LastAfterAckMs float64 `json:"last_signal_after_last_ack_ms"`
	// Delivery matches the messages to the acknowledged records.
	Delivery *DeliveryResult `json:"delivery,omitempty"`
}

// ServerResult is the server's use of CPU and memory, from /proc.
type ServerResult struct {
	PID             int     `json:"pid"`
	CPUSeconds      float64 `json:"cpu_s"`
	CPUSecsPer100k  float64 `json:"cpu_s_per_100k_records"`
	RSSIdleMB       float64 `json:"rss_idle_mb"`
	RSSConnectedMB  float64 `json:"rss_connected_mb"`
	KBPerConnection float64 `json:"kb_per_connection"`
	RSSEndMB        float64 `json:"rss_end_mb"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
}

func (c *LoadConfig) setDefaults() {
	if c.Rate > 0 {
		c.Inflight = cmp.Or(c.Inflight, DefaultWindow)
	}
	c.Inflight = cmp.Or(c.Inflight, 1)
	c.Fields = cmp.Or(c.Fields, DefaultLoadFields)
	c.Settle = cmp.Or(c.Settle, DefaultSettle)
	c.ConnectLimit = cmp.Or(c.ConnectLimit, DefaultConnectLimit)
	c.MaxWait = cmp.Or(c.MaxWait, DefaultLoadMaxWait)
	c.MQTT.Topic = cmp.Or(c.MQTT.Topic, DefaultMQTTTopic)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *LoadConfig) validate() error {
	switch {
	case len(c.Identities) == 0:
		return errors.New("load: no cars")
	case c.Inflight < 1:
		return fmt.Errorf("load: inflight %d: must be at least 1", c.Inflight)
	case c.Records < 0:
		return fmt.Errorf("load: records %d: must not be negative", c.Records)
	case c.Fields < 1:
		return fmt.Errorf("load: fields %d: must be at least 1", c.Fields)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("load: rate %v: must be a positive number of records per second", c.Rate)
	case c.Rate > 0 && c.Duration <= 0:
		return fmt.Errorf("load: rate %v records/s needs a positive duration", c.Rate)
	case c.Rate > 0 && c.Rate*c.Duration.Seconds() > math.MaxInt32:
		return fmt.Errorf("load: %v records/s for %v is too many records", c.Rate, c.Duration)
	}
	return nil
}

// loadCar is one car of a load run and what it measured.
type loadCar struct {
	car     *Car
	tpl     *template
	records int // how many records it sends
	// In an open-loop run record n is due at start + offset + n*interval.
	offset, interval time.Duration

	// Written by the car's reading goroutine until done is closed.
	latencies []time.Duration
	acked     []uint64 // bitset of the records acknowledged, by number
	settled   int
	lastAck   int64 // nanoseconds since the run's start
	done      chan struct{}
}

// due returns when record n is due, counted from the run's start; zero in
// a closed-loop run.
func (lc *loadCar) due(n int) time.Duration { return lc.offset + time.Duration(n)*lc.interval }

// plan returns how many records car k of cars sends, and in an open-loop
// run the offset and interval of its schedule: the run's records are dealt
// to the cars in turn, record j of the run due at j/rate.
func (c *LoadConfig) plan(k, cars int) (records int, offset, interval time.Duration) {
	if c.Rate <= 0 {
		return c.Records, 0, 0
	}
	total := int(math.Round(c.Rate * c.Duration.Seconds()))
	records = max(0, (total-k+cars-1)/cars)
	perRecord := float64(time.Second) / c.Rate
	return records, time.Duration(float64(k) * perRecord), time.Duration(float64(cars) * perRecord)
}

// RunLoad runs a load test: it connects every car, then each sends
// cfg.Records pre-built V records keeping up to cfg.Inflight
// unacknowledged, and measures throughput, acknowledgement latency, the
// MQTT messages the server published and the server's CPU time and memory.
// A run cut short (ctx, MaxWait) returns its partial result with an error
// wrapping ErrIncomplete.
func RunLoad(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	fields, err := loadFields(cfg.Fields)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	res := &LoadResult{Cars: len(cfg.Identities), Inflight: cfg.Inflight, RecordsPerCar: cfg.Records, Fields: cfg.Fields}
	if cfg.Rate > 0 {
		res.RatePerSec, res.DurationSecs = cfg.Rate, cfg.Duration.Seconds()
		res.RecordsPerCar, _, _ = cfg.plan(0, len(cfg.Identities))
	}
	total := 0 // records the run sends

	// Everything is encoded before the clock starts.
	cars := make([]*loadCar, len(cfg.Identities))
	vins := make([]string, len(cfg.Identities))
	for i, id := range cfg.Identities {
		lc := &loadCar{done: make(chan struct{})}
		lc.records, lc.offset, lc.interval = cfg.plan(i, len(cfg.Identities))
		total += lc.records
		if lc.records > 0 {
			lc.latencies = make([]time.Duration, 0, lc.records)
			lc.acked = make([]uint64, (lc.records+63)/64)
		}
		car, err := NewCar(CarConfigFor(CarConfig{
			URL:      cfg.URL,
			TLS:      cfg.TLS,
			Window:   cfg.Inflight,
			Log:      slog.New(minLevel{slog.LevelWarn, log.Handler()}),
			OnAck:    lc.onAck,
			OnReject: lc.onReject,
		}, id))
		if err != nil {
			return nil, err
		}
		lc.car = car
		vins[i] = car.VIN()
		if lc.tpl, err = newTemplate(car, i, fields, min(lc.records, templateRing)); err != nil {
			return nil, err
		}
		cars[i] = lc
	}
	if total > 0 {
		res.FrameBytes = len(cars[0].tpl.frames[0])
	}

	var idle, connected, before, after procSample
	sample := func(s *procSample) error {
		if cfg.ServerPID == 0 {
			return nil
		}
		var err error
		*s, err = readProc(cfg.ServerPID)
		return err
	}
	if err := sample(&idle); err != nil {
		return nil, err
	}
	var sub *MQTTSubscriber
	var delivery *deliveryCounter
	if cfg.MQTT.Addr != "" {
		delivery = newDeliveryCounter(vins, fields, res.RecordsPerCar)
		if sub, err = dialMQTT(ctx, cfg.MQTT, delivery.observe); err != nil {
			return nil, err
		}
		defer sub.Close()
	}

	runCtx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() {
		stop()
		running.Wait()
	}()
	log.Info("connecting cars", "cars", len(cars), "url", cfg.URL)
	connectStart := time.Now()
	budget := defaultConnectBudget + time.Duration(len(cars))*10*time.Millisecond
	if err := connectAll(runCtx, cars, cfg.ConnectLimit, &running, budget); err != nil {
		return nil, err
	}
	res.ConnectSecs = round(time.Since(connectStart).Seconds(), 3)
	log.Info("cars connected", "cars", len(cars), "seconds", round(res.ConnectSecs, 2))
	if cfg.Hold > 0 {
		log.Info("holding connections", "for", cfg.Hold)
		sleep(ctx, cfg.Hold)
	}
	if sub != nil {
		// Let the server's connection announcements pass.
		sub.Settle(ctx, min(cfg.Settle, 500*time.Millisecond))
	}
	if err := sample(&connected); err != nil {
		return nil, err
	}
	baseline := int64(0)
	if sub != nil {
		baseline = sub.Count()
	}
	if err := sample(&before); err != nil {
		return nil, err
	}
	var brokerBefore, brokerAfter procSample
	if cfg.BrokerPID != 0 {
		if brokerBefore, err = readProc(cfg.BrokerPID); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	self, _ := readProc(os.Getpid())

	// The timed part.
	start := time.Now()
	complete := true
	if total > 0 {
		log.Info("sending", "records", total, "rate", cfg.Rate, "inflight", cfg.Inflight, "fields", cfg.Fields, "frame_bytes", res.FrameBytes)
		for _, lc := range cars {
			lc.start(runCtx, start, &running)
		}
		waitCtx, cancel := context.WithTimeout(ctx, cfg.MaxWait)
		for _, lc := range cars {
			select {
			case <-lc.done:
			case <-waitCtx.Done():
				complete = false
			}
			if !complete {
				break
			}
		}
		cancel()
	}
	var mqttCount int64
	if sub != nil && total > 0 {
		sctx, cancel := context.WithTimeout(ctx, max(time.Minute, 10*cfg.Settle))
		mqttCount = sub.Settle(sctx, cfg.Settle) - baseline
		cancel()
	}
	if err := sample(&after); err != nil {
		// The server went away during the run: keep the other figures.
		log.Warn("no server figures", "err", err)
		cfg.ServerPID = 0
	}
	selfAfter, _ := readProc(os.Getpid())
	if cfg.BrokerPID != 0 {
		if brokerAfter, err = readProc(cfg.BrokerPID); err != nil {
			log.Warn("no broker figures", "err", err)
			cfg.BrokerPID = 0
		}
	}
	// Once every car has stopped, their measurements may be read.
	stop()
	running.Wait()

	res.Complete = complete
	var lastAck time.Duration
	all := make([]time.Duration, 0, total)
	for _, lc := range cars {
		st := lc.car.Stats()
		res.Sent += st.Sent
		res.Resent += st.Resent
		res.Rejected += st.Rejected
		res.Records += st.Acked
		all = append(all, lc.latencies...)
		lastAck = max(lastAck, time.Duration(lc.lastAck))
	}
	if total > 0 {
		res.Seconds = round(lastAck.Seconds(), 3)
		if lastAck > 0 {
			res.RecordsPerSec = math.Round(float64(res.Records) / lastAck.Seconds())
		}
		slices.Sort(all)
		res.AckP50Ms = ms(percentile(all, 50))
		res.AckP90Ms = ms(percentile(all, 90))
		res.AckP99Ms = ms(percentile(all, 99))
		if len(all) > 0 {
			res.AckMaxMs = ms(all[len(all)-1])
		}
	}
	if res.Records > 0 {
		cpu := float64(selfAfter.cpuTicks-self.cpuTicks) / clockTicksPerSecond
		res.DriverCPUSecsPer100k = round(cpu/float64(res.Records)*100_000, 3)
	}
	if sub != nil {
		m := &MQTTResult{Topic: cfg.MQTT.Topic, QoS: cfg.MQTT.QoS, Messages: mqttCount}
		if last := sub.lastArrival(); mqttCount > 0 && last.After(start) {
			m.Seconds = round(last.Sub(start).Seconds(), 3)
			m.MessagesSec = math.Round(float64(mqttCount) / last.Sub(start).Seconds())
		}
		if res.Records > 0 {
			m.PerRecord = round(float64(mqttCount)/float64(res.Records), 2)
		}
		if total > 0 {
			acked := make([][]uint64, len(cars))
			for i, lc := range cars {
				acked[i] = lc.acked
			}
			m.Delivery = delivery.result(func(i int) string { return fields[i].String() }, acked)
			if last, ok := delivery.lastArrival(); ok && lastAck > 0 {
				m.LastAfterAckMs = ms(last.Sub(start.Add(lastAck)))
			}
		}
		res.MQTT = m
	}
	if cfg.ServerPID != 0 {
		s := &ServerResult{
			PID:            cfg.ServerPID,
			CPUSeconds:     round(float64(after.cpuTicks-before.cpuTicks)/clockTicksPerSecond, 2),
			RSSIdleMB:      mb(idle.rssKB),
			RSSConnectedMB: mb(connected.rssKB),
			RSSEndMB:       mb(after.rssKB),
			PeakRSSMB:      mb(after.hwmKB),
		}
		if res.Records > 0 {
			s.CPUSecsPer100k = round(s.CPUSeconds/float64(res.Records)*100_000, 3)
		}
		s.KBPerConnection = round(float64(connected.rssKB-idle.rssKB)/float64(len(cars)), 1)
		res.Server = s
	}
	if cfg.BrokerPID != 0 {
		b := &BrokerResult{PID: cfg.BrokerPID, CPUSeconds: round(float64(brokerAfter.cpuTicks-brokerBefore.cpuTicks)/clockTicksPerSecond, 2)}
		if res.Records > 0 {
			b.CPUSecsPer100k = round(b.CPUSeconds/float64(res.Records)*100_000, 3)
		}
		res.Broker = b
	}
	if !complete {
		return res, fmt.Errorf("%w: %d of %d records acknowledged", ErrIncomplete, res.Records, total)
	}
	if d := res.MQTT.delivery(); d != nil && !d.Complete() {
		res.Complete = false
		return res, fmt.Errorf("%w: %d of %d messages of acknowledged records arrived (%.2f%%), %d records' marker missing",
			ErrIncomplete, d.Delivered, d.Expected, 100*d.Ratio, d.RecordsMissing)
	}
	return res, nil
}

// connectAll starts every car and waits until all are connected, with at
// most limit handshakes under way at once.
func connectAll(runCtx context.Context, cars []*loadCar, limit int, running *sync.WaitGroup, budget time.Duration) error {
	ctx, cancel := context.WithTimeout(runCtx, budget)
	defer cancel()
	sem := make(chan struct{}, limit)
	var failed atomic.Pointer[loadCar]
	var wg sync.WaitGroup
	for _, lc := range cars {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		running.Go(func() { _ = lc.car.Run(runCtx) })
		wg.Go(func() {
			defer func() { <-sem }()
			if lc.car.WaitConnected(ctx) != nil {
				failed.CompareAndSwap(nil, lc)
			}
		})
	}
	wg.Wait()
	if lc := failed.Load(); lc != nil || ctx.Err() != nil {
		if lc == nil {
			return fmt.Errorf("connect cars: %w", ctx.Err())
		}
		if err := lc.car.Err(); err != nil {
			return fmt.Errorf("car %s did not connect within %v: %w", lc.car.VIN(), budget, err)
		}
		return fmt.Errorf("car %s did not connect within %v", lc.car.VIN(), budget)
	}
	return nil
}

// start sends the car's records from its template on a goroutine of its
// own: as fast as the window allows, or each when it is due.
func (lc *loadCar) start(ctx context.Context, start time.Time, wg *sync.WaitGroup) {
	lc.tpl.start, lc.tpl.records = start, lc.records
	if lc.records == 0 {
		close(lc.done)
		return
	}
	wg.Go(func() {
		var timer *time.Timer
		for i := range lc.records {
			if lc.interval > 0 {
				if wait := time.Until(start.Add(lc.due(i))); wait > 0 {
					if timer == nil {
						timer = time.NewTimer(wait)
					} else {
						timer.Reset(wait)
					}
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
				}
			}
			if err := lc.car.Send(ctx, lc.tpl.message(i)); err != nil {
				return
			}
		}
	})
}

// onAck records an acknowledgement. m.seq numbers the car's records from
// 1, in the order they were sent.
func (lc *loadCar) onAck(m *Message, latency time.Duration) {
	n := int(m.seq) - 1
	if lc.interval > 0 {
		// Open loop: from when the record was due, not from when it
		// could be sent.
		latency = time.Since(lc.tpl.start) - lc.due(n)
	}
	lc.latencies = append(lc.latencies, latency)
	if n >= 0 && n/64 < len(lc.acked) {
		lc.acked[n/64] |= 1 << (n % 64)
	}
	lc.settle()
}

func (lc *loadCar) onReject(*Message, string) { lc.settle() }

func (lc *loadCar) settle() {
	lc.settled++
	lc.lastAck = int64(time.Since(lc.tpl.start))
	if lc.settled == lc.tpl.records {
		close(lc.done)
	}
}

// template holds a car's pre-built frames: a ring of distinct V records
// whose txid, message id and marker (see delivery.go) are patched with the
// record number.
type template struct {
	car      *Car
	payloads [][]byte
	frames   [][]byte
	created  time.Time
	txOff    int   // where the txid starts in every frame
	msgOff   int   // where the message id starts
	payOff   []int // where the payload starts, per frame
	marker   []int // where the marker's 8 bytes start, per frame; nil without one
	records  int
	start    time.Time
}

// idCounterDigits is how many trailing hex digits of a txid or message id
// count the records.
const idCounterDigits = 12

// newTemplate builds n (at most templateRing) distinct records for car
// number index.
func newTemplate(car *Car, index int, fields []telemetry.Field, n int) (*template, error) {
	t := &template{car: car, created: time.Now()}
	if n == 0 {
		return t, nil
	}
	txBase, msgBase := uuid.New()[:36-idCounterDigits], uuid.New()[:36-idCounterDigits]
	zeros := "000000000000"
	probe := &Message{Topic: telemetry.TopicV, TxID: txBase + zeros, MessageID: msgBase + zeros, CreatedAt: t.created}
	data := make([]telemetry.Datum, len(fields))
	marker := markerField(fields)
	var sentinel [8]byte
	binary.LittleEndian.PutUint64(sentinel[:], math.Float64bits(markerSentinel))
	for slot := range n {
		for i, f := range fields {
			data[i] = telemetry.Datum{Field: f, Value: loadValue(f, slot, index)}
		}
		if marker >= 0 {
			data[marker].Value = telemetry.FloatValue(markerSentinel)
		}
		payload, err := EncodeData(car.VIN(), t.created, data, false)
		if err != nil {
			return nil, err
		}
		frame := car.appendFrame(nil, probe, payload)
		t.payloads = append(t.payloads, payload)
		t.frames = append(t.frames, frame)
		t.payOff = append(t.payOff, bytes.Index(frame, payload))
		if marker >= 0 {
			at := bytes.Index(frame, sentinel[:])
			if at < t.payOff[slot] || bytes.Count(frame, sentinel[:]) != 1 {
				return nil, errors.New("load: record marker not found once in the built frame")
			}
			t.marker = append(t.marker, at)
		}
	}
	t.txOff = bytes.Index(t.frames[0], []byte(probe.TxID))
	t.msgOff = bytes.Index(t.frames[0], []byte(probe.MessageID))
	if t.txOff < 0 || t.msgOff < 0 {
		return nil, errors.New("load: txid not found in the built frame")
	}
	return t, nil
}

// message returns record number i, ready to send.
func (t *template) message(i int) *Message {
	slot := i % len(t.frames)
	frame := slices.Clone(t.frames[slot])
	var ctr [8]byte
	for k := range 6 {
		ctr[7-k] = byte(uint64(i) >> (8 * k))
	}
	hex.Encode(frame[t.txOff+36-idCounterDigits:t.txOff+36], ctr[2:])
	hex.Encode(frame[t.msgOff+36-idCounterDigits:t.msgOff+36], ctr[2:])
	payload := t.payloads[slot]
	if t.marker != nil {
		binary.LittleEndian.PutUint64(frame[t.marker[slot]:], math.Float64bits(markerValue(i)))
		// A resend frames Payload anew (see Car.write): it must carry the
		// same marker, and must not share the frame's memory.
		payload = slices.Clone(frame[t.payOff[slot] : t.payOff[slot]+len(payload)])
	}
	return &Message{
		Topic:     telemetry.TopicV,
		TxID:      string(frame[t.txOff : t.txOff+36]),
		MessageID: string(frame[t.msgOff : t.msgOff+36]),
		CreatedAt: t.created,
		Payload:   payload,
		frame:     frame,
	}
}

// loadSignals are the first signals of a load record: twenty of mixed
// kinds, as in the reference measurements (doubles, ints, a long, bools,
// enums, a string, a location, doors).
var loadSignals = []schema.Field{
	schema.Field_VehicleSpeed, schema.Field_Odometer, schema.Field_Soc, schema.Field_Gear,
	schema.Field_Location, schema.Field_GpsHeading, schema.Field_ChargeLimitSoc, schema.Field_Locked,
	schema.Field_InsideTemp, schema.Field_OutsideTemp, schema.Field_DetailedChargeState,
	schema.Field_ChargerVoltage, schema.Field_ChargePortDoorOpen, schema.Field_EstBatteryRange,
	schema.Field_Version, schema.Field_ScheduledChargingStartTime, schema.Field_SentryMode,
	schema.Field_DoorState, schema.Field_TpmsPressureFl, schema.Field_HvacFanSpeed,
}

// loadFields returns n signals: loadSignals first, then the rest of the
// catalog in field order.
func loadFields(n int) ([]telemetry.Field, error) {
	out := make([]telemetry.Field, 0, n)
	seen := make(map[telemetry.Field]bool)
	for _, f := range loadSignals {
		if len(out) == n {
			return out, nil
		}
		out = append(out, telemetry.Field(f))
		seen[telemetry.Field(f)] = true
	}
	for _, info := range telemetry.Catalog() {
		if len(out) == n {
			return out, nil
		}
		if info.Field == 0 || seen[info.Field] {
			continue
		}
		out = append(out, info.Field)
	}
	if len(out) < n {
		return nil, fmt.Errorf("load: %d fields: %w (%d)", n, ErrTooManyFields, len(out))
	}
	return out, nil
}

// loadValue returns the value of field f in ring slot slot of car car:
// of the field's kind, and different from slot to slot.
func loadValue(f telemetry.Field, slot, car int) telemetry.Value {
	info, _ := telemetry.Lookup(f)
	s := int64(slot)
	switch info.Kind {
	case telemetry.KindBool:
		return telemetry.BoolValue(slot%2 == 1)
	case telemetry.KindInt:
		return telemetry.IntValue(s + int64(car%1000))
	case telemetry.KindLong:
		return telemetry.IntValue(1_767_225_600 + s*60)
	case telemetry.KindDouble:
		return telemetry.FloatValue(round(float64(int(f)%90)+float64(slot)*0.25+float64(car%100)*0.01, 3))
	case telemetry.KindEnum:
		if steady, ok := loadSteady[f]; ok {
			return telemetry.EnumNumber(info.Enum, steady)
		}
		n := len(info.Enum.Values) - 1 // leave out Unknown
		if n < 1 {
			return telemetry.EnumNumber(info.Enum, 0)
		}
		return telemetry.EnumOf(info.Enum, info.Enum.Values[1+slot%n])
	case telemetry.KindLocation:
		return telemetry.LocationValue(round6(37.412374+float64(slot)*1e-4), round6(-122.145867-float64(car%1000)*1e-4))
	case telemetry.KindDoors:
		return telemetry.DoorsValue(telemetry.Doors(slot % 64))
	case telemetry.KindTireLocation:
		return telemetry.TiresValue(telemetry.Tires(slot % 16))
	case telemetry.KindTime:
		return telemetry.TimeValue(int32(slot%24), int32(slot%60), int32(slot*7%60))
	}
	if f == telemetry.FieldVersion {
		// Software changes with a firmware update, not from record to
		// record; what depends on it (Home Assistant's device) is not
		// redone for every record.
		return telemetry.StringValue(loadVersion)
	}
	return telemetry.StringValue("2025.44.25." + strconv.Itoa(slot))
}

// loadSteady are the enum values that stay as they are from record to
// record, as a driving car's gear and charge state do: a car that shifted
// gear and plugged in with every record would start and end a drive and a
// charging session per record, which the server keeps on disk (its
// derived state and history), and which no car does.
var loadSteady = map[telemetry.Field]int32{
	telemetry.FieldGear:                5, // ShiftStateD
	telemetry.FieldDetailedChargeState: 1, // DetailedChargeStateDisconnected
}

// loadVersion is the software version every load car reports.
const loadVersion = "2025.44.25.5 abcdef123456"

// percentile returns the p-th percentile (nearest rank) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return round(float64(d)/1e6, 3) }

func mb(kb int64) float64 { return round(float64(kb)/1024, 1) }

// WriteText writes the result for people.
func (r *LoadResult) WriteText(w io.Writer) error {
	var b bytes.Buffer
	if r.RecordsPerCar > 0 {
		if r.RatePerSec > 0 {
			fmt.Fprintf(&b, "load: %d cars, %s records/s for %.1f s (open loop), at most %d in flight per car, %d fields per record (%d-byte frames)\n",
				r.Cars, thousands(r.RatePerSec), r.DurationSecs, r.Inflight, r.Fields, r.FrameBytes)
		} else {
			fmt.Fprintf(&b, "load: %d cars × %d records, %d in flight per car, %d fields per record (%d-byte frames)\n",
				r.Cars, r.RecordsPerCar, r.Inflight, r.Fields, r.FrameBytes)
		}
	} else {
		fmt.Fprintf(&b, "load: %d cars, connections only\n", r.Cars)
	}
	fmt.Fprintf(&b, "  connect      %d cars in %.2f s\n", r.Cars, r.ConnectSecs)
	if r.RecordsPerCar > 0 {
		state := ""
		if !r.Complete {
			state = " (INCOMPLETE)"
		}
		fmt.Fprintf(&b, "  records      %d acknowledged in %.3f s: %s records/s (%d resent, %d rejected)%s\n",
			r.Records, r.Seconds, thousands(r.RecordsPerSec), r.Resent, r.Rejected, state)
		fmt.Fprintf(&b, "  ack latency  p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.AckP50Ms, r.AckP90Ms, r.AckP99Ms, r.AckMaxMs)
		fmt.Fprintf(&b, "  driver cpu   %.3f CPU-s per 100k records (this process, MQTT subscriber included)\n", r.DriverCPUSecsPer100k)
	}
	if m := r.MQTT; m != nil {
		fmt.Fprintf(&b, "  mqtt         %d messages on %s (QoS %d) in %.3f s: %s messages/s, %.2f per record\n",
			m.Messages, m.Topic, m.QoS, m.Seconds, thousands(m.MessagesSec), m.PerRecord)
		if d := m.Delivery; d != nil {
			fmt.Fprintf(&b, "  last signal  %.1f ms after the last acknowledgement\n", m.LastAfterAckMs)
			state := "complete"
			if !d.Complete() {
				state = "INCOMPLETE"
			}
			fmt.Fprintf(&b, "  delivered    %d of %d messages of acknowledged records (%.2f%%), %d records missing, %d extra, %d on other topics: %s\n",
				d.Delivered, d.Expected, 100*d.Ratio, d.RecordsMissing, d.Extra, d.Other, state)
		}
	}
	if s := r.Server; s != nil {
		if r.RecordsPerCar > 0 {
			fmt.Fprintf(&b, "  server cpu   pid %d: %.2f s, %.3f CPU-s per 100k records\n", s.PID, s.CPUSeconds, s.CPUSecsPer100k)
		}
		fmt.Fprintf(&b, "  server rss   idle %.1f MB, %.1f MB with %d cars (%.1f KB each), %.1f MB at the end, peak %.1f MB\n",
			s.RSSIdleMB, s.RSSConnectedMB, r.Cars, s.KBPerConnection, s.RSSEndMB, s.PeakRSSMB)
	}
	if br := r.Broker; br != nil {
		fmt.Fprintf(&b, "  broker cpu   pid %d: %.2f s, %.3f CPU-s per 100k records\n", br.PID, br.CPUSeconds, br.CPUSecsPer100k)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes the result as one line of JSON.
func (r *LoadResult) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode load result: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// thousands formats a rate with thousands separators: 24,630.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// minLevel passes on records of at least its level: hundreds of cars each
// saying that they connected tell nothing.
type minLevel struct {
	level slog.Level
	slog.Handler
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.level, h.Handler.WithAttrs(attrs)}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.level, h.Handler.WithGroup(name)}
}

// delivery returns the delivery accounting, nil without a subscriber.
func (m *MQTTResult) delivery() *DeliveryResult {
	if m == nil {
		return nil
	}
	return m.Delivery
}
