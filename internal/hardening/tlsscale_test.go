//go:build hardening

package hardening

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowTLSAtScale: hundreds of clients crawl through the TLS handshake
// at once on the vehicle listener, and cars that finished it try to
// renegotiate.
func TestSlowTLSAtScale(t *testing.T) {
	n := envInt(t, "HARDENING_SLOW_TLS", 500)
	const timeout = 3 * time.Second
	r := trial(t, areaHostile,
		fmt.Sprintf("%d clients open TCP connections to the vehicle listener (handshake timeout 3 s) and send a TLS ClientHello one byte per second, all at once; a real car connects meanwhile; then 100 cars with valid certificates complete a TLS 1.2 handshake and ask to renegotiate (openssl s_client, R), 20 at a time", n),
		"every slow client is closed by the server within two handshake timeouts of its start; fleet2mqtt's memory grows by less than 64 MB; the real car's record is acknowledged within 5 s while they hang; every renegotiation is refused (the server answers with an alert and closes the connection, no second handshake); goroutines back to the count before; a car is served afterwards")
	f := startFleet(t, "slow-tls", withConfig("vehicle.handshake_timeout", timeout.String()))
	baseG := f.goroutines()
	rss0, _ := f.memory()
	hello := clientHello(t)
	ids := f.identities(2)

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		held      []time.Duration
		notClosed atomic.Int64
		dialFail  atomic.Int64
	)
	for range n {
		wg.Go(func() {
			table.attacks.Add(1)
			c, err := net.Dial("tcp", f.Vehicle)
			if err != nil {
				dialFail.Add(1)
				return
			}
			defer c.Close()
			d, closed := slowWriter(c, hello[:min(len(hello), 30)], time.Second)
			if !closed {
				notClosed.Add(1)
			}
			mu.Lock()
			held = append(held, d)
			mu.Unlock()
		})
	}
	time.Sleep(time.Second) // all connected and crawling
	start := time.Now()
	car := connectRaw(t, f, ids[0], dialOptions{})
	sendRecord(t, car, ids[0].VIN, 42)
	served := time.Since(start)
	car.close()
	if served > 5*time.Second {
		r.errorf(t, "the real car took %v to connect and be acknowledged", served)
	}
	peakDuring := 0.0
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if rss, _ := f.memory(); rss > peakDuring {
				peakDuring = rss
			}
		}
	}()
	wg.Wait()
	close(done)
	if notClosed.Load() > 0 {
		r.errorf(t, "%d of %d slow handshakes were never closed by the server", notClosed.Load(), n)
	}
	if dialFail.Load() > 0 {
		r.errorf(t, "%d of %d connections refused at TCP (the listener's backlog overflowed)", dialFail.Load(), n)
	}
	slices.Sort(held)
	if len(held) > 0 && held[len(held)-1] > 2*timeout+time.Second {
		r.errorf(t, "the slowest handshake was closed after %v (handshake timeout %v)", held[len(held)-1].Round(100*time.Millisecond), timeout)
	}
	if peakDuring-rss0 > 64 {
		r.errorf(t, "RSS grew from %.0f to %.0f MB with %d slow handshakes", rss0, peakDuring, n)
	}
	if len(held) > 0 {
		r.figure("%d slow handshakes: closed after %.1f s (median) to %.1f s (slowest), %d never; a real car connected and acknowledged in %v meanwhile; RSS %.0f MB before, %.0f MB with them",
			len(held), held[len(held)/2].Seconds(), held[len(held)-1].Seconds(), notClosed.Load(), served.Round(time.Millisecond), rss0, peakDuring)
	}

	// Renegotiation: TLS 1.2 allows a client to ask for a second
	// handshake on the same connection (each costs the server a key
	// exchange); TLS 1.3 has none.
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			r.fatalf(t, "openssl is needed for the renegotiation attempts")
		}
		t.Skip("openssl is not installed: renegotiation not tried")
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ids[1].Certificate.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(ids[1].Certificate.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.bundle().ServerCA.Cert.Raw})
	for name, data := range map[string][]byte{"car.pem": certPEM, "car-key.pem": keyPEM, "ca.pem": caPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs.secretPEM("renegotiating car key", keyPEM)
	const renegs, parallel = 100, 20
	var refused, handshaken, renegotiated atomic.Int64
	var sample atomic.Value
	sem := make(chan struct{}, parallel)
	cpu0 := cpuSeconds(f.pid())
	for range renegs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			table.attacks.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", f.Vehicle, "-tls1_2",
				"-cert", filepath.Join(dir, "car.pem"), "-key", filepath.Join(dir, "car-key.pem"),
				"-CAfile", filepath.Join(dir, "ca.pem"), "-servername", "127.0.0.1")
			pr, pw, _ := os.Pipe()
			cmd.Stdin = pr
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				return
			}
			pr.Close()
			// R asks for a renegotiation once the handshake is done; the
			// pipe stays open so that s_client waits for the server.
			time.Sleep(500 * time.Millisecond)
			_, _ = pw.WriteString("R\n")
			waited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-waited
			}
			pw.Close()
			s := out.String()
			if strings.Contains(s, "Verify return code: 0") || strings.Contains(s, "Verification: OK") {
				handshaken.Add(1)
			}
			if strings.Contains(s, "RENEGOTIATING") && (strings.Contains(s, "alert") || strings.Contains(s, "errno") || strings.Contains(s, ":error:")) {
				refused.Add(1)
			}
			// A second handshake that completed prints a second
			// verification result.
			if strings.Count(s, "verify return:1") > 2*strings.Count(s, "depth=0") && strings.Count(s, "depth=0") > 1 {
				renegotiated.Add(1)
			}
			sample.Store(s)
		})
	}
	wg.Wait()
	cpu := cpuSeconds(f.pid()) - cpu0
	last, _ := sample.Load().(string)
	if handshaken.Load() != renegs {
		r.errorf(t, "%d of %d TLS 1.2 handshakes with a valid car certificate completed; last output:\n%s", handshaken.Load(), renegs, shorten(last, 2000))
	}
	if refused.Load() != renegs || renegotiated.Load() > 0 {
		r.errorf(t, "%d of %d renegotiations refused, %d completed; last output:\n%s", refused.Load(), renegs, renegotiated.Load(), shorten(last, 2000))
	}
	if g := f.settleGoroutines(baseG+2, 20*time.Second); g > baseG+2 {
		r.errorf(t, "%d goroutines after the clients, %d before", g, baseG)
	}
	car = connectRaw(t, f, ids[0], dialOptions{})
	sendRecord(t, car, ids[0].VIN, 43)
	alert := ""
	for _, l := range strings.Split(last, "\n") {
		if strings.Contains(l, "alert") {
			alert = strings.TrimSpace(l)
			break
		}
	}
	r.figure("%d renegotiations asked after a TLS 1.2 handshake: %d refused (%s), %d completed; fleet2mqtt CPU %.2f s for them", renegs, refused.Load(), shorten(alert, 120), renegotiated.Load(), cpu)
}
