//go:build hardening

package hardening

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestLoad streams many cars into the binary for a while and accounts for
// every record: acknowledged to the car means delivered to a subscriber.
func TestLoad(t *testing.T) {
	cars := envInt(t, "HARDENING_CARS", 1000)
	duration := envDuration(t, "HARDENING_LOAD_DURATION", 30*time.Second)
	interval := envDuration(t, "HARDENING_RECORD_INTERVAL", time.Second)
	fields := max(envInt(t, "HARDENING_FIELDS", 5), 1)
	maxRSS := float64(envInt(t, "HARDENING_MAX_RSS_MB", 384))
	records := max(int(duration/interval), 1)
	r := trial(t, areaLoad,
		fmt.Sprintf("%d cars connect over mutual TLS and each streams %d records (one every %v, %d signals each) into the binary with its embedded broker; a QoS 1 subscriber on tesla/# counts what is published", cars, records, interval, fields),
		fmt.Sprintf("every acknowledged record delivered (its marker received; signal messages = acknowledged × %d; the state object, derived from them, may be coalesced); no record refused or resent; peak RSS ≤ %.0f MB; goroutines back to the idle count once the cars have left", fields, maxRSS))

	f := startFleet(t, "load",
		withConfig("log.level", "info"),
		withConfig("vehicle.handshake_timeout", "30s"),
		withConfig("vehicle.ping_interval", "30s"),
		withConfig("vehicle.idle_timeout", "90s"),
		withConfig("vehicle.write_timeout", "10s"),
		withConfig("vehicle.handle_timeout", "30s"))
	sub := subscribeProcess(t, f.MQTT)
	idleG := f.goroutines()
	idleRSS, _ := f.memory()

	p := newPool(t, poolConfig{URL: f.carURL(), TLS: f.carTLS(), IDs: f.identities(cars), Fields: fields,
		AckTimeout: 5 * time.Minute, MaxBackoff: 2 * time.Second, ConnectLimit: 16})
	connectStart := time.Now()
	if err := p.connect(time.Minute + time.Duration(cars)*30*time.Millisecond); err != nil {
		r.fatalf(t, "not every car could connect: %v", err)
	}
	connectTime := time.Since(connectStart)
	if !eventually(30*time.Second, func() bool { return f.metric("fleet2mqtt_vehicles_connected") == float64(cars) }) {
		r.errorf(t, "fleet2mqtt_vehicles_connected = %v, want %d", f.metric("fleet2mqtt_vehicles_connected"), cars)
	}
	table.addCars(int64(p.connected()))
	connRSS, _ := f.memory()
	connG := f.goroutines()

	// Stream, sampling memory along the way.
	p.stream(context.Background(), interval, records)
	done := make(chan struct{})
	go func() { p.wait(); close(done) }()
	var samples []float64
	tick := time.NewTicker(2 * time.Second)
	for streaming := true; streaming; {
		select {
		case <-done:
			streaming = false
		case <-tick.C:
			rss, _ := f.memory()
			samples = append(samples, rss)
		}
	}
	tick.Stop()
	if left := p.flush(90 * time.Second); left > 0 {
		r.errorf(t, "%d cars still wait for acknowledgements 90 s after their last record (%d of %d acknowledged): fleet2mqtt is stuck",
			left, p.led.count(), cars*records)
		t.Logf("goroutine stacks of the stuck fleet2mqtt: %s", f.dumpStacks())
		return
	}
	sub.settle(2*time.Second, time.Minute)
	_, peakRSS := f.memory()

	acked := p.led.snapshot()
	missing, dups := sub.missing(acked)
	fieldMsgs, stateMsgs, _ := sub.counts(p.fields)
	st := p.stats()
	table.acked.Add(int64(len(acked)))
	table.delivered.Add(int64(len(acked) - len(missing)))
	want := int64(cars * records)
	if int64(len(acked)) != want {
		r.errorf(t, "%d records acknowledged, want %d (every record sent)", len(acked), want)
	}
	drops := f.out.find(0, func(l string) bool { return strings.Contains(l, "reads too slowly") })
	if len(missing) > 0 {
		sort.Strings(missing)
		r.errorf(t, "%d of %d acknowledged records never reached the subscriber, e.g. %v; the broker logged %d warnings of dropping messages for a slow subscriber",
			len(missing), len(acked), missing[:min(5, len(missing))], len(drops))
	}
	if st.Rejected > 0 || st.Resent > 0 {
		r.errorf(t, "%d records refused and %d resent under plain load, want none", st.Rejected, st.Resent)
	}
	if fieldMsgs != int64(len(acked))*int64(fields) {
		r.errorf(t, "subscriber got %d signal messages for %d acknowledged records of %d signals, want %d",
			fieldMsgs, len(acked), fields, int64(len(acked))*int64(fields))
	}
	if peakRSS > maxRSS {
		r.errorf(t, "peak RSS %.0f MB, want at most %.0f MB", peakRSS, maxRSS)
	}

	// The cars leave; what they held must go with them.
	p.stop()
	if !eventually(30*time.Second, func() bool { return f.metric("fleet2mqtt_vehicles_connected") == 0 }) {
		r.errorf(t, "fleet2mqtt_vehicles_connected = %v after every car left", f.metric("fleet2mqtt_vehicles_connected"))
	}
	endG := f.settleGoroutines(idleG+5, 30*time.Second)
	if endG > idleG+5 {
		r.errorf(t, "%d goroutines after the cars left, %d before they came", endG, idleG)
	}
	endRSS, _ := f.memory()

	maxSample := 0.0
	for _, s := range samples {
		maxSample = max(maxSample, s)
	}
	r.figure("%d cars connected in %.1f s", cars, connectTime.Seconds())
	r.figure("%d records acknowledged, %d delivered, %d duplicates", len(acked), len(acked)-len(missing), dups)
	r.figure("%d signal messages (%d per record) and %d state objects", fieldMsgs, fields, stateMsgs)
	r.figure("RSS idle %.0f MB, with cars %.0f MB (%.0f KB per car), while streaming ≤ %.0f MB, peak %.0f MB, after %.0f MB",
		idleRSS, connRSS, (connRSS-idleRSS)*1024/float64(cars), maxSample, peakRSS, endRSS)
	r.figure("goroutines idle %d, with cars %d, after %d", idleG, connG, endG)
	t.Logf("load: %d cars, %d records acknowledged, %d delivered, peak RSS %.0f MB, goroutines %d → %d → %d",
		cars, len(acked), len(acked)-len(missing), peakRSS, idleG, connG, endG)
}
