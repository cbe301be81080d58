package ingest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// helperEnv makes the test binary run a bare vehicle server instead of the
// tests, so that a benchmark can measure the server's memory on its own.
const helperEnv = "FLEET2MQTT_INGEST_HELPER_PKI"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(serveHelper(dir))
	}
	os.Exit(m.Run())
}

// serveHelper runs a vehicle server with the PKI in dir, prints its address
// and serves until its standard input closes.
func serveHelper(dir string) int {
	pki, err := certs.LoadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := DefaultConfig()
	sink := SinkFunc(func(context.Context, *telemetry.Record) error { return nil })
	srv, err := New(cfg, &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Each line "gc" returns freed memory to the system (so that RSS
		// shows what connections hold, not garbage); end of input stops.
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() == "gc" {
				debug.FreeOSMemory()
				if f := os.Getenv("FLEET2MQTT_INGEST_HEAPPROFILE"); f != "" {
					if out, err := os.Create(f); err == nil {
						_ = pprof.WriteHeapProfile(out)
						out.Close()
					}
				}
				fmt.Println("ok")
			}
		}
		cancel()
	}()
	fmt.Println(ln.Addr().String())
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// rssKB reads a process's resident set size.
func rssKB(pid int) (int64, error) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// BenchmarkIdleConnections opens 1,000 vehicle connections (mTLS
// WebSocket) to a server running in a child process and reports the
// server's resident memory per idle connection.
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 1000
	dir := b.TempDir()
	pki, err := certs.NewBundle([]string{"127.0.0.1"}, testVIN)
	if err != nil {
		b.Fatal(err)
	}
	if err := certs.WriteDir(dir, pki); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		addr, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		addr = strings.TrimSpace(addr)
		settle := func() {
			fmt.Fprintln(stdin, "gc")
			if _, err := out.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
		settle()
		before, err := rssKB(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}

		roots := x509.NewCertPool()
		roots.AddCert(pki.ServerCA.Cert)
		d := websocket.Dialer{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pki.Vehicles[testVIN]},
			ClientSessionCache: tls.NewLRUClientSessionCache(conns),
		}}
		b.StartTimer()
		open := make([]*websocket.Conn, 0, conns)
		for range conns {
			ws, _, err := d.Dial("wss://"+addr+"/", http.Header{})
			if err != nil {
				b.Fatalf("connection %d: %v", len(open), err)
			}
			open = append(open, ws)
		}
		b.StopTimer()
		rawAfter, err := rssKB(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		settle()
		after, err := rssKB(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(after-before)*1024/conns, "B/conn")
		b.ReportMetric(float64(rawAfter-before)*1024/conns, "B/conn-before-gc")
		b.ReportMetric(float64(before)/1024, "idle-MB")
		b.ReportMetric(float64(after)/1024, "MB-with-conns")
		for _, ws := range open {
			ws.Close()
		}
		stdin.Close()
		_ = cmd.Wait()
	}
}
