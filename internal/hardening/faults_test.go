//go:build hardening

package hardening

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// retainedFile is where the embedded broker keeps retained messages.
func retainedFile(f *fleet) string { return filepath.Join(f.DataDir, "mqtt", "mqtt-retained.bin") }

// waitAcks waits until the cars have had at least n more records
// acknowledged than before.
func waitAcks(p *pool, before, n int, timeout time.Duration) bool {
	return eventually(timeout, func() bool { return p.led.count() >= before+n })
}

// TestExternalBrokerRestarts streams cars through fleet2mqtt into a real
// mosquitto that is stopped and started (and once frozen) again and again,
// and checks that a persistent QoS 1 subscriber got every record the cars
// had acknowledged.
func TestExternalBrokerRestarts(t *testing.T) {
	cycles := max(envInt(t, "HARDENING_FAULT_CYCLES", 3), 1)
	ncars := max(envInt(t, "HARDENING_FAULT_CARS", 20), 1)
	r := trial(t, areaFaults,
		fmt.Sprintf("%d cars stream (a record every 50 ms each) through fleet2mqtt into mosquitto at QoS 1 (user and password); mosquitto is stopped for 2 s and started again %d times, and frozen (SIGSTOP) for 3 s once", ncars, cycles),
		"every record acknowledged to a car reaches a persistent QoS 1 subscriber; every record is acknowledged in the end; none refused; fleet2mqtt stays up and the bridge state ends online")
	table.note("External broker: a record is acknowledged to the car only after the broker's PUBACK for every message it produced, so what the cars were told is delivered is exactly what the broker holds. " +
		"The suite stops mosquitto with SIGTERM (it saves its sessions and queued messages); a broker killed with SIGKILL loses what it acknowledged since its last save, which is the broker's own durability, outside fleet2mqtt's promise.")
	bridgePW, subPW := "bridge-pw-"+rand.Text(), "sub-pw-"+rand.Text()
	broker := testenv.Mosquitto(t,
		testenv.WithUser("bridge", bridgePW), testenv.WithUser("sub", subPW),
		testenv.WithConfig("max_queued_messages 0", "max_inflight_messages 1000"))
	f := startFleet(t, "external",
		withConfig("mqtt.broker", "external"),
		withConfig("mqtt.external", map[string]any{
			"url": broker.URL(), "username": "bridge", "password": bridgePW,
			"client_id": "hardening-bridge", "keep_alive": "5s", "connect_timeout": "3s",
		}),
		withConfig("vehicle.handle_timeout", "5s"))
	sub := subscribe(t, broker.Addr, subOptions{ClientID: "hardening-sub", Persistent: true, Username: "sub", Password: subPW})
	p := newPool(t, poolConfig{URL: f.carURL(), TLS: f.carTLS(), IDs: f.identities(ncars), Fields: 3,
		AckTimeout: 8 * time.Second, MaxBackoff: time.Second, ConnectLimit: 8})
	if err := p.connect(time.Minute); err != nil {
		r.fatalf(t, "%v", err)
	}
	table.addCars(int64(ncars))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.stream(ctx, 50*time.Millisecond, -1)

	// cycles restarts, with one freeze among them; then streaming must
	// resume once more.
	faults := append([]string{"restart"}, "freeze")
	for range cycles - 1 {
		faults = append(faults, "restart")
	}
	for i, fault := range append(faults, "") {
		before := p.led.count()
		if !waitAcks(p, before, 3*ncars, time.Minute) {
			r.fatalf(t, "before fault %d: records are not acknowledged any more (%d so far)", i, p.led.count())
		}
		switch fault {
		case "freeze":
			broker.Pause()
			time.Sleep(3 * time.Second)
			broker.Resume()
		case "restart":
			broker.Stop()
			time.Sleep(2 * time.Second)
			broker.Start()
		}
	}
	table.faults.Add(int64(len(faults)))
	cancel()
	p.wait()
	if left := p.flush(2 * time.Minute); left > 0 {
		r.errorf(t, "%d cars still wait for acknowledgements 2 minutes after the last fault", left)
	}
	sub.settle(3*time.Second, time.Minute)

	acked := p.led.snapshot()
	missing, dups := sub.missing(acked)
	st := p.stats()
	table.acked.Add(int64(len(acked)))
	table.delivered.Add(int64(len(acked) - len(missing)))
	if len(missing) > 0 {
		sort.Strings(missing)
		r.errorf(t, "%d of %d acknowledged records never reached the subscriber, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	if st.Rejected > 0 {
		r.errorf(t, "%d records refused", st.Rejected)
	}
	if err := f.healthy(); err != nil {
		r.errorf(t, "fleet2mqtt after the faults: %v", err)
	}
	if !eventually(10*time.Second, func() bool { s, _ := sub.lastPayload("tesla/bridge/state"); return s == "online" }) {
		s, _ := sub.lastPayload("tesla/bridge/state")
		r.errorf(t, "bridge state %q after the broker came back, want online", s)
	}
	unacked := f.metric("fleet2mqtt_vehicle_unacknowledged_total")
	r.figure("%d faults; %d records acknowledged, %d delivered (%d more than once); %d resent by the cars, %v left unacknowledged by fleet2mqtt while the broker was away",
		len(faults), len(acked), len(acked)-len(missing), dups, st.Resent, unacked)
}

// TestKillAndRestart kills fleet2mqtt (SIGKILL) while cars stream into its
// embedded broker, starts it again and accounts for the retained state and
// every record.
func TestKillAndRestart(t *testing.T) {
	cycles := max(envInt(t, "HARDENING_FAULT_CYCLES", 3), 1)
	ncars := max(envInt(t, "HARDENING_FAULT_CARS", 20), 1)
	r := trial(t, areaFaults,
		fmt.Sprintf("%d cars stream (a record every 20 ms each) into fleet2mqtt with its embedded broker (retained messages saved every 1 s); fleet2mqtt is killed with SIGKILL mid-stream and started again on the same data directory, %d times", ncars, cycles),
		"the retained file is never corrupt; after the restart every car's retained state is at least what the last completed save held (a save known to include every car's state before the kill) and never a record the car did not send; the cars reconnect and resend what was not acknowledged; every record acknowledged after the restart reaches a subscriber; once each car has sent one more record, the retained state is each car's last record")
	f := startFleet(t, "kill")
	g := newGate(t, f.Vehicle)
	p := newPool(t, poolConfig{URL: "wss://" + g.addr() + "/", TLS: f.carTLS(), IDs: f.identities(ncars), Fields: 3,
		AckTimeout: 5 * time.Second, MaxBackoff: time.Second, ConnectLimit: 8})
	if err := p.connect(time.Minute); err != nil {
		r.fatalf(t, "%v", err)
	}
	sub := subscribe(t, f.MQTT, subOptions{Filter: "#"})
	subSince := p.led.snapshot() // acknowledged before sub subscribed

	var lostLive, liveWindow, behind, checked, resentTotal int
	for cycle := range cycles {
		// A save known to hold every car's state: the cars are flushed,
		// then a retained marker is published after their records, and
		// the file on disk shows the marker.
		ctx, cancel := context.WithCancel(context.Background())
		p.stream(ctx, 20*time.Millisecond, -1)
		if !waitAcks(p, p.led.count(), 3*ncars, time.Minute) {
			r.fatalf(t, "cycle %d: cars do not stream", cycle)
		}
		cancel()
		p.wait()
		if left := p.flush(time.Minute); left > 0 {
			r.fatalf(t, "cycle %d: %d cars not flushed", cycle, left)
		}
		synced := p.led.last()
		syncMark := "sync-" + rand.Text()
		if err := publishRetained(f.MQTT, "hardening/sync", syncMark); err != nil {
			r.fatalf(t, "publish the save marker: %v", err)
		}
		if !eventually(30*time.Second, func() bool {
			raw, _ := os.ReadFile(clientsRetainedFile(f)) // a client's topic
			return bytes.Contains(raw, []byte(syncMark))
		}) {
			r.fatalf(t, "cycle %d: the retained messages were not saved within 30 s (persist_interval 1s)", cycle)
		}

		// Stream, and kill mid-stream.
		ctx, cancel = context.WithCancel(context.Background())
		p.stream(ctx, 20*time.Millisecond, -1)
		if !waitAcks(p, p.led.count(), 3*ncars, time.Minute) {
			r.fatalf(t, "cycle %d: cars do not stream after the save", cycle)
		}
		f.kill()
		g.setOpen(false)
		table.faults.Add(1)
		cancel()
		p.wait()
		ackedAtKill := p.led.snapshot()
		lastAtKill := p.led.last()
		sentAtKill := p.sent()

		// What the subscriber connected before the kill did not get: the
		// broker's outbound queue dies with the process.
		sub.settle(500*time.Millisecond, 5*time.Second)
		window := since(ackedAtKill, subSince)
		miss, _ := sub.missing(window)
		liveWindow += len(window)
		lostLive += len(miss)
		sub.close()

		// Start again with the cars kept away, and read the retained state.
		mark := f.out.mark()
		f.mustStart()
		if bad, _ := filepath.Glob(retainedFile(f) + ".corrupt*"); len(bad) > 0 {
			r.errorf(t, "cycle %d: the retained file was set aside as corrupt: %v", cycle, bad)
		}
		if lines := f.out.find(mark, func(l string) bool { return strings.Contains(l, "unreadable") }); len(lines) > 0 {
			r.errorf(t, "cycle %d: %s", cycle, lines[0])
		}
		sub = subscribe(t, f.MQTT, subOptions{Filter: "#"})
		subSince = ackedAtKill
		sub.settle(time.Second, 10*time.Second)
		if got, _ := sub.lastPayload("hardening/sync"); got != syncMark {
			r.errorf(t, "cycle %d: retained hardening/sync = %q after the restart, want %q (saved before the kill)", cycle, got, syncMark)
		}
		for vin, want := range synced {
			got, ok := sub.lastPayload("tesla/" + vin + "/" + markerField)
			seq := markerSeq(got)
			checked++
			switch {
			case !ok:
				r.errorf(t, "cycle %d: %s has no retained %s after the restart", cycle, vin, markerField)
			case seq < want:
				r.errorf(t, "cycle %d: %s retained record %d after the restart, older than the saved %d", cycle, vin, seq, want)
			case seq > sentAtKill[vin]:
				r.errorf(t, "cycle %d: %s retained record %d, which the car never sent (last sent %d)", cycle, vin, seq, sentAtKill[vin])
			case seq < lastAtKill[vin]:
				behind++ // the last interval, lost with the kill as documented
			}
		}

		// Let the cars back in: they reconnect and resend.
		resentBefore := p.stats().Resent
		g.setOpen(true)
		if left := p.flush(2 * time.Minute); left > 0 {
			r.errorf(t, "cycle %d: %d cars still wait for acknowledgements 2 minutes after the restart", cycle, left)
		}
		resentTotal += int(p.stats().Resent - resentBefore)
		// The state lost with the last interval is replaced by the cars'
		// next records.
		p.stream(context.Background(), 0, 1)
		p.wait()
		if left := p.flush(time.Minute); left > 0 {
			r.errorf(t, "cycle %d: %d cars still wait for acknowledgements after the restart", cycle, left)
		}
		sub.settle(2*time.Second, 30*time.Second)
		newly := since(p.led.snapshot(), ackedAtKill)
		if miss, _ := sub.missing(newly); len(miss) > 0 {
			sort.Strings(miss)
			r.errorf(t, "cycle %d: %d of %d records acknowledged after the restart never reached the subscriber, e.g. %v", cycle, len(miss), len(newly), miss[:min(5, len(miss))])
		}
		table.acked.Add(int64(len(newly)))
		table.delivered.Add(int64(len(newly)))
		for vin, n := range p.sent() {
			if got, _ := sub.lastPayload("tesla/" + vin + "/" + markerField); got != marker(n) {
				r.errorf(t, "cycle %d: %s retained %q after the resends, want its last record %q", cycle, vin, got, marker(n))
			}
		}
	}
	st := p.stats()
	if st.Connects < int64(ncars*(cycles+1)) {
		r.errorf(t, "%d connections for %d cars over %d restarts, want every car back after every restart", st.Connects, ncars, cycles)
	}
	if st.Rejected > 0 {
		r.errorf(t, "%d records refused", st.Rejected)
	}
	r.figure("%d kills; %d records acknowledged in all, %d resent after restarts; %d car states checked after restarts, %d of them behind the last acknowledged record (the last save interval, lost as documented); the subscriber connected at each kill missed %d of the %d records acknowledged while it was subscribed",
		cycles, st.Acked, resentTotal, checked, behind, lostLive, liveWindow)
	table.note("SIGKILL with the embedded broker: a record is acknowledged once the broker has taken its messages (retained kept in memory, queued for every subscriber). " +
		"Retained messages reach the disk every persist_interval (default 10 s) and on a clean stop; a kill loses at most the changes of the last interval, which the cars' next records replace. " +
		"Messages queued for a connected subscriber but not yet written to its socket die with the process: that subscriber misses them, though the cars had their acknowledgements. " +
		"Records not yet acknowledged at the kill are resent by the cars and delivered after the restart. The retained file is replaced atomically, so a kill never corrupts it.")
}

// since returns the records in now that are not in before.
func since(now, before map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range now {
		if !before[k] {
			out[k] = true
		}
	}
	return out
}

// connectRaw connects a hand-driven car with id's certificate and upgrades
// to WebSocket.
func connectRaw(t *testing.T, f *fleet, id simulate.Identity, o dialOptions) *rawCar {
	t.Helper()
	cfg := f.carTLS()
	cfg.Certificates = []tls.Certificate{id.Certificate}
	c, err := dialTLS(f.Vehicle, cfg, o)
	if err != nil {
		t.Fatalf("car %s: %v", id.VIN, err)
	}
	t.Cleanup(c.close)
	if code, err := c.upgrade("127.0.0.1"); err != nil || code != http.StatusSwitchingProtocols {
		t.Fatalf("car %s: upgrade answered %d (%v)", id.VIN, code, err)
	}
	return c
}

// sendRecord sends one record and waits for its acknowledgement.
func sendRecord(t *testing.T, c *rawCar, vin string, soc float64) {
	t.Helper()
	if err := c.writeFrame(true, opBinary, recordFrame(vin, newTxID(), socData(soc))); err != nil {
		t.Fatalf("car %s: write record: %v", vin, err)
	}
	if ack, err := c.response(15 * time.Second); err != nil || !ack {
		t.Fatalf("car %s: record not acknowledged (ack %v, %v)", vin, ack, err)
	}
}

// TestVanishingCars checks that cars that disappear without closing their
// connection are dropped by the idle timeout.
func TestVanishingCars(t *testing.T) {
	r := trial(t, areaFaults,
		"cars vanish without closing: one goes silent (stops reading and writing; TCP stays open, pings go unanswered), one stops in the middle of a frame, one resets the connection (TCP RST); ping every 1 s, idle timeout 3 s",
		"each is dropped: vehicles_connected back to 0 and its connected topic false within 20 s; goroutines back to the count before; a car connecting afterwards is served")
	f := startFleet(t, "vanish", withConfig("vehicle.ping_interval", "1s"), withConfig("vehicle.idle_timeout", "3s"))
	sub := subscribe(t, f.MQTT, subOptions{})
	baseG := f.goroutines()
	ids := f.identities(4)
	frame := recordFrame(ids[1].VIN, newTxID(), socData(50))
	cases := []struct {
		name   string
		vanish func(c *rawCar)
	}{
		{"silent", func(*rawCar) {}},
		{"mid-frame", func(c *rawCar) {
			_ = writeFrame(c.tls, true, opBinary, frame[:len(frame)/2], uint64(len(frame)))
		}},
		{"reset", func(c *rawCar) { c.reset() }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vin := ids[i].VIN
			c := connectRaw(t, f, ids[i], dialOptions{})
			sendRecord(t, c, vin, 40+float64(i))
			topic := "tesla/" + vin + "/connected"
			if !eventually(10*time.Second, func() bool { p, _ := sub.lastPayload(topic); return p == "true" }) {
				r.fatalf(t, "%s: connected never became true", tc.name)
			}
			start := time.Now()
			tc.vanish(c)
			table.faults.Add(1)
			if !eventually(20*time.Second, func() bool { p, _ := sub.lastPayload(topic); return p == "false" }) {
				r.errorf(t, "%s: the car was not dropped within 20 s (idle timeout 3 s)", tc.name)
				return
			}
			r.figure("%s dropped after %.1f s", tc.name, time.Since(start).Seconds())
		})
	}
	if !eventually(20*time.Second, func() bool { return f.metric("fleet2mqtt_vehicles_connected") == 0 }) {
		r.errorf(t, "fleet2mqtt_vehicles_connected = %v after every car vanished", f.metric("fleet2mqtt_vehicles_connected"))
	}
	if n := f.settleGoroutines(baseG+2, 20*time.Second); n > baseG+2 {
		r.errorf(t, "%d goroutines after the cars vanished, %d before", n, baseG)
	}
	sendRecord(t, connectRaw(t, f, ids[3], dialOptions{}), ids[3].VIN, 77)
}

// TestCarNeverReadsAcks checks that a car that sends but never reads is
// dropped once the server cannot write to it.
func TestCarNeverReadsAcks(t *testing.T) {
	r := trial(t, areaFaults,
		"a car with a 4 KB receive buffer sends records as fast as it can and never reads an acknowledgement; write timeout 1 s",
		"the server drops it (its writes time out) within 30 s; vehicles_connected back to 0; goroutines back to the count before; /healthz ok and a well-behaved car is served")
	f := startFleet(t, "deaf", withConfig("vehicle.write_timeout", "1s"))
	baseG := f.goroutines()
	ids := f.identities(2)
	c := connectRaw(t, f, ids[0], dialOptions{RecvBuffer: 4096})
	table.faults.Add(1)
	start := time.Now()
	written := 0
	_ = c.tls.SetWriteDeadline(time.Now().Add(30 * time.Second))
	var werr error
	for i := 0; ; i++ {
		if werr = c.writeFrame(true, opBinary, recordFrame(ids[0].VIN, newTxID(), socData(float64(i%100)))); werr != nil {
			break
		}
		written++
	}
	var ne net.Error
	if errors.As(werr, &ne) && ne.Timeout() {
		r.errorf(t, "the server still read from a car that had not read for 30 s (%d records written)", written)
	}
	if !eventually(20*time.Second, func() bool { return f.metric("fleet2mqtt_vehicles_connected") == 0 }) {
		r.errorf(t, "fleet2mqtt_vehicles_connected = %v, want the deaf car dropped", f.metric("fleet2mqtt_vehicles_connected"))
	}
	r.figure("dropped after %.1f s and %d records (%v)", time.Since(start).Seconds(), written, werr)
	if err := f.healthy(); err != nil {
		r.errorf(t, "%v", err)
	}
	sendRecord(t, connectRaw(t, f, ids[1], dialOptions{}), ids[1].VIN, 55)
	c.close()
	if n := f.settleGoroutines(baseG+2, 20*time.Second); n > baseG+2 {
		r.errorf(t, "%d goroutines after the deaf car was dropped, %d before", n, baseG)
	}
}
