// Package networking_test proves the network recipes of docs/networking.md
// with real programs on loopback: the SNI routers (nginx's stream module,
// HAProxy in TCP mode) and the OpenSSH reverse tunnel pass a simulated
// car's mutual TLS connection through to fleet2mqtt untouched, and
// fleet2mqtt still knows the car by its certificate.
//
// fleet2mqtt is driven as its built binary (serve, dev-certs, simulate),
// the proxies and sshd as Debian ships them. A missing program skips its
// test, or fails it when CI=true.
package networking_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// carHost is the public host name of the examples, the name cars ask for.
const carHost = "tesla.example.com"

// The simulated car's certificate is issued to certVIN; the car claims
// claimedVIN in what it sends.
const (
	certVIN    = "5YJYGDEE9MF000042"
	claimedVIN = "5YJ3E1EA8SF000001"
)

// How long the slow steps may take before the test gives up.
const (
	buildLimit   = 5 * time.Minute
	startLimit   = 20 * time.Second
	deliverLimit = 30 * time.Second
)

// binary is fleet2mqtt built once for the package's tests.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// fleetBinary builds ./cmd/fleet2mqtt into a temporary directory (once).
func fleetBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "fleet2mqtt-networking-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "fleet2mqtt")
		ctx, cancel := context.WithTimeout(context.Background(), buildLimit)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binary.path, "../../cmd/fleet2mqtt")
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/fleet2mqtt: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// need returns the path of a program the test needs, or skips the test
// (fails it when CI=true) naming the Debian package to install.
func need(t *testing.T, path, debianPackage string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if p, err := exec.LookPath(filepath.Base(path)); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: install the Debian package %s (apt-get install %s)", path, debianPackage, debianPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// fleet is a running fleet2mqtt with a development PKI whose server
// certificate also names carHost and whose one car certificate is vin's.
type fleet struct {
	bin         string
	pki         string
	vin         string // the CN of the car's certificate
	vehicleAddr string
	mqttAddr    string
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	bin := fleetBinary(t)
	dir := t.TempDir()
	f := &fleet{bin: bin, pki: filepath.Join(dir, "pki")}
	run(t, bin, "dev-certs", "--out", f.pki, "--name", carHost, "--name", "ha.example.com", "--vin", certVIN)
	// The simulator names a car after its certificate's file, and says that
	// VIN in every record it sends; the file is renamed so that the car
	// claims another VIN than its certificate's. fleet2mqtt must go by the
	// certificate, however the connection reached it.
	vehicles := filepath.Join(f.pki, "vehicles")
	for _, suffix := range []string{".pem", "-key.pem"} {
		if err := os.Rename(filepath.Join(vehicles, certVIN+suffix), filepath.Join(vehicles, claimedVIN+suffix)); err != nil {
			t.Fatal(err)
		}
	}
	f.vin = carCertificateVIN(t, f.pki)
	if f.vin != certVIN {
		t.Fatalf("the car certificate is %s's, want %s's", f.vin, certVIN)
	}

	f.vehicleAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	f.mqttAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	config := fmt.Sprintf(`data_dir: %s
vehicle:
  listen: %s
  cert_file: %s
  key_file: %s
  client_ca_files:
    - %s
mqtt:
  embedded:
    listen: %s
    persist: false
http:
  listen: %s
`, filepath.Join(dir, "data"), f.vehicleAddr,
		filepath.Join(f.pki, "server.pem"), filepath.Join(f.pki, "server-key.pem"),
		filepath.Join(f.pki, "vehicle-ca.pem"), f.mqttAddr, httpAddr)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "fleet2mqtt serve", bin, "serve", "-config", cfg)
	waitFor(t, "fleet2mqtt's /healthz", func() error {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	return f
}

// carCertificateVIN returns the VIN dev-certs put in the common name of
// the one car certificate in its vehicles folder.
func carCertificateVIN(t *testing.T, pki string) string {
	t.Helper()
	certs, err := filepath.Glob(filepath.Join(pki, "vehicles", "*[0-9].pem"))
	if err != nil || len(certs) != 1 {
		t.Fatalf("car certificates in %s: %v %v, want one", pki, certs, err)
	}
	raw, err := os.ReadFile(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s: no PEM block", certs[0])
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Subject.CommonName) != 17 {
		t.Fatalf("%s: common name %q is not a VIN", certs[0], c.Subject.CommonName)
	}
	return c.Subject.CommonName
}

// streamCarVia runs `fleet2mqtt simulate` against addr, asking for
// carHost as a real car does, and waits until fleet2mqtt publishes that
// the car with the certificate's VIN is connected and one of its signals.
func (f *fleet) streamCarVia(t *testing.T, addr string) {
	t.Helper()
	sub := subscribe(t, f.mqttAddr, "tesla/#")
	car := startProcess(t, "fleet2mqtt simulate", f.bin, "simulate", "--certs", f.pki,
		"--server", addr, "--server-name", carHost, "--scenario", "charge", "--speed", "10")
	connected := "tesla/" + f.vin + "/connected"
	if got := sub.waitFor(connected, "true"); got != "true" {
		t.Fatalf("%s is %q, want true; simulate said:\n%s", connected, got, car.output())
	}
	signal := sub.waitTopic(func(topic string) bool {
		return strings.HasPrefix(topic, "tesla/"+f.vin+"/") && topic != connected
	})
	if signal == "" {
		t.Fatalf("no signal of %s published; simulate said:\n%s", f.vin, car.output())
	}
	for _, topic := range sub.topics() {
		if parts := strings.Split(topic, "/"); len(parts) > 2 && parts[1] != "bridge" && parts[1] != f.vin {
			t.Errorf("published %s: a car other than the certificate's %s (the car claimed %s)", topic, f.vin, claimedVIN)
		}
	}
	t.Logf("car %s streams through %s: %s, %s", f.vin, addr, connected, signal)
}

// refusesCarWithoutCertificate shows that the TLS session through addr
// ends at fleet2mqtt: the server certificate is fleet2mqtt's own, and a
// stream without a car certificate is refused by fleet2mqtt itself.
func (f *fleet) refusesCarWithoutCertificate(t *testing.T, addr string) {
	t.Helper()
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(f.pki, "ca.pem"))
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("read ca.pem: %v", err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: startLimit}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: carHost, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS through %s: %v", addr, err)
	}
	defer conn.Close()
	serverPEM, err := os.ReadFile(filepath.Join(f.pki, "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(serverPEM)
	if block == nil || !bytes.Equal(conn.ConnectionState().PeerCertificates[0].Raw, block.Bytes) {
		t.Errorf("through %s the server certificate is not fleet2mqtt's server.pem", addr)
	}
	// A car's WebSocket upgrade, without the car certificate: fleet2mqtt
	// itself answers 401 (it asks for client certificates and refuses
	// streams without one).
	_ = conn.SetDeadline(time.Now().Add(deliverLimit))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", carHost)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a stream without a car certificate through %s: %v", addr, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a stream without a car certificate through %s: %s %q, want fleet2mqtt's 401", addr, resp.Status, body)
	}
}

// otherService is a TLS server standing for Home Assistant: it presents
// the PKI's server certificate and greets every client with its name.
func (f *fleet) otherService(t *testing.T, greeting string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(f.pki, "server.pem"), filepath.Join(f.pki, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte(greeting))
			}()
		}
	}()
	return ln.Addr().String()
}

// greetingVia dials addr asking for serverName and returns what the
// server behind it says first.
func (f *fleet) greetingVia(t *testing.T, addr, serverName string) string {
	t.Helper()
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(f.pki, "ca.pem"))
	roots.AppendCertsFromPEM(ca)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: startLimit}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to %s through %s: %v", serverName, addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(deliverLimit))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	return string(buf[:n])
}

// process is a program started for a test, stopped by its cleanup.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startProcess(t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(path, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// The program dies with the test binary if that is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s said:\n%s", name, p.output())
		}
	})
	return p
}

func (p *process) output() string { return p.out.String() }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// run runs a program to its end and fails the test when it fails.
func run(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFor retries check until it succeeds or startLimit has passed.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(startLimit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v", what, startLimit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListening waits until something accepts TCP connections at addr.
func waitListening(t *testing.T, what, addr string, p *process) {
	t.Helper()
	waitFor(t, what, func() error {
		if p.exited() {
			t.Fatalf("%s exited:\n%s", what, p.output())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// subscriber keeps the last payload of every topic an MQTT client gets.
type subscriber struct {
	mu   sync.Mutex
	msgs map[string]string
	seen chan struct{}
}

func subscribe(t *testing.T, addr, filter string) *subscriber {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{msgs: map[string]string{}, seen: make(chan struct{}, 1)}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.mu.Lock()
			s.msgs[pr.Packet.Topic] = string(pr.Packet.Payload)
			s.mu.Unlock()
			select {
			case s.seen <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), startLimit)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "networking-test", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return s
}

// waitTopic returns the first topic match accepts, or "" after deliverLimit.
func (s *subscriber) waitTopic(match func(topic string) bool) string {
	deadline := time.After(deliverLimit)
	for {
		for _, topic := range s.topics() {
			if match(topic) {
				return topic
			}
		}
		select {
		case <-s.seen:
		case <-deadline:
			return ""
		}
	}
}

// waitFor waits until topic's last payload is want and returns the last
// payload seen.
func (s *subscriber) waitFor(topic, want string) string {
	deadline := time.After(deliverLimit)
	for {
		s.mu.Lock()
		got := s.msgs[topic]
		s.mu.Unlock()
		if got == want {
			return got
		}
		select {
		case <-s.seen:
		case <-deadline:
			return got
		}
	}
}

func (s *subscriber) topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	topics := make([]string, 0, len(s.msgs))
	for topic := range s.msgs {
		topics = append(topics, topic)
	}
	return topics
}

// example reads a file of this folder and checks that docs/networking.md
// shows it verbatim, so that what the docs say is what the tests run.
func example(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "networking.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, raw) {
		t.Errorf("docs/networking.md does not show examples/networking/%s as it is: copy the file into the doc", name)
	}
	return string(raw)
}

// substitute replaces each old string, which must occur exactly once in
// s, by its new one: the test's loopback ports and files in place of the
// example's.
func substitute(t *testing.T, s string, oldNew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldNew); i += 2 {
		if n := strings.Count(s, oldNew[i]); n != 1 {
			t.Fatalf("the example has %q %d times, want once", oldNew[i], n)
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}
