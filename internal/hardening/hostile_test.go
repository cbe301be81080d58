//go:build hardening

package hardening

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// TestTLSClients tries the vehicle listener with every kind of wrong
// client certificate.
func TestTLSClients(t *testing.T) {
	r := trial(t, areaHostile,
		"clients on the vehicle listener without a certificate; with a certificate from another vehicle CA; self-signed; signed by the server CA; expired; from the right CA but without a common name or for a board inside a car; with MQTT wildcards in its common name; over TLS 1.1; over plain HTTP",
		"no such client streams: the TLS handshake or the upgrade is refused (401/403), nothing is published for it; the refusal is counted; the public key path still answers without a certificate; a real car is served afterwards")
	f := startFleet(t, "tls")
	sub := subscribe(t, f.MQTT, subOptions{Filter: "#"})
	b := f.bundle()
	other, err := certs.NewBundle(nil, simulate.TestVIN(900))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *certs.Authority, tmpl *x509.Certificate) tls.Certificate {
		c, err := a.Issue(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	selfSigned, err := certs.NewAuthority(certs.VehicleAuthorityName)
	if err != nil {
		t.Fatal(err)
	}
	selfCert := issue(selfSigned, &x509.Certificate{Subject: pkix.Name{CommonName: simulate.TestVIN(901)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	serverAsClient := issue(b.ServerCA, &x509.Certificate{Subject: pkix.Name{CommonName: simulate.TestVIN(902)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	expired := issue(b.VehicleCA, &x509.Certificate{Subject: pkix.Name{CommonName: simulate.TestVIN(903)},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	noCN := issue(b.VehicleCA, &x509.Certificate{Subject: pkix.Name{Organization: []string{"hardening"}}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	board := issue(b.VehicleCA, &x509.Certificate{Subject: pkix.Name{CommonName: simulate.TestVIN(904), OrganizationalUnit: []string{"Tesla Motors SN"}}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	wildcard := issue(b.VehicleCA, &x509.Certificate{Subject: pkix.Name{CommonName: "+/#"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	type outcome int
	const (
		refusedTLS outcome = iota + 1
		refusedUpgrade
		upgradedButSilent // connected, but its records are published nowhere
	)
	cases := []struct {
		name  string
		cert  *tls.Certificate
		maxV  uint16
		wants []outcome
	}{
		{"no certificate", nil, 0, []outcome{refusedUpgrade}},
		{"another vehicle CA", ptr(other.Vehicles[simulate.TestVIN(900)]), 0, []outcome{refusedTLS}},
		{"self-signed", &selfCert, 0, []outcome{refusedTLS}},
		{"signed by the server CA", &serverAsClient, 0, []outcome{refusedTLS}},
		{"expired", &expired, 0, []outcome{refusedTLS}},
		{"no common name", &noCN, 0, []outcome{refusedUpgrade}},
		{"board inside a car", &board, 0, []outcome{refusedUpgrade}},
		{"wildcards in the common name", &wildcard, 0, []outcome{refusedUpgrade, upgradedButSilent}},
		{"TLS 1.1", ptr(f.identities(1)[0].Certificate), tls.VersionTLS11, []outcome{refusedTLS}},
	}
	refusedBefore := f.metric("fleet2mqtt_vehicle_refused_total")
	upgradeRefusals := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table.attacks.Add(1)
			cfg := f.carTLS()
			if tc.cert != nil {
				// Presented whatever authorities the server asks for.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tc.cert, nil }
			}
			if tc.maxV != 0 {
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tc.maxV
			}
			got := outcome(0)
			c, err := dialTLS(f.Vehicle, cfg, dialOptions{})
			if err == nil {
				defer c.close()
				// TLS 1.3 reports a refused client certificate on the
				// first read, not in the handshake.
				code, uerr := c.upgrade("127.0.0.1")
				switch {
				case uerr != nil:
					got = refusedTLS
				case code == http.StatusUnauthorized || code == http.StatusForbidden:
					got = refusedUpgrade
					upgradeRefusals++
				case code == http.StatusSwitchingProtocols:
					got = upgradedButSilent
					if err := c.writeFrame(true, opBinary, recordFrame("+/#", newTxID(), socData(66))); err != nil {
						got = refusedTLS
					} else if ack, err := c.response(5 * time.Second); err == nil && ack {
						r.errorf(t, "%s: a record was acknowledged", tc.name)
					}
				default:
					r.errorf(t, "%s: upgrade answered %d", tc.name, code)
				}
			} else {
				got = refusedTLS
			}
			ok := false
			for _, w := range tc.wants {
				ok = ok || w == got
			}
			if !ok {
				r.errorf(t, "%s: outcome %d, want one of %v (1 TLS refused, 2 upgrade refused, 3 upgraded but publishes nothing)", tc.name, got, tc.wants)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		table.attacks.Add(1)
		c, err := net.DialTimeout("tcp", f.Vehicle, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		reply, _ := io.ReadAll(io.LimitReader(c, 4096))
		if bytes.Contains(reply, []byte("101 Switching")) {
			r.errorf(t, "plain HTTP was upgraded: %q", reply)
		}
	})
	// Nothing was published for any of them.
	sub.settle(time.Second, 5*time.Second)
	sub.mu.Lock()
	for topic := range sub.last {
		if strings.Contains(topic, "+") || strings.Contains(topic, "#") || strings.HasPrefix(topic, "tesla/-") {
			r.errorf(t, "published on %q", topic)
		}
		for _, vin := range []string{simulate.TestVIN(900), simulate.TestVIN(901), simulate.TestVIN(902), simulate.TestVIN(903), simulate.TestVIN(904)} {
			if strings.Contains(topic, vin) {
				r.errorf(t, "published for refused car %s: %s", vin, topic)
			}
		}
	}
	sub.mu.Unlock()
	if got := f.metric("fleet2mqtt_vehicle_refused_total") - refusedBefore; got < float64(upgradeRefusals) {
		r.errorf(t, "vehicle_refused_total grew by %v for %d refused upgrades", got, upgradeRefusals)
	}
	// The public key is served without a client certificate (404: no key
	// pair yet).
	kc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: f.carTLS()}}
	if resp, err := kc.Get("https://" + f.Vehicle + "/.well-known/appspecific/com.tesla.3p.public-key.pem"); err != nil {
		r.errorf(t, "public key path without a certificate: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusOK {
			r.errorf(t, "public key path: %d", resp.StatusCode)
		}
	}
	id := f.identities(2)[1]
	sendRecord(t, connectRaw(t, f, id, dialOptions{}), id.VIN, 61)
	r.figure("%d kinds of wrong client refused; %d upgrades refused and counted", len(cases)+1, upgradeRefusals)
}

func ptr[T any](v T) *T { return &v }

// slowWriter writes data one byte at a time, every gap, until the
// connection fails or everything is written; it returns how long the
// server kept the connection and whether the server closed it first.
func slowWriter(c net.Conn, data []byte, gap time.Duration) (time.Duration, bool) {
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(closed)
	}()
	for _, b := range data {
		select {
		case <-closed:
			return time.Since(start), true
		case <-time.After(gap):
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{b}); err != nil {
			return time.Since(start), true
		}
	}
	select {
	case <-closed:
		return time.Since(start), true
	case <-time.After(time.Second):
		return time.Since(start), false
	}
}

// TestSlowloris opens connections to the vehicle listener that crawl
// through the TLS handshake, the upgrade and the first frame.
func TestSlowloris(t *testing.T) {
	r := trial(t, areaHostile,
		"slow clients on the vehicle listener (handshake timeout 2 s, idle timeout 6 s): TLS handshake bytes one every 500 ms; upgrade headers one byte every 300 ms after the handshake; a frame header one byte every 500 ms after the upgrade; then 200 slow handshakes and upgrades at once while a real car connects",
		"each slow connection is closed by the server (handshake: within a few handshake timeouts; frame: within a few idle timeouts); the real car is served while they hang; goroutines back to the count before")
	f := startFleet(t, "slowloris", withConfig("vehicle.handshake_timeout", "2s"))
	baseG := f.goroutines()
	ids := f.identities(2)
	hello := clientHello(t)
	upgradeReq := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Network-Interface: wifi\r\nVersion: 2025.44.25.5\r\n\r\n")
	tlsWithCert := func() *tls.Config {
		cfg := f.carTLS()
		cfg.Certificates = []tls.Certificate{ids[0].Certificate}
		return cfg
	}

	t.Run("handshake", func(t *testing.T) {
		table.attacks.Add(1)
		c, err := net.Dial("tcp", f.Vehicle)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held, closed := slowWriter(c, hello[:min(len(hello), 60)], 500*time.Millisecond)
		if !closed {
			r.errorf(t, "a handshake sent one byte every 500 ms was still open after %v (handshake timeout 2 s)", held.Round(time.Second))
		}
		r.figure("slow handshake closed after %.1f s", held.Seconds())
	})
	t.Run("upgrade", func(t *testing.T) {
		table.attacks.Add(1)
		c, err := dialTLS(f.Vehicle, tlsWithCert(), dialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		held, closed := slowWriter(c.tls, upgradeReq, 300*time.Millisecond)
		if !closed {
			r.errorf(t, "upgrade headers sent one byte every 300 ms were still read after %v (handshake timeout 2 s)", held.Round(time.Second))
		}
		r.figure("slow upgrade closed after %.1f s", held.Seconds())
	})
	t.Run("frame", func(t *testing.T) {
		table.attacks.Add(1)
		c := connectRaw(t, f, ids[0], dialOptions{})
		var hdr bytes.Buffer
		_ = writeFrame(&hdr, true, opBinary, bytes.Repeat([]byte{0}, 40), 40)
		held, closed := slowWriter(c.tls, hdr.Bytes(), 500*time.Millisecond)
		if !closed {
			r.errorf(t, "a frame sent one byte every 500 ms was still read after %v (idle timeout 6 s)", held.Round(time.Second))
		}
		r.figure("slow frame closed after %.1f s", held.Seconds())
	})
	t.Run("crowd", func(t *testing.T) {
		const n = 200
		var wg sync.WaitGroup
		var open atomic.Int64
		var notClosed atomic.Int64
		for i := range n {
			wg.Go(func() {
				table.attacks.Add(1)
				var conn net.Conn
				data := hello
				gap := 500 * time.Millisecond
				if i%2 == 1 {
					c, err := dialTLS(f.Vehicle, tlsWithCert(), dialOptions{})
					if err != nil {
						return
					}
					conn, data, gap = c.tls, upgradeReq, 300*time.Millisecond
				} else {
					c, err := net.Dial("tcp", f.Vehicle)
					if err != nil {
						return
					}
					conn = c
				}
				defer conn.Close()
				open.Add(1)
				if _, closed := slowWriter(conn, data[:min(len(data), 60)], gap); !closed {
					notClosed.Add(1)
				}
			})
		}
		time.Sleep(time.Second)
		c := connectRaw(t, f, ids[1], dialOptions{})
		sendRecord(t, c, ids[1].VIN, 42)
		c.close()
		wg.Wait()
		if notClosed.Load() > 0 {
			r.errorf(t, "%d of %d slow connections were never closed by the server", notClosed.Load(), open.Load())
		}
		r.figure("%d slow connections at once: a real car was served meanwhile", open.Load())
	})
	if n := f.settleGoroutines(baseG+2, 20*time.Second); n > baseG+2 {
		r.errorf(t, "%d goroutines after the slow clients, %d before", n, baseG)
	}
}

// clientHello returns the first bytes a TLS client sends.
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, &tls.Config{ServerName: "127.0.0.1"}).Handshake() }()
	buf := make([]byte, 4096)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestOversizedFrames sends frames that are too large, fragmented beyond
// the limit, lying about their length or breaking the WebSocket rules.
func TestOversizedFrames(t *testing.T) {
	r := trial(t, areaHostile,
		"on an upgraded car connection: a 1,000,001-byte frame; 1.5 MB in 15 continuation frames; a valid record in 50 fragments; headers claiming 2^63−1 and 2^62 bytes followed by 4 MB; 32 MB in 64 KB continuation frames; a text frame; a 200-byte ping; an unmasked frame; reserved bits; a continuation without a start",
		"too large, up to 4 MB: the protocol's error response and the connection stays usable (the next record is acknowledged); fragments of a valid record: acknowledged; a header (or fragments) declaring more than 4 MB: the error response at once (well within the 6 s idle timeout), the connection closed, and a log line with the declared size and the limit; protocol violations: connection closed; fleet2mqtt's memory grows by less than 64 MB over all of it; goroutines back; a car is served afterwards")
	f := startFleet(t, "frames")
	baseG := f.goroutines()
	rss0, _ := f.memory()
	ids := f.identities(12)
	valid := func(i int) []byte { return recordFrame(ids[i].VIN, newTxID(), socData(float64(i))) }

	usable := []struct {
		name    string
		send    func(c *rawCar) error
		wantAck bool
	}{
		{"1,000,001 bytes", func(c *rawCar) error {
			return c.writeFrame(true, opBinary, make([]byte, 1_000_001))
		}, false},
		{"1.5 MB in 15 continuation frames", func(c *rawCar) error {
			chunk := make([]byte, 100_000)
			if err := c.writeFrame(false, opBinary, chunk); err != nil {
				return err
			}
			for i := 1; i < 15; i++ {
				if err := c.writeFrame(i == 14, opContinuation, chunk); err != nil {
					return err
				}
			}
			return nil
		}, false},
		{"valid record in 50 fragments", func(c *rawCar) error {
			fr := valid(2)
			step := len(fr)/50 + 1
			for i := 0; i*step < len(fr); i++ {
				op := byte(opContinuation)
				if i == 0 {
					op = opBinary
				}
				end := min((i+1)*step, len(fr))
				if err := c.writeFrame(end == len(fr), op, fr[i*step:end]); err != nil {
					return err
				}
			}
			return nil
		}, true},
	}
	for i, tc := range usable {
		t.Run(tc.name, func(t *testing.T) {
			table.attacks.Add(1)
			c := connectRaw(t, f, ids[i], dialOptions{})
			if err := tc.send(c); err != nil {
				r.fatalf(t, "%s: the server stopped reading: %v", tc.name, err)
			}
			ack, err := c.response(30 * time.Second)
			if err != nil || ack != tc.wantAck {
				r.errorf(t, "%s: answer ack=%v (%v), want ack=%v", tc.name, ack, err, tc.wantAck)
			}
			if err := c.writeFrame(true, opBinary, valid(i)); err != nil {
				r.fatalf(t, "%s: connection unusable afterwards: %v", tc.name, err)
			}
			if ack, err := c.response(15 * time.Second); err != nil || !ack {
				r.errorf(t, "%s: the next record was not acknowledged (%v, %v)", tc.name, ack, err)
			}
		})
	}

	refused := []struct {
		name     string
		declared uint64
		send     func(c *rawCar) error
	}{
		{"header claiming 2^63−1 bytes", math.MaxInt64, func(c *rawCar) error {
			return writeFrame(c.tls, true, opBinary, make([]byte, 4<<20), math.MaxInt64)
		}},
		{"header claiming 2^62 bytes", 1 << 62, func(c *rawCar) error {
			return writeFrame(c.tls, true, opBinary, make([]byte, 4<<20), 1<<62)
		}},
		{"32 MB in 64 KB continuation frames", 62 * 64 << 10, func(c *rawCar) error {
			chunk := make([]byte, 64<<10)
			if err := c.writeFrame(false, opBinary, chunk); err != nil {
				return err
			}
			for i := 1; i < 512; i++ {
				if err := c.writeFrame(i == 511, opContinuation, chunk); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for i, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			table.attacks.Add(1)
			mark := f.out.mark()
			c := connectRaw(t, f, ids[4+i%2], dialOptions{})
			start := time.Now()
			// The server stops reading at the header; what it does not read
			// may fill the buffers, so the car writes on its own.
			go func() { _ = tc.send(c) }()
			ack, err := c.response(5 * time.Second)
			if err != nil || ack {
				r.errorf(t, "%s: answer ack=%v (%v), want the error response at once", tc.name, ack, err)
			}
			if !c.closedByServer(5 * time.Second) {
				r.errorf(t, "%s: connection still open 5 s after the error response", tc.name)
			}
			r.figure("%s: error response and close after %.2f s", tc.name, time.Since(start).Seconds())
			want := `"declared":` + strconv.FormatUint(tc.declared, 10) + `,"limit":1000000`
			if !eventually(5*time.Second, func() bool {
				return len(f.out.find(mark, func(l string) bool { return strings.Contains(l, want) })) > 0
			}) {
				r.errorf(t, "%s: no log line with %s", tc.name, want)
			}
		})
	}
	violations := []struct {
		name string
		send func(c *rawCar) error
	}{
		{"text frame", func(c *rawCar) error { return c.writeFrame(true, opText, []byte("hello")) }},
		{"200-byte ping", func(c *rawCar) error { return c.writeFrame(true, opPing, make([]byte, 200)) }},
		{"unmasked frame", func(c *rawCar) error {
			_, err := c.tls.Write([]byte{0x82, 0x03, 1, 2, 3})
			return err
		}},
		{"reserved bits", func(c *rawCar) error {
			var b bytes.Buffer
			_ = writeFrame(&b, true, opBinary, valid(9), uint64(len(valid(9))))
			raw := b.Bytes()
			raw[0] |= 0x70
			_, err := c.tls.Write(raw)
			return err
		}},
		{"continuation without a start", func(c *rawCar) error { return c.writeFrame(true, opContinuation, valid(10)) }},
	}
	for i, tc := range violations {
		t.Run(tc.name, func(t *testing.T) {
			table.attacks.Add(1)
			c := connectRaw(t, f, ids[6+i%5], dialOptions{})
			if err := tc.send(c); err != nil {
				return // closed already
			}
			if !c.closedByServer(15 * time.Second) {
				r.errorf(t, "%s: connection still open 15 s later", tc.name)
			}
		})
	}
	_, peak := f.memory()
	if peak-rss0 > 64 {
		r.errorf(t, "peak RSS %.0f MB, %.0f MB above the start: oversized frames are held in memory", peak, peak-rss0)
	}
	if n := f.settleGoroutines(baseG+2, 30*time.Second); n > baseG+2 {
		r.errorf(t, "%d goroutines afterwards, %d before", n, baseG)
	}
	sendRecord(t, connectRaw(t, f, ids[11], dialOptions{}), ids[11].VIN, 71)
	r.figure("RSS %.0f MB before, peak %.0f MB", rss0, peak)
}

// burst makes n TCP connection attempts to addr at rate per second from
// many goroutines, each closed at once with a reset (so that no TIME_WAIT
// piles up on this side); it returns how many connected.
func burst(addr string, n, rate int) (connected, failed int64, took time.Duration) {
	var next atomic.Int64
	var ok, bad atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 512 {
		wg.Go(func() {
			d := net.Dialer{Timeout: 3 * time.Second}
			for {
				k := next.Add(1) - 1
				if k >= int64(n) {
					return
				}
				if wait := time.Until(start.Add(time.Duration(k) * time.Second / time.Duration(rate))); wait > 0 {
					time.Sleep(wait)
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					bad.Add(1)
					continue
				}
				ok.Add(1)
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		})
	}
	wg.Wait()
	return ok.Load(), bad.Load(), time.Since(start)
}

// TestConnectionBurst hammers every listener with connection attempts.
func TestConnectionBurst(t *testing.T) {
	n := envInt(t, "HARDENING_BURST", 10000)
	rate := max(envInt(t, "HARDENING_BURST_RATE", 10000), 1)
	r := trial(t, areaHostile,
		fmt.Sprintf("%d TCP connection attempts from loopback, aimed at %d per second (the rate this machine reached is in the figures), each reset at once, against each listener: vehicle (TLS), embedded MQTT broker, web", n, rate),
		"fleet2mqtt stays up; afterwards a car is served, an MQTT client subscribes and receives its record, /healthz answers; goroutines back to the count before")
	f := startFleet(t, "burst", withConfig("log.level", "info"))
	baseG := f.goroutines()
	for _, l := range []struct{ name, addr string }{{"vehicle", f.Vehicle}, {"mqtt", f.MQTT}, {"web", f.HTTP}} {
		ok, bad, took := burst(l.addr, n, rate)
		table.attacks.Add(int64(n))
		r.figure("%s: %d connected, %d failed, in %.1f s (%.0f/s)", l.name, ok, bad, took.Seconds(), float64(n)/took.Seconds())
		if !f.running() {
			r.fatalf(t, "fleet2mqtt died during the burst on the %s listener:\n%s", l.name, f.out.tail(20))
		}
	}
	if err := f.healthy(); err != nil {
		r.errorf(t, "after the burst: %v", err)
	}
	sub := subscribe(t, f.MQTT, subOptions{})
	id := f.identities(1)[0]
	sendRecord(t, connectRaw(t, f, id, dialOptions{}), id.VIN, 12)
	if !eventually(10*time.Second, func() bool { p, _ := sub.lastPayload("tesla/" + id.VIN + "/Soc"); return p == "12" }) {
		r.errorf(t, "the record of a car after the burst did not reach a subscriber")
	}
	sub.close()
	if g := f.settleGoroutines(baseG+5, 30*time.Second); g > baseG+5 {
		r.errorf(t, "%d goroutines after the burst, %d before", g, baseG)
	}
	rss, peak := f.memory()
	r.figure("RSS after %.0f MB, peak %.0f MB", rss, peak)
}

// MQTT packets, built by hand.

// mqttPacket is a fixed header (type and flags in first) with the
// remaining length encoded as MQTT does, followed by body.
func mqttPacket(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// mqttString is a length-prefixed string.
func mqttString(s []byte) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

// connectBody builds a CONNECT's variable header and payload.
func connectBody(name string, level, flags byte, props []byte, payload ...[]byte) []byte {
	b := mqttString([]byte(name))
	b = append(b, level, flags, 0, 30)
	if level == 5 {
		b = append(b, props...)
	}
	for _, p := range payload {
		b = append(b, mqttString(p)...)
	}
	return b
}

// validConnect is a clean MQTT 3.1.1 CONNECT.
func validConnect(id string) []byte {
	return mqttPacket(0x10, connectBody("MQTT", 4, 0x02, nil, []byte(id)))
}

// TestMalformedMQTT sends broken packets to the embedded broker.
func TestMalformedMQTT(t *testing.T) {
	r := trial(t, areaHostile,
		"raw packets at the embedded broker: 4 KB of garbage; PUBLISH before CONNECT; a remaining length of 5 bytes; protocol name MQTX; protocol level 9; the reserved CONNECT flag; will QoS 3; a password without a user name; a client id that is not UTF-8; MQTT 5 properties longer than the packet; a CONNECT cut short; two CONNECTs; SUBSCRIBE with an empty filter; PUBLISH to a wildcard topic; PUBLISH with QoS 3",
		"the broker closes each such connection (after a refusing CONNACK where one is due; a bad subscription may instead be refused in its SUBACK) and keeps serving: a subscriber connects and receives a car's record; fleet2mqtt stays up")
	f := startFleet(t, "mqtt-malformed")
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	garbage[0] = 0xF0 // AUTH-like type nibble with flags: never a CONNECT
	cases := []struct {
		name string
		data []byte
		// refused, when set, accepts an answer that refuses the packet
		// while the connection stays open (MQTT 5 allows a SUBACK with
		// a failure code for a bad filter).
		refused func(reply []byte) bool
	}{
		{"garbage", garbage, nil},
		{"PUBLISH before CONNECT", mqttPacket(0x30, append(mqttString([]byte("a")), "hi"...)), nil},
		{"remaining length of 5 bytes", []byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, nil},
		{"protocol name MQTX", mqttPacket(0x10, connectBody("MQTX", 4, 0x02, nil, []byte("x1"))), nil},
		{"protocol level 9", mqttPacket(0x10, connectBody("MQTT", 9, 0x02, nil, []byte("x2"))), nil},
		{"reserved CONNECT flag", mqttPacket(0x10, connectBody("MQTT", 4, 0x03, nil, []byte("x3"))), nil},
		{"will QoS 3", mqttPacket(0x10, connectBody("MQTT", 4, 0x02|0x04|0x18, nil, []byte("x4"), []byte("w"), []byte("m"))), nil},
		{"password without user name", mqttPacket(0x10, connectBody("MQTT", 4, 0x02|0x40, nil, []byte("x5"), []byte("pw"))), nil},
		{"client id not UTF-8", mqttPacket(0x10, connectBody("MQTT", 4, 0x02, nil, []byte{0xC3, 0x28, 0xFF})), nil},
		{"MQTT 5 properties past the end", mqttPacket(0x10, connectBody("MQTT", 5, 0x02, []byte{0xFF, 0xFF, 0xFF, 0x7F}, []byte("x6"))), nil},
		{"CONNECT cut short", mqttPacket(0x10, connectBody("MQTT", 4, 0x02, nil, []byte("x7")))[:8], nil},
		{"two CONNECTs", append(validConnect("x8"), validConnect("x8")...), nil},
		{"SUBSCRIBE with an empty filter", append(validConnect("x9"), mqttPacket(0x82, append([]byte{0, 1}, append(mqttString(nil), 1)...))...),
			func(reply []byte) bool { return bytes.Contains(reply, []byte{0x90, 0x03, 0x00, 0x01, 0x80}) }},
		{"PUBLISH to a wildcard topic", append(validConnect("x10"), mqttPacket(0x30, append(mqttString([]byte("tesla/+/Soc")), "1"...))...), nil},
		{"PUBLISH with QoS 3", append(validConnect("x11"), mqttPacket(0x36, append(mqttString([]byte("a/b")), 0, 1, '1'))...), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table.attacks.Add(1)
			c, err := net.DialTimeout("tcp", f.MQTT, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(tc.data)
			if tc.name == "CONNECT cut short" {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			wait := 10 * time.Second
			if tc.refused != nil {
				wait = 3 * time.Second
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			var reply bytes.Buffer
			_, err = io.Copy(&reply, io.LimitReader(c, 1<<20))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && (tc.refused == nil || !tc.refused(reply.Bytes())) {
				r.errorf(t, "%s: the broker kept the connection open for %v without refusing (answered % x)", tc.name, wait, reply.Bytes())
			}
		})
	}
	if !f.running() {
		r.fatalf(t, "fleet2mqtt died:\n%s", f.out.tail(20))
	}
	sub := subscribe(t, f.MQTT, subOptions{})
	id := f.identities(1)[0]
	sendRecord(t, connectRaw(t, f, id, dialOptions{}), id.VIN, 33)
	if !eventually(10*time.Second, func() bool { p, _ := sub.lastPayload("tesla/" + id.VIN + "/Soc"); return p == "33" }) {
		r.errorf(t, "after the malformed packets a car's record did not reach a subscriber")
	}
	r.figure("%d malformed packets, each connection closed, broker serving", len(cases))
}

// TestMQTTResourceLimits checks what a client that does not log in can
// make the embedded broker hold.
func TestMQTTResourceLimits(t *testing.T) {
	f := startFleet(t, "mqtt-limits")

	t.Run("oversized CONNECT", func(t *testing.T) {
		r := trial(t, areaHostile,
			"before logging in, a client on the embedded broker announces a CONNECT of 268,435,455 bytes (the MQTT maximum) and sends 32 MB of it",
			"the broker refuses a packet that large before reading it (closes the connection before 32 MB are taken); its memory does not grow by the packet's size")
		table.attacks.Add(1)
		rss0, _ := f.memory()
		c, err := net.DialTimeout("tcp", f.MQTT, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F})
		chunk := make([]byte, 64<<10)
		sent := 0
		for sent < 32<<20 {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Write(chunk)
			sent += n
			if err != nil {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
		rss1, _ := f.memory()
		r.figure("%d MB of an unauthenticated 256 MB CONNECT taken; RSS %.0f → %.0f MB", sent>>20, rss0, rss1)
		if sent >= 32<<20 {
			r.errorf(t, "the broker read %d MB of a 256 MB CONNECT from a client that had not logged in (RSS %.0f → %.0f MB): it allocates the announced size (mochi: no maximum packet size set)", sent>>20, rss0, rss1)
		}
	})

	t.Run("no CONNECT", func(t *testing.T) {
		r := trial(t, areaHostile,
			"1,000 clients open TCP connections to the embedded broker and never send CONNECT",
			"the broker closes connections that do not log in within 15 s; what they hold is released")
		baseG := f.goroutines()
		rss0, _ := f.memory()
		var conns []net.Conn
		for range 1000 {
			table.attacks.Add(1)
			c, err := net.DialTimeout("tcp", f.MQTT, 5*time.Second)
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		time.Sleep(time.Second)
		heldG := f.goroutines()
		rss1, _ := f.memory()
		start := time.Now()
		var closedCount atomic.Int64
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				_ = c.SetReadDeadline(start.Add(15 * time.Second))
				_, err := io.Copy(io.Discard, c)
				var ne net.Error
				if !(errors.As(err, &ne) && ne.Timeout()) {
					closedCount.Add(1)
				}
			})
		}
		wg.Wait()
		r.figure("%d idle connections held %d goroutines and %.0f MB; %d closed by the broker within 15 s", len(conns), heldG-baseG, rss1-rss0, closedCount.Load())
		if closedCount.Load() < int64(len(conns)) {
			r.errorf(t, "%d of %d connections that never sent CONNECT were still open after 15 s, holding %d goroutines (mochi sets no deadline before CONNECT)",
				int64(len(conns))-closedCount.Load(), len(conns), heldG-baseG)
		}
	})

	t.Run("subscription flood", func(t *testing.T) {
		const filters, perPacket = 200_000, 1000
		r := trial(t, areaHostile,
			fmt.Sprintf("an anonymous client on loopback subscribes to %d distinct topic filters, %d to a SUBSCRIBE (MQTT 3.1.1)", filters, perPacket),
			"it gets the first max_subscriptions (10,000), every other filter is refused in its SUBACK (0x80); one log line names the client; memory grows by less than 128 MB (10,000 subscriptions held take about 21 MB, the packets parsed leave garbage; 200,000 held took over 400 MB)")
		rss0, _ := f.memory()
		mark := f.out.mark()
		c, err := net.DialTimeout("tcp", f.MQTT, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		br := bufio.NewReader(c)
		if _, err := c.Write(validConnect("subscription-flood")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(br, make([]byte, 4)); err != nil {
			t.Fatalf("CONNACK: %v", err)
		}
		granted, refused := 0, 0
		for p := 0; p < filters/perPacket; p++ {
			table.attacks.Add(1)
			body := []byte{byte((p + 1) >> 8), byte(p + 1)}
			for i := range perPacket {
				body = append(body, mqttString(fmt.Appendf(nil, "flood/%d/x", p*perPacket+i))...)
				body = append(body, 0)
			}
			if _, err := c.Write(mqttPacket(0x82, body)); err != nil {
				r.fatalf(t, "SUBSCRIBE %d: %v", p, err)
			}
			// SUBACK: 0x90, the remaining length (2 bytes for 1,002), the packet id, one code per filter.
			ack := make([]byte, 1+2+2+perPacket)
			if _, err := io.ReadFull(br, ack); err != nil {
				r.fatalf(t, "SUBACK %d: %v", p, err)
			}
			if ack[0] != 0x90 || int(ack[1]&0x7f)|int(ack[2])<<7 != 2+perPacket {
				r.fatalf(t, "SUBACK %d: header % x, want 90 and a remaining length of %d", p, ack[:3], 2+perPacket)
			}
			for _, code := range ack[5:] {
				if code == 0x80 {
					refused++
				} else {
					granted++
				}
			}
		}
		rss1, _ := f.memory()
		lines := len(f.out.find(mark, func(l string) bool {
			return strings.Contains(l, "more are refused") && strings.Contains(l, "subscription-flood")
		}))
		r.figure("%d filters granted, %d refused; %d log line; RSS %.0f → %.0f MB", granted, refused, lines, rss0, rss1)
		if granted != 10_000 || refused != filters-10_000 {
			r.errorf(t, "%d filters granted and %d refused, want 10000 and %d", granted, refused, filters-10_000)
		}
		if lines != 1 {
			r.errorf(t, "%d log lines about the client's subscriptions, want 1", lines)
		}
		if rss1-rss0 > 128 {
			r.errorf(t, "RSS grew by %.0f MB", rss1-rss0)
		}
	})
}
