//go:build hardening

package hardening

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// How long the binary may take to come up and to stop on a loaded
// machine.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// fleet is the fleet2mqtt binary run as a process, with a configuration
// file and data directory of its own, on loopback ports. Its output is
// kept (and scanned for secrets at the end of the suite). After the first
// start its ports are pinned, so that a restart listens where the cars and
// clients expect it.
type fleet struct {
	t       *testing.T
	name    string
	dir     string
	DataDir string
	cfg     map[string]any
	out     *output

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	stopping bool

	// Addresses of the listeners, known once started.
	Vehicle, MQTT, HTTP string

	pkiOnce sync.Once
	pki     *certs.Bundle
	pkiErr  error
}

// fleetOption changes the configuration before the first start.
type fleetOption func(*fleet)

// withConfig sets a configuration key, dotted ("vehicle.idle_timeout").
func withConfig(key string, value any) fleetOption {
	return func(f *fleet) { setKey(f.cfg, key, value) }
}

// withDataDir puts the data directory somewhere else (a small disk).
func withDataDir(dir string) fleetOption {
	return func(f *fleet) {
		f.DataDir = dir
		setKey(f.cfg, "data_dir", dir)
	}
}

// newFleet prepares fleet2mqtt with the suite's defaults: every listener on
// a free loopback port, short timeouts, debug logs in JSON, a configured
// setup password and client secret (both scanned for in the logs), and
// retained messages saved every second.
func newFleet(t *testing.T, name string, opts ...fleetOption) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{t: t, name: name, dir: dir, DataDir: filepath.Join(dir, "data")}
	f.cfg = map[string]any{
		"data_dir": f.DataDir,
		"log":      map[string]any{"level": "debug", "format": "json"},
		"vehicle": map[string]any{
			"listen":            "127.0.0.1:0",
			"ping_interval":     "2s",
			"idle_timeout":      "6s",
			"handshake_timeout": "3s",
			"write_timeout":     "3s",
			"handle_timeout":    "10s",
		},
		"mqtt": map[string]any{
			"embedded": map[string]any{"listen": "127.0.0.1:0", "persist_interval": "1s"},
		},
		"http": map[string]any{"listen": "127.0.0.1:0"},
		"setup": map[string]any{
			"password":      "setup-pw-" + rand.Text(),
			"client_id":     "hardening-client-id",
			"client_secret": "client-secret-" + rand.Text(),
		},
	}
	for _, o := range opts {
		o(f)
	}
	f.out = logs.open(name)
	for _, key := range []string{"setup.password", "setup.client_secret", "mqtt.external.password"} {
		if v, ok := getKey(f.cfg, key).(string); ok {
			logs.secret(key, v)
		}
	}
	if users, ok := getKey(f.cfg, "mqtt.embedded.users").([]any); ok {
		for _, u := range users {
			if m, ok := u.(map[string]any); ok {
				if pw, ok := m["password"].(string); ok {
					logs.secret("mqtt.embedded.users[].password", pw)
				}
			}
		}
	}
	t.Cleanup(f.cleanup)
	return f
}

// startFleet prepares and starts fleet2mqtt, failing the test if it does
// not come up.
func startFleet(t *testing.T, name string, opts ...fleetOption) *fleet {
	t.Helper()
	f := newFleet(t, name, opts...)
	f.mustStart()
	return f
}

// setKey sets a dotted key in a nested map, creating maps on the way.
func setKey(m map[string]any, key string, value any) {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}

// getKey reads a dotted key from a nested map.
func getKey(m map[string]any, key string) any {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m[parts[len(parts)-1]]
}

// environ is the binary's environment: this process's, without anything
// that would change fleet2mqtt's behaviour (add-on detection, data and
// config locations), and with proxies that lead nowhere, so that nothing
// it might try to fetch from the internet ever leaves this machine (Go
// never proxies loopback addresses).
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "FLEET2MQTT_"), name == "SUPERVISOR_TOKEN", name == "HASSIO_TOKEN",
			strings.EqualFold(name, "HTTP_PROXY"), strings.EqualFold(name, "HTTPS_PROXY"), strings.EqualFold(name, "NO_PROXY"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9")
}

// start writes the configuration and starts the binary; it returns once
// the binary has logged that it is ready, or with an error that carries
// the end of its output if it exited first.
func (f *fleet) start() error {
	f.mu.Lock()
	if f.cmd != nil {
		f.mu.Unlock()
		return errors.New("already running")
	}
	raw, err := yaml.Marshal(f.cfg)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	cfgPath := filepath.Join(f.dir, "config.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		f.mu.Unlock()
		return err
	}
	mark := f.out.mark()
	cmd := exec.Command(binPath, "serve", "-config", cfgPath)
	cmd.Env = environ()
	cmd.Stdout = f.out
	cmd.Stderr = f.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("run %s: %w", binPath, err)
	}
	exited := make(chan struct{})
	f.cmd, f.exited, f.exitErr, f.stopping = cmd, exited, nil, false
	f.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.mu.Lock()
		f.exitErr = err
		f.mu.Unlock()
		close(exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	line, err := f.out.waitFrom(ctx, mark, exited, func(l string) bool { return logMsg(l) == "fleet2mqtt ready" })
	if err != nil {
		if errors.Is(err, errExited) {
			f.mu.Lock()
			f.cmd = nil
			exitErr := f.exitErr
			f.mu.Unlock()
			return fmt.Errorf("fleet2mqtt exited before it was ready (%v):\n%s", exitErr, f.out.tailFrom(mark, 30))
		}
		f.kill()
		return fmt.Errorf("fleet2mqtt not ready after %v:\n%s", readyTimeout, f.out.tailFrom(mark, 30))
	}
	var ready struct{ Vehicle, MQTT, HTTP string }
	_ = json.Unmarshal([]byte(line), &ready)
	f.Vehicle, f.MQTT, f.HTTP = ready.Vehicle, ready.MQTT, ready.HTTP
	// Pin the ports for restarts.
	setKey(f.cfg, "vehicle.listen", f.Vehicle)
	if f.HTTP != "" {
		setKey(f.cfg, "http.listen", f.HTTP)
	}
	if getKey(f.cfg, "mqtt.broker") != "external" && f.MQTT != "" {
		setKey(f.cfg, "mqtt.embedded.listen", f.MQTT)
	}
	f.registerKeys()
	return nil
}

func (f *fleet) mustStart() {
	f.t.Helper()
	if err := f.start(); err != nil {
		f.t.Fatal(err)
	}
}

// errExited says the process ended while we waited for a line.
var errExited = errors.New("process exited")

// running reports whether the process runs.
func (f *fleet) running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cmd == nil {
		return false
	}
	select {
	case <-f.exited:
		return false
	default:
		return true
	}
}

// pid is the running process's id.
func (f *fleet) pid() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cmd == nil {
		return 0
	}
	return f.cmd.Process.Pid
}

// kill ends the process with SIGKILL: nothing is flushed or saved.
func (f *fleet) kill() {
	f.signal(syscall.SIGKILL)
}

// stop ends the process with SIGTERM, as a service manager does, and
// returns its exit code (-1 if it had to be killed).
func (f *fleet) stop() int {
	return f.signal(syscall.SIGTERM)
}

func (f *fleet) signal(sig syscall.Signal) int {
	f.mu.Lock()
	cmd, exited := f.cmd, f.exited
	f.stopping = true
	f.mu.Unlock()
	if cmd == nil {
		return 0
	}
	_ = cmd.Process.Signal(sig)
	code := 0
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		code = -1
	}
	f.mu.Lock()
	if code == 0 && sig != syscall.SIGKILL {
		var ee *exec.ExitError
		if errors.As(f.exitErr, &ee) {
			code = ee.ExitCode()
		}
	}
	f.cmd = nil
	f.mu.Unlock()
	return code
}

// cleanup stops the process at the end of the test and fails the test if
// it had died on its own.
func (f *fleet) cleanup() {
	f.mu.Lock()
	cmd, exited, stopping, exitErr := f.cmd, f.exited, f.stopping, f.exitErr
	f.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		if !stopping {
			f.t.Errorf("%s: fleet2mqtt died during the test (%v):\n%s", f.name, exitErr, f.out.tail(30))
		}
	default:
	}
	if code := f.stop(); code != 0 {
		f.t.Errorf("%s: fleet2mqtt stopped with exit code %d:\n%s", f.name, code, f.out.tail(30))
	}
}

// registerKeys adds the private keys in the data directory to the secrets
// that no log line may show.
func (f *fleet) registerKeys() {
	_ = filepath.WalkDir(f.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(raw, []byte("PRIVATE KEY-----")) {
			return nil
		}
		logs.secretPEM(filepath.Base(path), raw)
		return nil
	})
}

// bundle is the development PKI the binary made in its data directory.
func (f *fleet) bundle() *certs.Bundle {
	f.t.Helper()
	f.pkiOnce.Do(func() { f.pki, f.pkiErr = certs.LoadDir(filepath.Join(f.DataDir, "dev-pki")) })
	if f.pkiErr != nil {
		f.t.Fatalf("development PKI: %v", f.pkiErr)
	}
	return f.pki
}

// carTLS trusts the binary's development server certificate.
func (f *fleet) carTLS() *tls.Config {
	return &tls.Config{RootCAs: f.bundle().ServerCA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// carURL is the vehicle listener's WebSocket address.
func (f *fleet) carURL() string { return "wss://" + f.Vehicle + "/" }

// identities returns n cars with certificates from the binary's
// development vehicle authority.
func (f *fleet) identities(n int) []simulate.Identity {
	f.t.Helper()
	b := *f.bundle()
	b.Vehicles = nil // only issued test VINs
	ids, _, err := simulate.Identities(&b, n)
	if err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// get fetches a path of the web listener.
func (f *fleet) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + f.HTTP + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// healthy reports whether /healthz answers ok.
func (f *fleet) healthy() error {
	code, body, err := f.get("/healthz")
	if err != nil {
		return err
	}
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("/healthz: %d %q", code, body)
	}
	return nil
}

// metrics reads /metrics into a map from series (name with labels) to
// value.
func (f *fleet) metrics() (map[string]float64, error) {
	code, body, err := f.get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", code)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// metric reads one series, failing the test if /metrics cannot be read.
func (f *fleet) metric(series string) float64 {
	f.t.Helper()
	m, err := f.metrics()
	if err != nil {
		f.t.Fatalf("%s: %v", f.name, err)
	}
	v, ok := m[series]
	if !ok {
		keys := slices.Sorted(maps.Keys(m))
		f.t.Fatalf("%s: /metrics has no %s (has %d series, e.g. %v)", f.name, series, len(keys), keys[:min(5, len(keys))])
	}
	return v
}

// goroutines is the binary's goroutine count, from /metrics.
func (f *fleet) goroutines() int { return int(f.metric("go_goroutines")) }

// memory reads the process's resident and peak resident memory in MB.
func (f *fleet) memory() (rssMB, peakMB float64) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(f.pid()) + "/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		switch name {
		case "VmRSS":
			rssMB = kb / 1024
		case "VmHWM":
			peakMB = kb / 1024
		}
	}
	return rssMB, peakMB
}

// settleGoroutines waits until the goroutine count is at most limit and
// returns the last count seen.
func (f *fleet) settleGoroutines(limit int, timeout time.Duration) int {
	n := f.goroutines()
	deadline := time.Now().Add(timeout)
	for n > limit && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		n = f.goroutines()
	}
	return n
}

// logMsg returns the msg of a JSON log line, or "".
func logMsg(line string) string {
	if !strings.HasPrefix(line, "{") {
		return ""
	}
	var l struct{ Msg string }
	if json.Unmarshal([]byte(line), &l) != nil {
		return ""
	}
	return l.Msg
}

// eventually polls cond until it holds or timeout passes, and reports
// whether it held.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpStacks makes the process print every goroutine's stack (SIGQUIT;
// the process exits) into a file that outlives the test, for a test that
// found fleet2mqtt stuck; it returns the file's path.
func (f *fleet) dumpStacks() string {
	mark := f.out.mark()
	f.signal(syscall.SIGQUIT)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("hardening-%s-%d-stacks.txt", f.name, time.Now().Unix()))
	lines := f.out.find(mark, func(string) bool { return true })
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		return "(not written: " + err.Error() + ")"
	}
	return path
}
