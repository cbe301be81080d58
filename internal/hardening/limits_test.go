//go:build hardening

package hardening

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Cases for what one car can make the vehicle listener do per frame:
// control-frame floods, compression offers, FlatBuffers vectors that lie
// about their length, and records full of field numbers no firmware has.

const opPong = 0xA

// cpuSeconds is the CPU time a process has used, from /proc.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// TestControlFrameFlood: a car that pings (or pongs) without pause is
// dropped; one that pings a little is served.
func TestControlFrameFlood(t *testing.T) {
	r := trial(t, areaHostile,
		"on upgraded car connections: one car sends pings as fast as it can for up to 10 s while reading the pongs; another sends unsolicited pongs as fast as it can; a third sends 50 pings at once and then a record",
		"the flooding cars are dropped (connection closed by the server) after at most the allowed burst (100 control frames, then 10 per second), each counted in fleet2mqtt_vehicle_control_floods_total and logged; the third car gets its 50 pongs and its record acknowledged")
	f := startFleet(t, "floods")
	ids := f.identities(3)

	flood := func(name string, c *rawCar, op byte) {
		table.attacks.Add(1)
		var sent, pongs atomic.Int64
		start := time.Now()
		cpu0 := cpuSeconds(f.pid())
		go func() {
			frame := bytes.Buffer{}
			_ = writeFrame(&frame, true, op, nil, 0)
			raw := frame.Bytes()
			batch := bytes.Repeat(raw, 64)
			for time.Since(start) < 10*time.Second {
				if _, err := c.tls.Write(batch); err != nil {
					return
				}
				sent.Add(64)
			}
		}()
		var err error
		for err == nil {
			var gotOp byte
			gotOp, _, err = c.readFrame(15 * time.Second)
			if gotOp == opPong {
				pongs.Add(1)
			}
		}
		took := time.Since(start)
		if took > 9*time.Second {
			r.errorf(t, "%s: the connection was still open after %.1f s (%v)", name, took.Seconds(), err)
		}
		if pongs.Load() > 200 {
			r.errorf(t, "%s: %d pongs answered, want at most the burst of 100 and the rate", name, pongs.Load())
		}
		r.figure("%s: dropped after %.2f s, %d frames sent (in batches of 64), %d pongs, fleet2mqtt CPU %.2f s",
			name, took.Seconds(), sent.Load(), pongs.Load(), cpuSeconds(f.pid())-cpu0)
	}
	mark := f.out.mark()
	flood("ping flood", connectRaw(t, f, ids[0], dialOptions{}), opPing)
	flood("pong flood", connectRaw(t, f, ids[1], dialOptions{}), opPong)

	if !eventually(10*time.Second, func() bool { return f.metric("fleet2mqtt_vehicle_control_floods_total") == 2 }) {
		r.errorf(t, "fleet2mqtt_vehicle_control_floods_total = %v, want 2", f.metric("fleet2mqtt_vehicle_control_floods_total"))
	}
	if n := len(f.out.find(mark, func(l string) bool { return logMsg(l) == "vehicle dropped: control frames too fast" })); n != 2 {
		r.errorf(t, "%d log lines for the two floods, want 2", n)
	}

	c := connectRaw(t, f, ids[2], dialOptions{})
	for range 50 {
		if err := c.writeFrame(true, opPing, []byte("hi")); err != nil {
			r.fatalf(t, "a car pinging 50 times: %v", err)
		}
	}
	pongs := 0
	for pongs < 50 {
		op, _, err := c.readFrame(15 * time.Second)
		if err != nil {
			r.fatalf(t, "a car pinging 50 times got %d pongs, then %v", pongs, err)
		}
		if op == opPong {
			pongs++
		}
	}
	sendRecord(t, c, ids[2].VIN, 50)
}

// TestDeflateOffer: a car that offers permessage-deflate, and sends a
// compressed frame anyway.
func TestDeflateOffer(t *testing.T) {
	r := trial(t, areaHostile,
		"a car upgrades offering permessage-deflate; then sends a compressed frame (RSV1) anyway: a deflate bomb of 250 KB that inflates to 256 MB",
		"the offer is declined (no Sec-WebSocket-Extensions in the answer); the compressed frame closes the connection as a protocol error without being inflated: nothing is published, fleet2mqtt's memory grows by less than 16 MB; a car is served afterwards")
	f := startFleet(t, "deflate")
	ids := f.identities(2)
	table.attacks.Add(1)
	cfg := f.carTLS()
	cfg.Certificates = []tls.Certificate{ids[0].Certificate}
	c, err := dialTLS(f.Vehicle, cfg, dialOptions{})
	if err != nil {
		r.fatalf(t, "dial: %v", err)
	}
	defer c.close()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
	if _, err := io.WriteString(c.tls, req); err != nil {
		r.fatalf(t, "upgrade: %v", err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		r.fatalf(t, "upgrade answered %v (%v)", resp, err)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		r.errorf(t, "the offer was accepted: %q", ext)
	}

	var bomb bytes.Buffer
	zw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 256 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	rss0, _ := f.memory()
	var frame bytes.Buffer
	_ = writeFrame(&frame, true, opBinary, bomb.Bytes(), uint64(bomb.Len()))
	frame.Bytes()[0] |= 0x40 // RSV1: compressed
	_, werr := c.tls.Write(frame.Bytes())
	if !c.closedByServer(15 * time.Second) {
		r.errorf(t, "the connection was still open 15 s after a compressed frame (write: %v)", werr)
	}
	rss1, peak := f.memory()
	if rss1-rss0 > 16 {
		r.errorf(t, "RSS grew from %.0f to %.0f MB: the frame was inflated", rss0, rss1)
	}
	if v := f.metric("fleet2mqtt_vehicle_acks_total"); v != 0 {
		r.errorf(t, "%v frames acknowledged, want none", v)
	}
	sendRecord(t, connectRaw(t, f, ids[1], dialOptions{}), ids[1].VIN, 51)
	r.figure("%.0f KB of deflate inflating to 256 MB: connection closed, RSS %.0f → %.0f MB (peak %.0f)", float64(bomb.Len())/(1<<10), rss0, rss1, peak)
}

// TestHugeFlatBuffersVector: frames whose FlatBuffers vectors, or whose
// protobuf lengths inside the payload, declare far more than the frame.
func TestHugeFlatBuffersVector(t *testing.T) {
	r := trial(t, areaHostile,
		"small frames whose FlatBuffers payload vector declares 2^32−1 and 2^31 bytes, whose txid vector declares 2^32−1 bytes, and whose protobuf payload holds a Datum declaring 2^62 bytes; 1,000 of each",
		"each is answered with the protocol's error response without allocating what it declares (fleet2mqtt's memory grows by less than 16 MB over all of them); the connection stays usable and the next record is acknowledged")
	f := startFleet(t, "vectors")
	ids := f.identities(1)
	c := connectRaw(t, f, ids[0], dialOptions{})
	rss0, _ := f.memory()

	mark := []byte("PAYLOAD-MARK")
	build := func(txid, payload []byte) []byte {
		return envelope.AppendFrame(nil, envelope.Frame{
			TxID: txid, Topic: []byte(telemetry.TopicV), Type: envelope.TypeStream,
			Stream: envelope.Stream{CreatedAt: uint32(time.Now().Unix()), Payload: payload},
		})
	}
	lie := func(frame, at []byte, n uint32) []byte {
		i := bytes.Index(frame, at)
		binary.LittleEndian.PutUint32(frame[i-4:], n)
		return frame
	}
	var datum []byte
	datum = protowire.AppendTag(datum, 1, protowire.BytesType)
	datum = protowire.AppendVarint(datum, 1<<62)
	datum = append(datum, "short"...)
	cases := []struct {
		name  string
		frame []byte
	}{
		{"payload vector of 2^32−1", lie(build([]byte("tx"), mark), mark, math.MaxUint32)},
		{"payload vector of 2^31", lie(build([]byte("tx"), mark), mark, 1<<31)},
		{"txid vector of 2^32−1", lie(build(mark, []byte("p")), mark, math.MaxUint32)},
		{"Datum of 2^62 bytes", build([]byte("tx"), datum)},
	}
	for _, tc := range cases {
		for range 1000 {
			table.attacks.Add(1)
			if err := c.writeFrame(true, opBinary, tc.frame); err != nil {
				r.fatalf(t, "%s: %v", tc.name, err)
			}
			if ack, err := c.response(15 * time.Second); err != nil || ack {
				r.fatalf(t, "%s: answered ack=%v (%v), want the error response", tc.name, ack, err)
			}
		}
	}
	sendRecord(t, c, ids[0].VIN, 52)
	rss1, peak := f.memory()
	if peak-rss0 > 16 {
		r.errorf(t, "peak RSS %.0f MB, %.0f MB above the start", peak, peak-rss0)
	}
	r.figure("%d lying frames answered with the error response; RSS %.0f → %.0f MB (peak %.0f)", 1000*len(cases), rss0, rss1, peak)
}

// unknownFieldsFrame is a V record of vin whose data are n field numbers
// from first on, each with an int value; about 15 bytes per datum.
func unknownFieldsFrame(vin string, first, n uint64) []byte {
	var p []byte
	for k := first; k < first+n; k++ {
		var value, datum []byte
		value = protowire.AppendTag(value, 2, protowire.VarintType) // int_value
		value = protowire.AppendVarint(value, k)
		datum = protowire.AppendTag(datum, 1, protowire.VarintType)
		datum = protowire.AppendVarint(datum, k)
		datum = protowire.AppendTag(datum, 2, protowire.BytesType)
		datum = protowire.AppendBytes(datum, value)
		p = protowire.AppendTag(p, 1, protowire.BytesType)
		p = protowire.AppendBytes(p, datum)
	}
	txid := newTxID()
	return envelope.AppendFrame(nil, envelope.Frame{
		TxID: []byte(txid), Topic: []byte(telemetry.TopicV), MessageID: []byte(txid), Type: envelope.TypeStream,
		Stream: envelope.Stream{CreatedAt: uint32(time.Now().Unix()), Payload: p, DeviceID: []byte(vin)},
	})
}

// TestUnknownFieldNumbers: a car whose records are full of field numbers
// no firmware has.
func TestUnknownFieldNumbers(t *testing.T) {
	r := trial(t, areaHostile,
		"a car sends 4 V records of 40,000 distinct field numbers each (10,000 on up, about 600 KB per frame, 160,000 numbers in all), then one of the 256 numbers above the catalog that newer firmware may use; a subscriber on tesla/# counts the car's topics",
		"every record is acknowledged within 15 s; field numbers no firmware has make no topic (the car has fewer than 600 topics: the catalog, the window of 256 above it, state and connected); they are counted in fleet2mqtt_vehicle_items_refused_total and logged at most once a minute per connection; fleet2mqtt's memory grows by less than 64 MB")
	f := startFleet(t, "unknown-fields")
	sub := subscribe(t, f.MQTT, subOptions{})
	ids := f.identities(1)
	vin := ids[0].VIN
	c := connectRaw(t, f, ids[0], dialOptions{})
	sendRecord(t, c, vin, 53)
	rss0, _ := f.memory()
	mark := f.out.mark()

	const perFrame = 40_000
	var size int
	for i := range uint64(4) {
		table.attacks.Add(1)
		frame := unknownFieldsFrame(vin, 10_000+i*perFrame, perFrame)
		size = len(frame)
		start := time.Now()
		if err := c.writeFrame(true, opBinary, frame); err != nil {
			r.fatalf(t, "frame %d: %v", i, err)
		}
		ack, err := c.response(15 * time.Second)
		if err != nil || !ack {
			r.fatalf(t, "frame %d of %d unknown field numbers: ack=%v (%v), want an acknowledgement", i, perFrame, ack, err)
		}
		r.figure("frame %d (%d KB) acknowledged after %d ms", i, size>>10, time.Since(start).Milliseconds())
	}
	// A field newer firmware may send is still published.
	newer := int(telemetry.MaxField) + 1
	if err := c.writeFrame(true, opBinary, unknownFieldsFrame(vin, uint64(newer), 1)); err != nil {
		r.fatalf(t, "record with a newer field: %v", err)
	}
	if ack, err := c.response(15 * time.Second); err != nil || !ack {
		r.fatalf(t, "record with a newer field: ack=%v (%v)", ack, err)
	}
	newerTopic := fmt.Sprintf("tesla/%s/Field(%d)", vin, newer)
	if !eventually(10*time.Second, func() bool { _, ok := sub.lastPayload(newerTopic); return ok }) {
		r.errorf(t, "nothing published on %s", newerTopic)
	}
	sub.settle(time.Second, 20*time.Second)
	topics := sub.topicsUnder("tesla/" + vin + "/")
	if topics >= 600 {
		r.errorf(t, "the car has %d topics", topics)
	}
	refused := f.metric("fleet2mqtt_vehicle_items_refused_total")
	if refused != 4*perFrame {
		r.errorf(t, "fleet2mqtt_vehicle_items_refused_total = %v, want %d", refused, 4*perFrame)
	}
	lines := len(f.out.find(mark, func(l string) bool { return strings.HasPrefix(logMsg(l), "record items left out on purpose") }))
	if lines != 1 {
		r.errorf(t, "%d log lines for 4 records with refused items on one connection within a minute, want 1", lines)
	}
	rss1, peak := f.memory()
	if peak-rss0 > 64 {
		r.errorf(t, "peak RSS %.0f MB, %.0f MB above the start", peak, peak-rss0)
	}
	r.figure("%d topics for the car; %.0f items refused; %d log line; RSS %.0f → %.0f MB (peak %.0f)", topics, refused, lines, rss0, rss1, peak)
}

// topicsUnder counts the topics seen under prefix.
func (s *subscriber) topicsUnder(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for topic := range s.last {
		if strings.HasPrefix(topic, prefix) {
			n++
		}
	}
	return n
}
