package hatest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
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

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// How long fleet2mqtt's steps may take.
const (
	fleetStartLimit = 30 * time.Second
	deliveryLimit   = 30 * time.Second
)

// buildFleet2mqtt builds the fleet2mqtt program into a temporary directory.
// The tests drive the program as users run it, through its configuration
// file and command line.
func buildFleet2mqtt(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleet2mqtt")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/fleet2mqtt/fleet2mqtt/cmd/fleet2mqtt")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build fleet2mqtt: %v\n%s", err, out)
	}
	return bin
}

// fleet is a running `fleet2mqtt serve`.
type fleet struct {
	bin, config, dataDir string
	vehicleAddr          string
	httpAddr             string

	t    *testing.T
	out  *syncBuffer
	cmd  *exec.Cmd
	exit chan struct{}
}

// fleetConfig is the configuration every test uses; mqtt is the YAML of
// the mqtt section's broker keys (indented two spaces).
func fleetConfig(dataDir, vehicleAddr, httpAddr, mqtt string) string {
	return fmt.Sprintf(`data_dir: %s
log:
  level: debug
vehicle:
  listen: %s
http:
  listen: %s
mqtt:
%s`, dataDir, vehicleAddr, httpAddr, mqtt)
}

// startFleet writes a configuration (mqtt: see fleetConfig) and runs
// `fleet2mqtt serve` with it until the test ends.
func startFleet(t *testing.T, bin, mqtt string) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{
		t: t, bin: bin, dataDir: filepath.Join(dir, "data"), out: &syncBuffer{},
		vehicleAddr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		httpAddr:    "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
	}
	f.config = filepath.Join(dir, "fleet2mqtt.yaml")
	if err := os.WriteFile(f.config, []byte(fleetConfig(f.dataDir, f.vehicleAddr, f.httpAddr, mqtt)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("fleet2mqtt's log:\n%s", f.out.String())
		}
	})
	f.start()
	return f
}

// start runs fleet2mqtt serve and waits until /healthz answers.
func (f *fleet) start() {
	f.t.Helper()
	cmd := exec.Command(f.bin, "serve", "-config", f.config)
	cmd.Stdout, cmd.Stderr = f.out, f.out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	f.cmd, f.exit = cmd, exit
	deadline := time.Now().Add(fleetStartLimit)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + f.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exit:
			f.t.Fatalf("fleet2mqtt exited:\n%s", f.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("fleet2mqtt not healthy within %v:\n%s", fleetStartLimit, f.out.String())
		}
	}
}

// stop stops fleet2mqtt with SIGTERM, as a service manager does.
func (f *fleet) stop() {
	if f.cmd == nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exit:
	case <-time.After(30 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exit
		f.t.Errorf("fleet2mqtt did not stop on SIGTERM")
	}
	f.cmd = nil
}

// removeDevice runs `fleet2mqtt discovery remove VIN` with the
// configuration serve got.
func (f *fleet) removeDevice(vin string) {
	f.t.Helper()
	out, err := exec.Command(f.bin, "discovery", "remove", "-config", f.config, vin).CombinedOutput()
	if err != nil {
		f.t.Fatalf("fleet2mqtt discovery remove %s: %v\n%s", vin, err, out)
	}
}

// car is a simulated car streaming to the fleet with the development
// certificates fleet2mqtt made in its data directory.
type car struct {
	sim    *simulate.Car
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fleet) connectCar(t *testing.T, vin string) *car {
	t.Helper()
	pki, err := certs.LoadDir(filepath.Join(f.dataDir, "dev-pki"))
	if err != nil {
		t.Fatalf("fleet2mqtt's development PKI: %v", err)
	}
	cert, err := pki.VehicleCA.IssueVehicle(vin)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simulate.NewCar(simulate.CarConfig{
		URL: "wss://" + f.vehicleAddr + "/",
		VIN: vin,
		TLS: &tls.Config{RootCAs: pki.ServerCA.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &car{sim: sim, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = sim.Run(ctx)
	}()
	t.Cleanup(c.stop)
	wctx, wcancel := context.WithTimeout(ctx, deliveryLimit)
	defer wcancel()
	if err := sim.WaitConnected(wctx); err != nil {
		t.Fatalf("car did not connect: %v (last error: %v)", err, sim.Err())
	}
	return c
}

// send sends one record and waits until fleet2mqtt acknowledged it, which
// it does once the broker has every message of it.
func (c *car) send(t *testing.T, data []telemetry.Datum) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryLimit)
	defer cancel()
	if _, err := c.sim.SendData(ctx, data); err != nil {
		t.Fatal(err)
	}
	if err := c.sim.Flush(ctx); err != nil {
		t.Fatalf("record not acknowledged: %v", err)
	}
}

// stop disconnects the car, as a car falling asleep does.
func (c *car) stop() {
	c.cancel()
	<-c.done
}

// retained reads the retained message of topic from the broker at addr
// ("" when there is none after a short wait).
func retained(t *testing.T, addr, topic string, username, password string) string {
	t.Helper()
	msgs, stop := subscribe(t, addr, topic, username, password)
	defer stop()
	select {
	case p := <-msgs:
		return p
	case <-time.After(2 * time.Second):
		return ""
	}
}

// subscribe subscribes to topic on the broker at addr and delivers its
// messages (retained ones first) until stop is called.
func subscribe(t *testing.T, addr, topic string, username, password string) (msgs <-chan string, stop func()) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 64)
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Topic == topic {
				select {
				case ch <- string(pr.Packet.Payload):
				default:
				}
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: fmt.Sprintf("hatest-%d", time.Now().UnixNano()), CleanStart: true, KeepAlive: 30}
	if username != "" {
		cp.Username, cp.UsernameFlag = username, true
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return ch, func() { _ = c.Disconnect(&paho.Disconnect{}) }
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

// mustField returns the catalog's field named name.
func mustField(t *testing.T, name string) telemetry.Field {
	t.Helper()
	f, ok := telemetry.FieldByName(name)
	if !ok {
		t.Fatalf("no signal %s in the catalog", name)
	}
	return f
}

// enumValue returns the value of the enum signal field whose short name is
// short.
func enumValue(t *testing.T, field, short string) telemetry.Value {
	t.Helper()
	info, _ := telemetry.Lookup(mustField(t, field))
	if info.Enum == nil {
		t.Fatalf("%s is not an enum signal", field)
	}
	for _, v := range info.Enum.Values {
		if v.Short == short {
			return telemetry.EnumOf(info.Enum, v)
		}
	}
	t.Fatalf("%s has no value %s", field, short)
	return telemetry.Value{}
}

// fullRecord is one record with a value for every signal fleet2mqtt
// announces, so that the car's device carries every kind of entity there
// is: set overrides the generic values by signal name.
func fullRecord(t *testing.T, set map[string]telemetry.Value) []telemetry.Datum {
	t.Helper()
	var out []telemetry.Datum
	for _, info := range telemetry.Catalog() {
		if info.Component == "none" {
			continue
		}
		v, ok := set[info.Name]
		if !ok {
			v = genericValue(info)
		}
		out = append(out, telemetry.Datum{Field: info.Field, Value: v})
	}
	for name := range set {
		if _, ok := telemetry.FieldByName(name); !ok {
			t.Fatalf("no signal %s in the catalog", name)
		}
	}
	return out
}

// genericValue is a plausible value of info's kind.
func genericValue(info telemetry.FieldInfo) telemetry.Value {
	switch info.Kind {
	case telemetry.KindString:
		return telemetry.StringValue("text " + strings.ToLower(info.Name))
	case telemetry.KindBool:
		return telemetry.BoolValue(false)
	case telemetry.KindInt, telemetry.KindLong:
		return telemetry.IntValue(3)
	case telemetry.KindDouble:
		return telemetry.FloatValue(12.5)
	case telemetry.KindEnum:
		return telemetry.EnumOf(info.Enum, info.Enum.Values[len(info.Enum.Values)-1])
	case telemetry.KindLocation:
		return telemetry.LocationValue(48.1, 11.5)
	case telemetry.KindDoors:
		return telemetry.DoorsValue(0)
	case telemetry.KindTireLocation:
		return telemetry.TiresValue(0)
	case telemetry.KindTime:
		return telemetry.TimeValue(7, 30, 0)
	}
	return telemetry.InvalidValue()
}
