package ingest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// helperEnv makes the test binary run a bare vehicle server instead of the
// tests, so that a benchmark can measure the server on its own.
const helperEnv = "FLEET2MQTT_INGEST_HELPER_PKI"

// heapProfileEnv names a file the helper writes an exact heap profile to
// each time it is asked to collect garbage (the last one holds the cars).
const heapProfileEnv = "FLEET2MQTT_INGEST_HEAPPROFILE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(serveHelper(dir))
	}
	os.Exit(m.Run())
}

// serveHelper runs a vehicle server with the PKI in dir and a sink that
// accepts everything, prints its address and serves until its standard
// input closes. It answers each line of its input with one line:
//
//	gc   returns freed memory to the system (so that RSS shows what
//	     connections hold, not garbage) and answers with the bytes of live
//	     heap objects, of unused space in the heap's spans (fragmentation)
//	     and of goroutine stacks
//	cpu  answers with the CPU time the process has used, in microseconds
func serveHelper(dir string) int {
	pki, err := certs.LoadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := DefaultConfig()
	sink := SinkFunc(func(context.Context, *telemetry.Record) error { return nil })
	srv, err := New(cfg, &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}, sink, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	profile := os.Getenv(heapProfileEnv)
	if profile != "" {
		// Record every allocation, so that the profile's figures are exact
		// rather than sampled (at the price of a larger RSS).
		runtime.MemProfileRate = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			switch in.Text() {
			case "gc":
				debug.FreeOSMemory()
				if profile != "" {
					if out, err := os.Create(profile); err == nil {
						_ = pprof.WriteHeapProfile(out)
						out.Close()
					}
				}
				memory := []metrics.Sample{
					{Name: "/memory/classes/heap/objects:bytes"},
					{Name: "/memory/classes/heap/unused:bytes"},
					{Name: "/memory/classes/heap/stacks:bytes"},
				}
				metrics.Read(memory)
				fmt.Println(memory[0].Value.Uint64(), memory[1].Value.Uint64(), memory[2].Value.Uint64())
			case "cpu":
				var ru syscall.Rusage
				if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return
				}
				fmt.Println(ru.Utime.Nano()/1e3 + ru.Stime.Nano()/1e3)
			default:
				fmt.Fprintf(os.Stderr, "helper: unknown command %q\n", in.Text())
				return
			}
		}
	}()
	fmt.Println(ln.Addr().String())
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// helperServer is a vehicle server running in a child process (see
// serveHelper), so that its memory and CPU time are its own.
type helperServer struct {
	b     *testing.B
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addr  string
}

// startHelper starts a server with the PKI in dir; it stops when b ends.
func startHelper(b *testing.B, dir string) *helperServer {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &helperServer{b: b, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	h.addr = h.ask("")
	return h
}

// ask sends a command (none for "") and returns the answer.
func (h *helperServer) ask(command string) string {
	if command != "" {
		fmt.Fprintln(h.stdin, command)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		h.b.Fatalf("helper server, %q: %v", command, err)
	}
	return strings.TrimSpace(line)
}

// askInts sends a command and parses its answer as numbers.
func (h *helperServer) askInts(command string, into ...*int64) {
	answer := h.ask(command)
	if _, err := fmt.Sscan(answer, toAny(into)...); err != nil {
		h.b.Fatalf("helper server answered %q to %q: %v", answer, command, err)
	}
}

func toAny(ps []*int64) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// rss returns the server's resident set size in bytes.
func (h *helperServer) rss() int64 {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(h.cmd.Process.Pid), "status"))
	if err != nil {
		h.b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				h.b.Fatal(err)
			}
			return kb << 10
		}
	}
	h.b.Fatalf("no VmRSS in /proc/%d/status", h.cmd.Process.Pid)
	return 0
}

// helperPKI writes a development PKI with the test car to a directory for
// startHelper and returns both.
func helperPKI(b *testing.B) (string, *certs.Bundle) {
	dir := b.TempDir()
	pki, err := certs.NewBundle([]string{"127.0.0.1"}, testVIN)
	if err != nil {
		b.Fatal(err)
	}
	if err := certs.WriteDir(dir, pki); err != nil {
		b.Fatal(err)
	}
	return dir, pki
}

// benchFrame is what each benchmark car sends: one V record of 44 fields.
func benchFrame(b *testing.B) []byte {
	frame, err := os.ReadFile(filepath.Join(goldenDir, "06_v_many_fields.bin"))
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

// idleClients are the clients BenchmarkIdleConnections measures. What a
// connection keeps depends on the client: crypto/tls keeps, for the life
// of the connection, buffers as large as the largest TLS record and
// handshake message the client sent (Go's own client hello carries a
// 1,216-byte post-quantum key share, X25519MLKEM768, that cars do not
// send), and the client's certificate, parsed.
var idleClients = []struct {
	name   string
	curves []tls.CurveID // key shares offered; nil: Go's defaults
	resume bool          // resume TLS sessions instead of full handshakes
}{
	// As a car connects: X25519 and P-256 only, a full handshake with its
	// certificate.
	{name: "car", curves: []tls.CurveID{tls.X25519, tls.CurveP256}},
	// Go's client with its defaults, as fleet2mqtt simulate connects.
	{name: "go-client"},
	// Go's client resuming its sessions. All benchmark cars share one
	// certificate, and crypto/tls shares a certificate parsed from a session
	// ticket between connections, so this understates what cars with
	// certificates of their own cost.
	{name: "go-client-resumed", resume: true},
}

// BenchmarkIdleConnections opens 1,000 vehicle connections (mTLS
// WebSocket), each of which sends one record and reads its
// acknowledgement, to a server running in a child process, and reports the
// server's memory per idle connection: resident (B/conn after a garbage
// collection that returns freed memory to the system, and
// B/conn-before-gc) and, of it, live heap objects (objects-B/conn), space
// the heap cannot use for other sizes of objects (fragmentation-B/conn)
// and goroutine stacks (stack-B/conn); the rest is the runtime's metadata. With FLEET2MQTT_INGEST_HEAPPROFILE=file the
// server writes an exact heap profile with its idle cars to file (and
// its RSS figures grow by the profiling's own memory).
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 1000
	dir, pki := helperPKI(b)
	frame := benchFrame(b)
	roots := x509.NewCertPool()
	roots.AddCert(pki.ServerCA.Cert)
	for _, client := range idleClients {
		b.Run(client.name, func(b *testing.B) {
			tc := &tls.Config{
				RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pki.Vehicles[testVIN]},
				CurvePreferences: client.curves,
			}
			if client.resume {
				tc.ClientSessionCache = tls.NewLRUClientSessionCache(conns)
			}
			d := websocket.Dialer{TLSClientConfig: tc}
			b.StopTimer()
			for range b.N {
				idleConnections(b, dir, d, frame, conns)
			}
		})
	}
}

// idleConnections measures one server holding conns idle cars dialled with
// d, each of which has sent frame and read the answer.
func idleConnections(b *testing.B, dir string, d websocket.Dialer, frame []byte, conns int) {
	srv := startHelper(b, dir)
	type memory struct{ rss, objects, unused, stacks int64 }
	settle := func() (m memory) {
		srv.askInts("gc", &m.objects, &m.unused, &m.stacks)
		m.rss = srv.rss()
		return m
	}
	before := settle()

	b.StartTimer()
	open := make([]*websocket.Conn, 0, conns)
	defer func() {
		for _, ws := range open {
			ws.Close()
		}
	}()
	for range conns {
		ws, _, err := d.Dial("wss://"+srv.addr+"/", http.Header{})
		if err != nil {
			b.Fatalf("connection %d: %v", len(open), err)
		}
		open = append(open, ws)
		if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	rawAfter := srv.rss()
	after := settle()

	perConn := func(before, after int64) float64 { return float64(after-before) / float64(conns) }
	b.ReportMetric(perConn(before.rss, after.rss), "B/conn")
	b.ReportMetric(perConn(before.rss, rawAfter), "B/conn-before-gc")
	b.ReportMetric(perConn(before.objects, after.objects), "objects-B/conn")
	b.ReportMetric(perConn(before.unused, after.unused), "fragmentation-B/conn")
	b.ReportMetric(perConn(before.stacks, after.stacks), "stack-B/conn")
	b.ReportMetric(float64(before.rss)/(1<<20), "idle-MB")
	b.ReportMetric(float64(after.rss)/(1<<20), "MB-with-conns")
}

// BenchmarkFrames measures the server's CPU time per frame: 50 cars, each
// sending one 44-field record at a time and waiting for its
// acknowledgement, to a server in a child process whose sink accepts
// everything. Reports server-µs/frame (user and system time of the server
// process, including its TLS and WebSocket work).
func BenchmarkFrames(b *testing.B) {
	const cars = 50
	dir, pki := helperPKI(b)
	frame := benchFrame(b)
	roots := x509.NewCertPool()
	roots.AddCert(pki.ServerCA.Cert)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pki.Vehicles[testVIN]},
	}}
	srv := startHelper(b, dir)
	conns := make([]*websocket.Conn, cars)
	for i := range conns {
		ws, _, err := d.Dial("wss://"+srv.addr+"/", http.Header{})
		if err != nil {
			b.Fatal(err)
		}
		defer ws.Close()
		conns[i] = ws
	}
	var cpuBefore, cpuAfter int64
	srv.askInts("cpu", &cpuBefore)
	b.ResetTimer()
	errc := make(chan error, cars)
	for i, ws := range conns {
		n := b.N / cars
		if i < b.N%cars {
			n++
		}
		go func() {
			for range n {
				if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
					errc <- err
					return
				}
				if _, _, err := ws.ReadMessage(); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range conns {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	srv.askInts("cpu", &cpuAfter)
	b.ReportMetric(float64(cpuAfter-cpuBefore)/float64(b.N), "server-µs/frame")
}
