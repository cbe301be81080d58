package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mosquittoPackage is the Debian package that ships mosquitto and
// mosquitto_passwd.
const mosquittoPackage = "mosquitto"

// How long to wait for mosquitto to listen and to exit.
const (
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
)

// Broker is a mosquitto process started by Mosquitto. Its listeners bind
// 127.0.0.1 only and keep their ports across Stop and Start.
type Broker struct {
	// Addr is the plain MQTT listener, "127.0.0.1:PORT".
	Addr string
	// TLSAddr is the MQTT-over-TLS listener (WithTLS), else empty.
	TLSAddr string
	// WSAddr is the MQTT-over-WebSocket listener (WithWebSockets), else empty.
	WSAddr string
	// WSSAddr is the WebSocket listener over TLS (WithWebSockets and WithTLS),
	// else empty.
	WSSAddr string
	// Dir holds the configuration, the persistence database and the log.
	Dir string

	t        testing.TB
	bin      string
	settings settings
	confPath string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Option changes how Mosquitto configures the broker.
type Option func(*settings)

type settings struct {
	users          [][2]string
	tls            *TLSFiles
	websockets     bool
	global         []string
	listenerConfig []string
}

// WithUser adds a user to a password file and turns anonymous access off.
// The password file is made with mosquitto_passwd; when that tool is missing
// the test is skipped (failed when CI=true).
func WithUser(name, password string) Option {
	return func(s *settings) { s.users = append(s.users, [2]string{name, password}) }
}

// WithTLS adds an MQTT-over-TLS listener (Broker.TLSAddr) that presents the
// server certificate in files. Together with WithWebSockets it also adds a
// WebSocket-over-TLS listener (Broker.WSSAddr).
func WithTLS(files *TLSFiles) Option {
	return func(s *settings) { s.tls = files }
}

// WithWebSockets adds an MQTT-over-WebSocket listener (Broker.WSAddr).
func WithWebSockets() Option {
	return func(s *settings) { s.websockets = true }
}

// WithConfig adds lines to the global part of mosquitto.conf, for example
// "max_queued_messages 0" or "max_inflight_messages 0".
func WithConfig(lines ...string) Option {
	return func(s *settings) { s.global = append(s.global, lines...) }
}

// WithListenerConfig adds lines after every listener line, for options that
// mosquitto applies per listener, such as "max_topic_alias 100".
func WithListenerConfig(lines ...string) Option {
	return func(s *settings) { s.listenerConfig = append(s.listenerConfig, lines...) }
}

// Mosquitto starts a mosquitto broker for the test on free loopback ports,
// with anonymous access (unless WithUser) and persistence in its own
// directory, so that client sessions and queued QoS 1 messages survive Stop
// and Start. It waits until every listener accepts connections and stops the
// broker when the test ends.
//
// When mosquitto is not installed the test is skipped, or failed when the
// environment variable CI is "true".
func Mosquitto(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	bin := findBinary(t, "mosquitto", "/usr/sbin/mosquitto")
	b := &Broker{t: t, bin: bin, Dir: t.TempDir()}
	for _, o := range opts {
		o(&b.settings)
	}
	b.confPath = filepath.Join(b.Dir, "mosquitto.conf")
	b.logPath = filepath.Join(b.Dir, "mosquitto.log")
	if err := os.MkdirAll(filepath.Join(b.Dir, "data"), 0o700); err != nil {
		t.Fatalf("testenv: create data directory: %v", err)
	}
	if len(b.settings.users) > 0 {
		b.writePasswords()
	}
	t.Cleanup(b.Stop)

	// Another process may take a port between FreePort and mosquitto's bind;
	// choose new ports and try again in that case.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		b.choosePorts()
		b.writeConfig()
		if err = b.start(); err == nil {
			return b
		}
		if !strings.Contains(b.Log(), "in use") {
			break
		}
	}
	t.Fatalf("testenv: start mosquitto: %v\n%s", err, b.Log())
	return nil
}

// URL returns the plain listener's address as an mqtt:// URL.
func (b *Broker) URL() string { return "mqtt://" + b.Addr }

// Log returns what mosquitto has logged so far.
func (b *Broker) Log() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(data)
}

// Start starts the broker again after Stop or Kill, on the same ports and
// with the same data. It fails the test if the broker does not come up.
func (b *Broker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatalf("testenv: restart mosquitto: %v\n%s", err, b.Log())
	}
}

// Stop terminates the broker with SIGTERM, so that it saves its persistence
// database, and waits until it has exited. Stopping a stopped broker does
// nothing.
func (b *Broker) Stop() { b.signal(sigTerm) }

// Kill ends the broker with SIGKILL: nothing is saved since the last Stop.
func (b *Broker) Kill() { b.signal(os.Kill) }

// Pause freezes the broker (SIGSTOP): connections stay open but nothing is
// read or answered, as with a hung broker or a dead network path.
func (b *Broker) Pause() { b.notify(sigStop) }

// Resume lets a paused broker run again (SIGCONT).
func (b *Broker) Resume() { b.notify(sigCont) }

func (b *Broker) notify(sig os.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil && sig != nil {
		_ = b.cmd.Process.Signal(sig)
	}
}

func (b *Broker) signal(sig os.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	if sigCont != nil {
		_ = b.cmd.Process.Signal(sigCont) // a paused broker must run to exit
	}
	select {
	case <-b.exited:
	case <-time.After(stopTimeout):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return errors.New("already running")
	}
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close()

	cmd := exec.Command(b.bin, "-c", b.confPath)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", b.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.cmd, b.exited = cmd, exited

	deadline := time.Now().Add(startTimeout)
	for _, addr := range b.addrs() {
		for {
			conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				b.cmd = nil
				return fmt.Errorf("mosquitto exited before listening on %s", addr)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-exited
				b.cmd = nil
				return fmt.Errorf("mosquitto does not listen on %s after %v", addr, startTimeout)
			}
		}
	}
	return nil
}

func (b *Broker) addrs() []string {
	var addrs []string
	for _, a := range []string{b.Addr, b.TLSAddr, b.WSAddr, b.WSSAddr} {
		if a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func (b *Broker) choosePorts() {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(FreePort(b.t)) }
	b.Addr = addr()
	b.TLSAddr, b.WSAddr, b.WSSAddr = "", "", ""
	if b.settings.tls != nil {
		b.TLSAddr = addr()
	}
	if b.settings.websockets {
		b.WSAddr = addr()
		if b.settings.tls != nil {
			b.WSSAddr = addr()
		}
	}
}

func (b *Broker) writeConfig() {
	var c strings.Builder
	line := func(parts ...string) {
		c.WriteString(strings.Join(parts, " "))
		c.WriteByte('\n')
	}
	line("# written by internal/testenv")
	if os.Geteuid() == 0 {
		// Run as root would otherwise switch to the mosquitto user, which
		// cannot write to the test's directory.
		line("user root")
	}
	line("per_listener_settings false")
	line("persistence true")
	line("persistence_location", filepath.Join(b.Dir, "data")+string(filepath.Separator))
	// mosquitto buffers stdout; its log file is written line by line.
	line("log_dest file", b.logPath)
	if os.Getenv("TESTENV_MOSQUITTO_DEBUG") != "" {
		line("log_type all")
	} else {
		line("log_type error")
		line("log_type warning")
		line("log_type notice")
		line("log_type information")
	}
	if len(b.settings.users) > 0 {
		line("allow_anonymous false")
		line("password_file", filepath.Join(b.Dir, "passwords"))
	} else {
		line("allow_anonymous true")
	}
	for _, l := range b.settings.global {
		line(l)
	}
	listener := func(addr string, tls bool, protocol string) {
		host, port, _ := net.SplitHostPort(addr)
		line("listener", port, host)
		if protocol != "" {
			line("protocol", protocol)
		}
		if tls {
			line("certfile", b.settings.tls.CertFile)
			line("keyfile", b.settings.tls.KeyFile)
		}
		for _, l := range b.settings.listenerConfig {
			line(l)
		}
	}
	listener(b.Addr, false, "")
	if b.TLSAddr != "" {
		listener(b.TLSAddr, true, "")
	}
	if b.WSAddr != "" {
		listener(b.WSAddr, false, "websockets")
	}
	if b.WSSAddr != "" {
		listener(b.WSSAddr, true, "websockets")
	}
	if err := os.WriteFile(b.confPath, []byte(c.String()), 0o600); err != nil {
		b.t.Fatalf("testenv: write mosquitto.conf: %v", err)
	}
}

func (b *Broker) writePasswords() {
	tool := findBinary(b.t, "mosquitto_passwd", "/usr/bin/mosquitto_passwd")
	file := filepath.Join(b.Dir, "passwords")
	for i, u := range b.settings.users {
		args := []string{"-b", file, u[0], u[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			b.t.Fatalf("testenv: mosquitto_passwd: %v\n%s", err, out)
		}
	}
}

// findBinary looks name up in PATH, then at fallback. When it is missing the
// test is skipped, or failed when CI=true.
func findBinary(t testing.TB, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	msg := fmt.Sprintf("testenv: %s not found in PATH or at %s; install the Debian package %q (apt-get install %s)",
		name, fallback, mosquittoPackage, mosquittoPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	} else {
		t.Skip(msg)
	}
	return ""
}
