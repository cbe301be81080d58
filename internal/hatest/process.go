package hatest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// How long Home Assistant may take. Its first start on a busy two-core
// machine takes tens of seconds (it compiles and caches its translations).
const (
	StartLimit = 3 * time.Minute
	stopLimit  = 30 * time.Second
)

// HomeAssistant is a running Home Assistant Core.
type HomeAssistant struct {
	// URL is its HTTP API, http://127.0.0.1:PORT.
	URL string
	// Dir is its configuration directory.
	Dir string

	t       testing.TB
	hass    string
	logPath string
	token   string // an owner's access token, after onboarding

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// Start starts Home Assistant on a free loopback port with a new
// configuration directory, waits until it serves its API, completes
// onboarding (an owner user, then a token) and stops it when the test ends.
// Home Assistant's log is attached to the failure when it does not come up.
func Start(t testing.TB) *HomeAssistant {
	t.Helper()
	h := &HomeAssistant{t: t, hass: Find(t), Dir: t.TempDir()}
	h.logPath = filepath.Join(h.Dir, "output.log")
	port := testenv.FreePort(t)
	h.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := os.WriteFile(filepath.Join(h.Dir, "configuration.yaml"), []byte(configuration(port)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("Home Assistant's log:\n%s", h.Log())
		}
	})
	h.start()
	h.onboard()
	return h
}

// configuration is configuration.yaml: only what the tests use.
func configuration(port int) string {
	return fmt.Sprintf(`# Written by internal/hatest.
homeassistant:
  name: fleet2mqtt test
  unit_system: metric
  time_zone: UTC
  country: DE
  currency: EUR
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: %d
api:
websocket_api:
onboarding:
config:
logger:
  default: info
`, port)
}

// Restart starts Home Assistant again after Stop, with the same
// configuration directory (its registries, its owner and token), and waits
// until it has finished starting.
func (h *HomeAssistant) Restart() {
	h.t.Helper()
	h.start()
	h.waitRunning()
}

// start runs hass and waits until its HTTP API answers; the integrations
// may still be setting up.
func (h *HomeAssistant) start() {
	h.t.Helper()
	h.mu.Lock()
	if h.cmd != nil {
		h.mu.Unlock()
		h.t.Fatal("hatest: Home Assistant is already running")
	}
	out, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		h.t.Fatal(err)
	}
	defer out.Close()
	// --skip-pip: never install anything at run time; the install script
	// put every requirement in place.
	cmd := exec.Command(h.hass, "--config", h.Dir, "--skip-pip", "--log-no-color")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "HOME="+h.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		h.t.Fatalf("hatest: start %s: %v", h.hass, err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	h.cmd, h.exit = cmd, exit
	h.mu.Unlock()

	// Up when the onboarding API answers: it needs no token.
	deadline := time.Now().Add(StartLimit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/api/onboarding", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusNotFound {
				h.t.Logf("hatest: Home Assistant %s up in %v", Version, time.Since(start).Round(100*time.Millisecond))
				break
			}
		}
		select {
		case <-exit:
			h.mu.Lock()
			h.cmd = nil
			h.mu.Unlock()
			h.t.Fatalf("hatest: Home Assistant exited while starting:\n%s", h.Log())
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("hatest: Home Assistant did not serve %s/api/onboarding within %v (last error: %v):\n%s", h.URL, StartLimit, err, h.Log())
		}
	}
}

// Stop stops Home Assistant (SIGTERM, so that it saves its registries) and
// waits until it has exited. Stopping a stopped Home Assistant does nothing.
func (h *HomeAssistant) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exit:
	case <-time.After(stopLimit):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.exit
	}
	h.cmd = nil
}

// Log returns what Home Assistant has written to its console so far.
func (h *HomeAssistant) Log() string {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(data)
}

// logLine is the start of a Home Assistant log record:
// "2025-04-01 12:00:00.123 WARNING (MainThread) [homeassistant.components.mqtt.discovery] ...".
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? (DEBUG|INFO|WARNING|ERROR|CRITICAL) \([^)]*\) \[([^\]]+)\] `)

// Problems returns every record (with its continuation lines, such as a
// traceback) that Home Assistant logged at WARNING or above for which keep
// returns true; keep gets the logger's name and the record.
func (h *HomeAssistant) Problems(keep func(logger, record string) bool) []string {
	var out []string
	var cur strings.Builder
	var curLogger string
	var inProblem bool
	flush := func() {
		if inProblem && keep(curLogger, cur.String()) {
			out = append(out, strings.TrimRight(cur.String(), "\n"))
		}
		cur.Reset()
		inProblem = false
	}
	sc := bufio.NewScanner(strings.NewReader(h.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := logLine.FindStringSubmatch(line); m != nil {
			flush()
			inProblem = m[1] == "WARNING" || m[1] == "ERROR" || m[1] == "CRITICAL"
			curLogger = m[2]
		}
		if inProblem {
			cur.WriteString(line)
			cur.WriteByte('\n')
		}
	}
	flush()
	return out
}
