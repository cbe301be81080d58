package examples_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// The Node-RED release the flow is tested with, installed from the npm
// registry into the repository's .cache/ on first use. Node-RED 4.1 runs
// on Node.js 18.5 and later (5.x needs 22.9).
const (
	nodeREDVersion = "4.1.15"
	minNodeMajor   = 18
	flowFile       = "node-red/flow.json"
)

// How long the slow steps may take before the test gives up.
const (
	npmInstallTimeout = 5 * time.Minute
	nodeREDStartLimit = time.Minute
	deliveryLimit     = 30 * time.Second
)

// TestNodeREDFlow runs the example flow in a real Node-RED connected to
// fleet2mqtt's embedded broker, while a simulated car streams its charge
// state through fleet2mqtt's vehicle listener and bridge, and reads what
// the flow made of it from the flow's own HTTP endpoint.
func TestNodeREDFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Node-RED (installing it on first use): not in -short mode")
	}
	redJS := installNodeRED(t)
	f := startFleet(t)
	nr := startNodeRED(t, redJS, f.mqttAddr)

	vin := simulate.TestVIN(7)
	car := f.connectCar(t, vin)
	soc := field(t, "Soc")
	state := field(t, "DetailedChargeState")

	// Charging at 80.6 %: the flow reports it, rounded.
	car.send(t, telemetry.Datum{Field: soc, Value: telemetry.FloatValue(80.6)},
		telemetry.Datum{Field: state, Value: chargeState(t, "Charging")})
	got := nr.waitCar(t, vin, vin+" is Charging at 81%")
	if got.SOC == nil || *got.SOC != 80.6 || got.ChargeState != "Charging" || got.Streaming == nil || !*got.Streaming {
		t.Errorf("car as the flow keeps it: %+v", got)
	}

	// A live update, after the subscriptions are surely up.
	car.send(t, telemetry.Datum{Field: soc, Value: telemetry.FloatValue(90)},
		telemetry.Datum{Field: state, Value: chargeState(t, "Complete")})
	nr.waitCar(t, vin, vin+" is Complete at 90%")

	// An invalid state of charge reads None on MQTT: the flow drops the
	// percentage instead of showing NaN.
	car.send(t, telemetry.Datum{Field: soc, Value: telemetry.InvalidValue()})
	nr.waitCar(t, vin, vin+" is Complete")

	// The car goes away: fleet2mqtt publishes connected false.
	car.stop()
	nr.waitCar(t, vin, vin+" is Complete (not streaming)")
}

// fleet is fleet2mqtt's pipeline in-process, as the serve command wires
// it: embedded broker, bridge and vehicle listener on loopback ports, with
// a development PKI.
type fleet struct {
	mqttAddr    string
	vehicleAddr string
	pki         *certs.Bundle
	ctx         context.Context
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)

	ecfg := embedded.DefaultConfig()
	ecfg.Listen = "127.0.0.1:0"
	ecfg.Persist = false
	broker, err := embedded.New(ecfg, t.TempDir(), bridge.DefaultConfig().Prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.DefaultConfig(), broker, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Online(ctx); err != nil {
		t.Fatal(err)
	}

	pki, err := certs.NewBundle(nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.VehicleCA.Pool()}
	icfg := ingest.DefaultConfig()
	icfg.Listen = "127.0.0.1:0"
	srv, err := ingest.New(icfg, tc, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("vehicle listener: %v", err)
		}
		if err := broker.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return &fleet{mqttAddr: broker.Addr(embedded.ListenerTCP), vehicleAddr: ln.Addr().String(), pki: pki, ctx: ctx}
}

// simCar is a simulated car connected to the fleet.
type simCar struct {
	car    *simulate.Car
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fleet) connectCar(t *testing.T, vin string) *simCar {
	t.Helper()
	cert, err := f.pki.VehicleCA.IssueVehicle(vin)
	if err != nil {
		t.Fatal(err)
	}
	car, err := simulate.NewCar(simulate.CarConfig{
		URL: "wss://" + f.vehicleAddr + "/",
		VIN: vin,
		TLS: &tls.Config{RootCAs: f.pki.ServerCA.Pool(), Certificates: []tls.Certificate{cert}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	c := &simCar{car: car, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = car.Run(ctx)
	}()
	t.Cleanup(c.stop)
	wctx, wcancel := context.WithTimeout(ctx, deliveryLimit)
	defer wcancel()
	if err := car.WaitConnected(wctx); err != nil {
		t.Fatalf("car did not connect: %v (last error: %v)", err, car.Err())
	}
	return c
}

// send sends one data record and waits for its acknowledgement, which
// fleet2mqtt gives only once the broker has every message of it.
func (c *simCar) send(t *testing.T, data ...telemetry.Datum) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryLimit)
	defer cancel()
	if _, err := c.car.SendData(ctx, data); err != nil {
		t.Fatal(err)
	}
	if err := c.car.Flush(ctx); err != nil {
		t.Fatalf("record not acknowledged: %v", err)
	}
}

func (c *simCar) stop() {
	c.cancel()
	<-c.done
}

func field(t *testing.T, name string) telemetry.Field {
	t.Helper()
	f, ok := telemetry.FieldByName(name)
	if !ok {
		t.Fatalf("no signal %s", name)
	}
	return f
}

func chargeState(t *testing.T, short string) telemetry.Value {
	t.Helper()
	e := telemetry.EnumDetailedChargeStateValue
	v, ok := e.ByName(e.Prefix + short)
	if !ok {
		t.Fatalf("no charge state %s", short)
	}
	return telemetry.EnumOf(e, v)
}

// nodeRED is a running Node-RED with the example flow.
type nodeRED struct {
	base string        // http://127.0.0.1:PORT
	out  *syncBuffer   // its console output
	exit chan struct{} // closed when it has exited
}

// flowCar is one car as the flow's GET /tesla/charge reports it.
type flowCar struct {
	VIN         string   `json:"vin"`
	SOC         *float64 `json:"soc"`
	ChargeState string   `json:"charge_state"`
	Streaming   *bool    `json:"streaming"`
	Summary     string   `json:"summary"`
}

// startNodeRED runs Node-RED headless on a free loopback port, with the
// example flow whose broker node is pointed at mqttAddr.
func startNodeRED(t *testing.T, redJS, mqttAddr string) *nodeRED {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(mqttAddr)
	writeFlow(t, filepath.Join(dir, "flows.json"), host, port)

	uiPort := testenv.FreePort(t)
	settings := fmt.Sprintf(`// Written by examples/nodered_test.go.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %d,
    userDir: %q,
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: "/admin",
    httpNodeRoot: "/",
    disableEditor: true,
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    functionExternalModules: false,
    logging: { console: { level: "info", metrics: false, audit: false } }
};
`, uiPort, dir)
	settingsFile := filepath.Join(dir, "settings.js")
	if err := os.WriteFile(settingsFile, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("node", redJS, "--settings", settingsFile, "--userDir", dir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_RED_HOME="+dir, "HOME="+dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Node-RED: %v", err)
	}
	nr := &nodeRED{base: "http://127.0.0.1:" + strconv.Itoa(uiPort), out: out, exit: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(nr.exit)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-nr.exit:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-nr.exit
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("Node-RED output:\n%s", out.String())
		}
	})

	// Ready when the admin API serves the flow we gave it, broker patched.
	deadline := time.Now().Add(nodeREDStartLimit)
	for {
		flows, err := nr.get("/admin/flows")
		if err == nil && strings.Contains(flows, `"broker":"`+host+`"`) && strings.Contains(flows, `"port":"`+port+`"`) {
			return nr
		}
		select {
		case <-nr.exit:
			t.Fatalf("Node-RED exited:\n%s", out.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Node-RED did not serve its flows within %v (last: %v):\n%s", nodeREDStartLimit, err, out.String())
		}
	}
}

// writeFlow copies the example flow with its broker node pointed at
// host:port, failing if the flow has no such node.
func writeFlow(t *testing.T, path, host, port string) {
	t.Helper()
	raw, err := os.ReadFile(flowFile)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []map[string]any
	if err := json.Unmarshal(raw, &nodes); err != nil {
		t.Fatalf("%s: %v", flowFile, err)
	}
	brokers := 0
	for _, n := range nodes {
		if n["type"] == "mqtt-broker" {
			n["broker"], n["port"] = host, port
			brokers++
		}
	}
	if brokers != 1 {
		t.Fatalf("%s has %d mqtt-broker nodes, want 1", flowFile, brokers)
	}
	patched, err := json.Marshal(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, patched, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (nr *nodeRED) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nr.base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}

// waitCar polls the flow's GET /tesla/charge until the car's summary is
// want, and returns the car as the flow keeps it.
func (nr *nodeRED) waitCar(t *testing.T, vin, want string) flowCar {
	t.Helper()
	deadline := time.Now().Add(deliveryLimit)
	var last string
	for {
		body, err := nr.get("/tesla/charge")
		if err == nil {
			last = body
			var cars map[string]flowCar
			if err := json.Unmarshal([]byte(body), &cars); err != nil {
				t.Fatalf("GET /tesla/charge: %v: %s", err, body)
			}
			if c, ok := cars[vin]; ok && c.Summary == want {
				return c
			}
		} else {
			last = err.Error()
		}
		select {
		case <-nr.exit:
			t.Fatalf("Node-RED exited:\n%s", nr.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("flow never reported %q; last GET /tesla/charge: %s", want, last)
		}
	}
}

// installNodeRED returns the path of Node-RED's red.js, installing the
// pinned release into .cache/ at the repository root when it is not there
// yet. Without node or npm the test is skipped, or failed when CI is true.
func installNodeRED(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, fmt.Sprintf("%s is not installed (Debian packages: nodejs npm)", tool))
		}
	}
	v, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing(t, fmt.Sprintf("node --version: %v", err))
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < minNodeMajor {
		missing(t, fmt.Sprintf("Node.js %s is too old for Node-RED %s (needs %d.5 or later)", strings.TrimSpace(string(v)), nodeREDVersion, minNodeMajor))
	}

	cacheRoot, err := filepath.Abs(filepath.Join("..", ".cache"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cacheRoot, "node-red-"+nodeREDVersion)
	redJS := filepath.Join(dir, "node_modules", "node-red", "red.js")
	if installedVersion(dir) == nodeREDVersion {
		return redJS
	}
	if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	// Keep the cache out of git whatever the repository's .gitignore says.
	_ = os.WriteFile(filepath.Join(cacheRoot, ".gitignore"), []byte("*\n"), 0o644)

	staging, err := os.MkdirTemp(cacheRoot, "node-red-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(staging)
	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--no-save",
		"--no-package-lock", "--no-update-notifier", "--loglevel=error",
		"--prefix", staging, "node-red@"+nodeREDVersion)
	cmd.Dir = staging
	t.Logf("installing node-red@%s into %s", nodeREDVersion, dir)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install node-red@%s: %v\n%s", nodeREDVersion, err, out)
	}
	t.Logf("installed in %v", time.Since(start).Round(time.Second))
	if got := installedVersion(staging); got != nodeREDVersion {
		t.Fatalf("npm installed node-red %q, want %s", got, nodeREDVersion)
	}
	if err := os.Rename(staging, dir); err != nil {
		// Another run may have finished first; use its copy if good.
		if installedVersion(dir) != nodeREDVersion {
			t.Fatalf("move Node-RED into the cache: %v", err)
		}
	}
	return redJS
}

// installedVersion is the version of node-red installed under dir, or "".
func installedVersion(dir string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "node_modules", "node-red", "package.json"))
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &pkg) != nil {
		return ""
	}
	return pkg.Version
}

// missing skips the test for a missing tool, or fails it in CI, where a
// skipped test would hide that the example is no longer tested.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// syncBuffer collects a process's output from several goroutines.
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
