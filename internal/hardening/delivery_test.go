//go:build hardening

package hardening

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// deliveryNote says what the embedded broker promises subscribers; the
// delivery cases prove it.
const deliveryNote = "Embedded broker, slow subscribers: a record acknowledged to a car has reached every connected QoS 1 subscriber and every QoS 0 subscriber that keeps reading. A subscriber whose backlog (mqtt.embedded.max_queued messages, max_queued_bytes bytes) is full makes publishing wait, in turns taken in order of arrival, so the cars' acknowledgements slow down alike to its pace and the cars keep their data; one that reads nothing for stall_timeout with a full backlog is disconnected with a log line naming it (its persistent session keeps QoS 1 messages up to max_queued, and all offline sessions together at most max_offline_queued), and the cars carry on. Memory for subscribers that fall behind is bounded by about 1.25 × max_queued_bytes × subscribers. Every message given up is counted in fleet2mqtt_mqtt_dropped_messages_total{reason} and logged with its count."

// TestLoadSaturation streams cars as fast as their acknowledgements allow
// into the embedded broker, with a QoS 0 and a QoS 1 subscriber that read
// as fast as mosquitto_sub does, and accounts for every record.
func TestLoadSaturation(t *testing.T) {
	cars := envInt(t, "HARDENING_SAT_CARS", 100)
	records := envInt(t, "HARDENING_SAT_RECORDS", 300)
	fields := 1 + len(otherFields)
	r := trial(t, areaLoad,
		fmt.Sprintf("%d cars stream %d records each (%d signals a record) as fast as acknowledgements allow (one record in flight per car) into the binary with its embedded broker; mosquitto_sub at QoS 0 and at QoS 1 on tesla/# count what is published", cars, records, fields),
		"delivered ÷ acknowledged = 100% for both subscribers (every acknowledged record's marker, and acknowledged × signals signal messages); fleet2mqtt_mqtt_dropped_messages_total = 0")
	table.note(deliveryNote)

	f := startFleet(t, "saturation",
		withConfig("log.level", "info"),
		withConfig("vehicle.handshake_timeout", "30s"),
		withConfig("vehicle.handle_timeout", "30s"))
	sub0 := subscribeProcessQoS(t, f.MQTT, 0)
	sub1 := subscribeProcessQoS(t, f.MQTT, 1)

	p := newPool(t, poolConfig{URL: f.carURL(), TLS: f.carTLS(), IDs: f.identities(cars), Fields: fields,
		AckTimeout: 5 * time.Minute, MaxBackoff: 2 * time.Second, ConnectLimit: 16, Window: 1})
	if err := p.connect(time.Minute + time.Duration(cars)*30*time.Millisecond); err != nil {
		r.fatalf(t, "not every car could connect: %v", err)
	}
	table.addCars(int64(p.connected()))
	start := time.Now()
	p.stream(context.Background(), 0, records)
	p.wait()
	if left := p.flush(90 * time.Second); left > 0 {
		r.fatalf(t, "%d cars still wait for acknowledgements 90 s after their last record", left)
	}
	took := time.Since(start)
	lastAck := time.Now()
	sub0.settle(2*time.Second, time.Minute)
	sub1.settle(2*time.Second, time.Minute)
	settled := time.Since(lastAck) - 2*time.Second
	_, peakRSS := f.memory()

	acked := p.led.snapshot()
	want := int64(len(acked)) * int64(fields)
	for _, s := range []struct {
		qos int
		sub *subscriber
	}{{0, sub0}, {1, sub1}} {
		missing, dups := s.sub.missing(acked)
		signals, _, _ := s.sub.counts(p.fields)
		table.acked.Add(int64(len(acked)))
		table.delivered.Add(int64(len(acked) - len(missing)))
		r.figure("QoS %d subscriber: %d of %d acknowledged records delivered (%.2f%%), %d signal messages of %d, %d duplicates",
			s.qos, len(acked)-len(missing), len(acked), 100*float64(len(acked)-len(missing))/float64(max(len(acked), 1)), signals, want, dups)
		if len(missing) > 0 {
			r.errorf(t, "QoS %d subscriber: %d of %d acknowledged records never arrived, e.g. %v", s.qos, len(missing), len(acked), missing[:min(5, len(missing))])
		}
		if signals < want {
			r.errorf(t, "QoS %d subscriber: %d signal messages for %d acknowledged records of %d signals, want %d", s.qos, signals, len(acked), fields, want)
		}
	}
	if len(acked) != cars*records {
		r.errorf(t, "%d records acknowledged, want %d", len(acked), cars*records)
	}
	dropped := f.metricSum("fleet2mqtt_mqtt_dropped_messages_total")
	if dropped != 0 {
		r.errorf(t, "fleet2mqtt_mqtt_dropped_messages_total = %v, want 0", dropped)
	}
	r.figure("%d records in %.1f s: %.0f records/s; publishing waited for a subscriber %v times; last delivery %.1f s after the last acknowledgement; peak RSS %.0f MB",
		len(acked), took.Seconds(), float64(len(acked))/took.Seconds(), f.metric("fleet2mqtt_mqtt_publish_waits_total"), max(settled.Seconds(), 0), peakRSS)
}

// TestStuckMQTTSubscribers: 50 MQTT clients subscribe to # at QoS 1 and
// never read, while cars stream as fast as they can; the cars keep most of
// their rate, memory stays bounded, and each stuck client is disconnected
// with a log line naming it.
func TestStuckMQTTSubscribers(t *testing.T) {
	const stuck = 50
	cars := envInt(t, "HARDENING_STUCK_CARS", 10)
	phase := envDuration(t, "HARDENING_STUCK_PHASE", 30*time.Second)
	// The bound: what the process needs without them, plus what the stuck
	// clients may hold (max_queued_bytes, 4 MiB each) with the Go heap's
	// headroom (GOGC 100: twice the live heap).
	maxRSS := float64(envInt(t, "HARDENING_STUCK_MAX_RSS_MB", 160+stuck*4*2))
	r := trial(t, areaLoad,
		fmt.Sprintf("%d cars stream as fast as acknowledgements allow for %v (the baseline); then %d MQTT clients on loopback subscribe to # at QoS 1 and never read, and the cars stream for %v more", cars, phase, stuck, phase),
		fmt.Sprintf("records/s with the stuck clients at least half the baseline; peak RSS ≤ %.0f MB (idle + %d × max_queued_bytes × 2); every stuck client disconnected with a log line naming it; a mosquitto_sub subscriber gets every acknowledged record", maxRSS, stuck))
	table.note(deliveryNote)

	f := startFleet(t, "stuck",
		withConfig("log.level", "info"),
		withConfig("vehicle.handle_timeout", "30s"))
	sub := subscribeProcess(t, f.MQTT)
	p := fastCars(t, r, f, cars)

	run := func() float64 {
		before := p.led.count()
		ctx, cancel := context.WithTimeout(context.Background(), phase)
		start := time.Now()
		p.stream(ctx, 0, -1)
		p.wait()
		cancel()
		if left := p.flush(90 * time.Second); left > 0 {
			t.Logf("goroutine stacks of the stuck fleet2mqtt: %s", f.dumpStacks())
			warns := f.out.find(0, func(l string) bool { return strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") })
			t.Logf("%d warnings, the last: %q", len(warns), warns[max(0, len(warns)-10):])
			r.fatalf(t, "%d cars still wait for acknowledgements 90 s after their last record", left)
		}
		return float64(p.led.count()-before) / time.Since(start).Seconds()
	}
	baseline := run()
	_, basePeak := f.memory()

	conns := make([]net.Conn, 0, stuck)
	for i := range stuck {
		c, err := net.DialTimeout("tcp", f.MQTT, 10*time.Second)
		if err != nil {
			r.fatalf(t, "stuck client %d: %v", i, err)
		}
		defer c.Close()
		id := fmt.Sprintf("stuck-%02d", i)
		subscribe := mqttPacket(0x82, append(append([]byte{0, 1}, mqttString([]byte("#"))...), 1))
		if _, err := c.Write(append(validConnect(id), subscribe...)); err != nil {
			r.fatalf(t, "stuck client %d: %v", i, err)
		}
		conns = append(conns, c) // never read
	}
	withStuck := run()
	_, peakRSS := f.memory()
	sub.settle(2*time.Second, time.Minute)

	ratio := withStuck / baseline
	r.figure("%.0f records/s baseline, %.0f records/s with %d stuck subscribers (%.0f%%)", baseline, withStuck, stuck, 100*ratio)
	if ratio < 0.5 {
		msgs := map[string]int{}
		for _, l := range f.out.find(0, func(l string) bool { return strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) }) {
			msgs[logMsg(l)]++
		}
		t.Logf("warnings of fleet2mqtt by message: %v", msgs)
		r.errorf(t, "records/s fell from %.0f to %.0f with %d stuck subscribers, want at least half", baseline, withStuck, stuck)
	}
	if peakRSS > maxRSS {
		r.errorf(t, "peak RSS %.0f MB with %d stuck subscribers, want at most %.0f MB", peakRSS, stuck, maxRSS)
	}
	named := 0
	for i := range stuck {
		id := fmt.Sprintf("stuck-%02d", i)
		if len(f.out.find(0, func(l string) bool { return strings.Contains(l, "reads too slowly") && strings.Contains(l, id) })) > 0 {
			named++
		}
	}
	if named < stuck {
		r.errorf(t, "%d of %d stuck subscribers named in a log line as reading too slowly", named, stuck)
	}
	got, acked := accountReader(t, r, p, sub)
	r.figure("peak RSS %.0f MB before the stuck subscribers, %.0f MB with them; %d of %d disconnected with a log line naming them; %.0f messages counted as dropped for them; the reading subscriber got %d of %d acknowledged records",
		basePeak, peakRSS, named, stuck, f.metricSum("fleet2mqtt_mqtt_dropped_messages_total"), got, acked)
}

// fastCars connects n cars of 5 signals a record that stream as fast as
// their acknowledgements allow, patient with a server that slows them
// down.
func fastCars(t *testing.T, r *row, f *fleet, n int) *pool {
	t.Helper()
	p := newPool(t, poolConfig{URL: f.carURL(), TLS: f.carTLS(), IDs: f.identities(n), Fields: 5,
		AckTimeout: 5 * time.Minute, MaxBackoff: 2 * time.Second, ConnectLimit: 16})
	if err := p.connect(time.Minute); err != nil {
		r.fatalf(t, "not every car could connect: %v", err)
	}
	table.addCars(int64(p.connected()))
	return p
}

// accountReader counts what sub, a subscriber that reads, got of the
// records p's cars had acknowledged into the report's delivery figures,
// and fails r for any it did not get.
func accountReader(t *testing.T, r *row, p *pool, sub *subscriber) (got, acked int) {
	t.Helper()
	all := p.led.snapshot()
	missing, _ := sub.missing(all)
	table.acked.Add(int64(len(all)))
	table.delivered.Add(int64(len(all) - len(missing)))
	if len(missing) > 0 {
		r.errorf(t, "%d of %d acknowledged records never reached the subscriber that reads", len(missing), len(all))
	}
	return len(all) - len(missing), len(all)
}

// metricSum adds up every series of a metric (all its labels), failing
// the test if /metrics cannot be read or has none.
func (f *fleet) metricSum(name string) float64 {
	f.t.Helper()
	m, err := f.metrics()
	if err != nil {
		f.t.Fatalf("%s: %v", f.name, err)
	}
	sum, found := 0.0, false
	for series, v := range m {
		if series == name || strings.HasPrefix(series, name+"{") {
			sum, found = sum+v, true
		}
	}
	if !found {
		f.t.Fatalf("%s: /metrics has no %s", f.name, name)
	}
	return sum
}

// TestAbandonedSessions: MQTT clients subscribe to # at QoS 1 with a
// persistent session and never come back, while cars stream as fast as
// they can; what the broker keeps for them stays within
// max_offline_queued, and memory with it.
func TestAbandonedSessions(t *testing.T) {
	const abandoned = 100
	cars := envInt(t, "HARDENING_ABANDONED_CARS", 10)
	phase := envDuration(t, "HARDENING_ABANDONED_PHASE", 20*time.Second)
	// The bound: the process without them, plus max_offline_queued
	// messages (32768 at about 3 KiB each in mochi's in-flight stores)
	// with the Go heap's headroom (GOGC 100: twice the live heap). Without
	// the budget each session would keep max_queued: 100 × 32768
	// messages, some 10 GB (2.9 GB peak in 20 s when tried).
	maxRSS := float64(envInt(t, "HARDENING_ABANDONED_MAX_RSS_MB", 160+2*100))
	r := trial(t, areaHostile,
		fmt.Sprintf("%d MQTT clients on loopback connect with a persistent session (MQTT 3.1.1, clean session off), subscribe to # at QoS 1 and leave for good; then %d cars stream as fast as acknowledgements allow for %v", abandoned, cars, phase),
		fmt.Sprintf("fleet2mqtt_mqtt_offline_queued_messages ≤ max_offline_queued (32768) all along; the rest counted as offline_full drops; peak RSS ≤ %.0f MB; a mosquitto_sub subscriber gets every acknowledged record", maxRSS))

	f := startFleet(t, "abandoned", withConfig("vehicle.handle_timeout", "30s"))
	for i := range abandoned {
		c, err := net.DialTimeout("tcp", f.MQTT, 10*time.Second)
		if err != nil {
			r.fatalf(t, "client %d: %v", i, err)
		}
		connect := mqttPacket(0x10, connectBody("MQTT", 4, 0x00, nil, []byte(fmt.Sprintf("abandoned-%03d", i))))
		subscribe := mqttPacket(0x82, append(append([]byte{0, 1}, mqttString([]byte("#"))...), 1))
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		ack := make([]byte, 4+5) // CONNACK, SUBACK
		if _, err := c.Write(append(connect, subscribe...)); err != nil {
			r.fatalf(t, "client %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 || ack[8] != 1 {
			r.fatalf(t, "client %d: CONNACK and SUBACK % x (%v), want the session and QoS 1", i, ack, err)
		}
		table.attacks.Add(1)
		c.Close()
	}
	sub := subscribeProcess(t, f.MQTT)
	p := fastCars(t, r, f, cars)

	ctx, cancel := context.WithTimeout(context.Background(), phase)
	start := time.Now()
	var maxHeld float64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if m, err := f.metrics(); err == nil {
				maxHeld = max(maxHeld, m["fleet2mqtt_mqtt_offline_queued_messages"])
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	p.stream(ctx, 0, -1)
	p.wait()
	cancel()
	<-done
	if left := p.flush(90 * time.Second); left > 0 {
		r.fatalf(t, "%d cars still wait for acknowledgements 90 s after their last record", left)
	}
	rate := float64(p.led.count()) / time.Since(start).Seconds()
	_, peakRSS := f.memory()
	sub.settle(2*time.Second, time.Minute)

	held := f.metric("fleet2mqtt_mqtt_offline_queued_messages")
	maxHeld = max(maxHeld, held)
	if maxHeld > 32768 {
		r.errorf(t, "offline sessions kept %.0f messages, want at most 32768", maxHeld)
	}
	dropped := f.metric(`fleet2mqtt_mqtt_dropped_messages_total{reason="offline_full"}`)
	if dropped == 0 {
		r.errorf(t, "no message counted as an offline_full drop")
	}
	if peakRSS > maxRSS {
		r.errorf(t, "peak RSS %.0f MB with %d abandoned sessions, want at most %.0f MB", peakRSS, abandoned, maxRSS)
	}
	got, acked := accountReader(t, r, p, sub)
	r.figure("%.0f records/s; at most %.0f messages kept for the %d offline sessions; %.0f counted as offline_full drops; peak RSS %.0f MB; the reading subscriber got %d of %d acknowledged records",
		rate, maxHeld, abandoned, dropped, peakRSS, got, acked)
}
