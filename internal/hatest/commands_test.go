package hatest_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/internal/hatest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestCommands runs `fleet2mqtt demo` (a simulated car streaming, and a
// fake Tesla whose car verifies every signed command and changes what the
// simulated car streams) with a real Home Assistant connected to the
// embedded broker as a user allowed to command. It calls Home Assistant's
// services on the car's controls and checks that each reaches the car as
// a signed command (the result topic and fleet2mqtt's command log) and
// that each entity shows what the car then streams, never what was
// commanded. It runs in three stages on one Home Assistant:
//
//  1. commands on, access off: no frunk or trunk buttons, and unlocking is
//     refused before the car and leaves the lock locked;
//  2. access on: the frunk and trunk buttons appear, and the charging
//     switch, charge limit and charging amps numbers, lock, climate and
//     flash button command the car;
//  3. `fleet2mqtt serve` with commands off: every control leaves Home
//     Assistant's entity registry, the car's sensors stay.
//
// The simulated car plays the mixed scenario in real time: it starts with
// a drive of several minutes (gear D, doors locked, climate on at 21 °C,
// not plugged in), which lasts the whole test; the demo's story is
// seeded, the same at every run.
func TestCommands(t *testing.T) {
	needHomeAssistant(t)
	bin := buildFleet2mqtt(t)
	d := newDemo(t, bin)
	d.writeConfig(true, false)
	d.start()
	ha := hatest.Start(t)
	ha.AddMQTT(hatest.Broker{Host: "127.0.0.1", Port: d.mqttPort, Username: mqttUser, Password: mqttPassword})
	results := d.res

	always := []string{"charging", "charge_limit", "charging_amps", "charge_port", "climate", "lock", "sentry", "wake", "flash", "honk"}
	access := []string{"frunk", "trunk"}

	t.Run("access off", func(t *testing.T) {
		ids := waitControls(t, ha, d.vin, always, access)
		// The car drives: climate on, doors locked, as it streams.
		waitState(t, ha, ids["climate"], "heat_cool")
		waitState(t, ha, ids["lock"], "locked")

		n := results.count("lock")
		callService(t, ha, "lock", "unlock", ids["lock"], nil)
		r := results.wait(t, "lock", n)
		if r.OK || !strings.Contains(r.Reason, "access") || r.Attempts != 0 {
			t.Errorf("unlocking with access off: %+v, want refused before the car for the access category", r)
		}
		if s := ha.States()[ids["lock"]]; s.State != "locked" {
			t.Errorf("%s after a refused unlock: %q, want locked (the car's state, not the command's)", ids["lock"], s.State)
		}
	})

	// Access on: fleet2mqtt announces the frunk and trunk buttons, and
	// unlocking reaches the car.
	d.stop()
	d.writeConfig(true, true)
	d.start()
	ids := waitControls(t, ha, d.vin, append(slices.Clone(always), access...), nil)

	t.Run("charging amps while driving", func(t *testing.T) {
		// The car streams ChargeCurrentRequest only while it charges:
		// the command is carried out, and the number stays unknown.
		n := results.count("charging_amps")
		callService(t, ha, "number", "set_value", ids["charging_amps"], map[string]any{"value": 20})
		d.checkSigned(t, results.wait(t, "charging_amps", n), "set_charging_amps")
		if s := ha.States()[ids["charging_amps"]]; s.State != "unknown" {
			t.Errorf("%s: %q after commanding 20 A to a car that does not stream it, want unknown (no optimistic state)", ids["charging_amps"], s.State)
		}
	})

	t.Run("charge limit", func(t *testing.T) {
		waitState(t, ha, ids["charge_limit"], "80")
		n := results.count("charge_limit")
		callService(t, ha, "number", "set_value", ids["charge_limit"], map[string]any{"value": 90})
		d.checkSigned(t, results.wait(t, "charge_limit", n), "set_charge_limit")
		waitState(t, ha, ids["charge_limit"], "90")
		if got := retained(t, d.mqttAddr(), "tesla/"+d.vin+"/ChargeLimitSoc", mqttUser, mqttPassword); got != "90" {
			t.Errorf("the car streams ChargeLimitSoc %q, want 90", got)
		}
		if s := ha.States()[ids["charging_amps"]]; s.State != "unknown" {
			t.Errorf("%s: %q once later records arrived, want unknown still", ids["charging_amps"], s.State)
		}
	})

	t.Run("climate", func(t *testing.T) {
		climate := ids["climate"]
		waitState(t, ha, climate, "heat_cool")
		n := results.count("temperature")
		callService(t, ha, "climate", "set_temperature", climate, map[string]any{"temperature": 22.5})
		d.checkSigned(t, results.wait(t, "temperature", n), "set_temps")
		waitAttribute(t, ha, climate, "temperature", 22.5)

		// The fake car starts with its climate off and the simulated
		// car drives with it on: turn it on (a change for the car, the
		// same for the stream), then off.
		n = results.count("climate")
		callService(t, ha, "climate", "set_hvac_mode", climate, map[string]any{"hvac_mode": "heat_cool"})
		d.checkSigned(t, results.wait(t, "climate", n), "auto_conditioning_start")
		n = results.count("climate")
		callService(t, ha, "climate", "set_hvac_mode", climate, map[string]any{"hvac_mode": "off"})
		d.checkSigned(t, results.wait(t, "climate", n), "auto_conditioning_stop")
		waitState(t, ha, climate, "off")
		if got := retained(t, d.mqttAddr(), "tesla/"+d.vin+"/HvacPower", mqttUser, mqttPassword); got != "Off" {
			t.Errorf("HvacPower %q once Home Assistant shows off, want Off", got)
		}
		if v, ok := ha.States()[climate].Attributes["current_temperature"].(float64); !ok || v < -40 || v > 60 {
			t.Errorf("%s current_temperature %v, want the car's InsideTemp", climate, ha.States()[climate].Attributes["current_temperature"])
		}
	})

	t.Run("lock", func(t *testing.T) {
		lock := ids["lock"]
		waitState(t, ha, lock, "locked")
		n := results.count("lock")
		callService(t, ha, "lock", "unlock", lock, nil)
		d.checkSigned(t, results.wait(t, "lock", n), "door_unlock")
		waitState(t, ha, lock, "unlocked")
		n = results.count("lock")
		callService(t, ha, "lock", "lock", lock, nil)
		d.checkSigned(t, results.wait(t, "lock", n), "door_lock")
		waitState(t, ha, lock, "locked")
	})

	t.Run("flash", func(t *testing.T) {
		n := results.count("flash")
		callService(t, ha, "button", "press", ids["flash"], nil)
		d.checkSigned(t, results.wait(t, "flash", n), "flash_lights")
	})

	t.Run("charging", func(t *testing.T) {
		// Last: a charging session ends the drive.
		sw := ids["charging"]
		waitState(t, ha, sw, "off")
		n := results.count("charging")
		callService(t, ha, "switch", "turn_on", sw, nil)
		d.checkSigned(t, results.wait(t, "charging", n), "charge_start")
		waitState(t, ha, sw, "on")
		st := retained(t, d.mqttAddr(), "tesla/"+d.vin+"/DetailedChargeState", mqttUser, mqttPassword)
		if st != "Starting" && st != "Charging" {
			t.Errorf("DetailedChargeState %q with the switch on, want Starting or Charging", st)
		}
		// Charging, the car streams the current asked for earlier, and
		// the limit set earlier.
		waitState(t, ha, ids["charging_amps"], "20")
		waitState(t, ha, ids["charge_limit"], "90")
	})

	t.Run("commands off", func(t *testing.T) {
		d.stop()
		d.writeConfig(false, true)
		f := &fleet{t: t, bin: bin, config: d.config, dataDir: d.dataDir, vehicleAddr: d.vehicleAddr, httpAddr: d.httpAddr, out: &syncBuffer{}}
		t.Cleanup(func() {
			f.stop()
			if t.Failed() {
				t.Logf("fleet2mqtt serve's log:\n%s", f.out.String())
			}
		})
		f.start()
		ws := ha.WebSocket() // a new one: Home Assistant closes idle ones
		dev := carDevice(t, ws, d.vin)
		deadline := time.Now().Add(haLimit)
		for {
			var left []string
			var sensors int
			for key, e := range carComponents(t, ws, dev, d.vin) {
				if strings.HasPrefix(key, "control_") {
					left = append(left, e.EntityID)
				} else {
					sensors++
				}
			}
			if len(left) == 0 {
				if sensors == 0 {
					t.Errorf("the car's sensors went with its controls")
				}
				t.Logf("controls removed, %d other entities kept", sensors)
				break
			}
			if time.Now().After(deadline) {
				slices.Sort(left)
				t.Fatalf("with commands off, Home Assistant still has %d controls after %v: %v", len(left), haLimit, left)
			}
			time.Sleep(250 * time.Millisecond)
		}
		f.stop()
	})

	// fleet2mqtt's broker stopped twice under Home Assistant's MQTT
	// client: it says so, and, when it had something to send (an
	// entity's cleanup, a state) while the broker was away, that it could
	// not; that is all it may say.
	checkMQTTLog(t, ha, "Error returned from MQTT server: The connection was lost.",
		"Error talking to MQTT: The client is not currently connected.")
}

// demo is a running `fleet2mqtt demo` with one simulated car.
type demo struct {
	t                         *testing.T
	bin, dir, config, dataDir string
	vehicleAddr, httpAddr     string
	mqttPort                  int // the embedded broker's; 0 with an external broker
	vin                       string
	scenario, speed           string // demo's -scenario and -speed; mixed in real time when empty
	out                       *syncBuffer
	cmd                       *exec.Cmd
	exit                      chan struct{}
	logs                      []string // the output of earlier runs
	res                       *results // the controls' results, of every run
	resClient                 *paho.Client
}

func newDemo(t *testing.T, bin string) *demo {
	dir := t.TempDir()
	d := &demo{t: t, bin: bin, dir: dir, config: filepath.Join(dir, "fleet2mqtt.yaml"), dataDir: filepath.Join(dir, "data"),
		vehicleAddr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		httpAddr:    "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		mqttPort:    testenv.FreePort(t), res: &results{got: map[string][]commandResult{}}}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("fleet2mqtt demo's log:\n%s", strings.Join(d.logs, "\n--- restart ---\n"))
		}
	})
	return d
}

func (d *demo) mqttAddr() string { return "127.0.0.1:" + strconv.Itoa(d.mqttPort) }

// writeConfig writes the configuration: Home Assistant's user may
// command; commands on or off (the demo turns them on whatever this
// says), the access category on or off. The test sends its nine commands
// back to back, more than the default burst of five.
func (d *demo) writeConfig(commands, access bool) {
	d.t.Helper()
	cfg := fleetConfig(d.dataDir, d.vehicleAddr, d.httpAddr, fmt.Sprintf(`  embedded:
    listen: 127.0.0.1:%d
    users:
      - name: %s
        password: %s
commands:
  enabled: %t
  mqtt_users: [%s]
  categories:
    access: %t
  rate_limit:
    burst: 20
`, d.mqttPort, mqttUser, mqttPassword, commands, mqttUser, access))
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// banner's line naming the car's Soc topic gives its VIN.
var bannerVIN = regexp.MustCompile(`One signal:\s+tesla/([A-HJ-NPR-Z0-9]{17})/Soc`)

// start runs the demo in real time, waits until it is healthy and has
// printed its banner, and learns the car's VIN.
func (d *demo) start() {
	d.t.Helper()
	d.out = &syncBuffer{}
	scenario, speed := cmp.Or(d.scenario, "mixed"), cmp.Or(d.speed, "1")
	cmd := exec.Command(d.bin, "demo", "-config", d.config, "-data-dir", d.dataDir, "-scenario", scenario, "-speed", speed)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	d.cmd, d.exit = cmd, exit
	deadline := time.Now().Add(fleetStartLimit)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		healthy := false
		if resp, err := client.Get("http://" + d.httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			healthy = resp.StatusCode == http.StatusOK
		}
		if m := bannerVIN.FindStringSubmatch(d.out.String()); healthy && m != nil {
			if d.vin != "" && d.vin != m[1] {
				d.t.Fatalf("the demo's car is %s after a restart, was %s", m[1], d.vin)
			}
			d.vin = m[1]
			if d.mqttPort != 0 {
				d.watchResults()
			}
			return
		}
		select {
		case <-exit:
			d.t.Fatalf("fleet2mqtt demo exited:\n%s", d.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("fleet2mqtt demo not up within %v:\n%s", fleetStartLimit, d.out.String())
		}
	}
}

// stop stops the demo with SIGTERM and keeps its log.
func (d *demo) stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exit:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exit
		d.t.Errorf("fleet2mqtt demo did not stop on SIGTERM")
	}
	d.cmd = nil
	d.logs = append(d.logs, d.out.String())
	if d.resClient != nil {
		_ = d.resClient.Disconnect(&paho.Disconnect{})
		d.resClient = nil
	}
}

// checkSigned checks that a control's result says the car carried out
// the command as a signed command (the fake car verifies signature,
// counter and expiry before it acts), and that fleet2mqtt logged it as
// Home Assistant's user's command.
func (d *demo) checkSigned(t *testing.T, r commandResult, command string) {
	t.Helper()
	if !r.OK || r.Command != command || r.VIN != d.vin || r.Legacy || r.Attempts < 1 {
		t.Errorf("result %+v, want %s carried out by %s as a signed command", r, command, d.vin)
	}
	line := regexp.MustCompile(`msg="vehicle command" (?:\S+ )*who=mqtt:` + mqttUser + ` vin=` + d.vin + ` command=` + command + ` ok=true `)
	deadline := time.Now().Add(deliveryLimit)
	for !line.MatchString(d.out.String()) {
		if time.Now().After(deadline) {
			t.Errorf("fleet2mqtt did not log %s by mqtt:%s as carried out", command, mqttUser)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// commandResult is a message on a control's result topic (docs/commands.md).
type commandResult struct {
	VIN      string `json:"vin"`
	Command  string `json:"command"`
	OK       bool   `json:"ok"`
	Reason   string `json:"reason"`
	Fault    string `json:"fault"`
	Attempts int    `json:"attempts"`
	Legacy   bool   `json:"legacy"`
	Woken    bool   `json:"woken"`
}

// results collects the results of the car's controls, by control.
type results struct {
	mu  sync.Mutex
	got map[string][]commandResult
}

// watchResults subscribes to tesla/<VIN>/set/+/result as Home Assistant's
// user until the demo stops, collecting into d.res.
func (d *demo) watchResults() {
	t := d.t
	t.Helper()
	rs := d.res
	prefix := "tesla/" + d.vin + "/set/"
	conn, err := net.Dial("tcp", d.mqttAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			control, ok := strings.CutPrefix(pr.Packet.Topic, prefix)
			control, ok2 := strings.CutSuffix(control, "/result")
			if !ok || !ok2 {
				return true, nil
			}
			var r commandResult
			if err := json.Unmarshal(pr.Packet.Payload, &r); err != nil {
				r.Reason = fmt.Sprintf("unreadable result %q: %v", pr.Packet.Payload, err)
			}
			rs.mu.Lock()
			rs.got[control] = append(rs.got[control], r)
			rs.mu.Unlock()
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: fmt.Sprintf("hatest-results-%d", time.Now().UnixNano()), CleanStart: true, KeepAlive: 30,
		Username: mqttUser, UsernameFlag: true, Password: []byte(mqttPassword), PasswordFlag: true}
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "+/result", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	d.resClient = c
}

// count is the number of results of control so far.
func (rs *results) count(control string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.got[control])
}

// wait waits for the result after the first n of control.
func (rs *results) wait(t *testing.T, control string, n int) commandResult {
	t.Helper()
	deadline := time.Now().Add(deliveryLimit)
	for {
		rs.mu.Lock()
		list := rs.got[control]
		rs.mu.Unlock()
		if len(list) > n {
			return list[n]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result on the %s control's result topic within %v", control, deliveryLimit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// callService calls a Home Assistant service on an entity, as the UI and
// automations do.
func callService(t *testing.T, ha *hatest.HomeAssistant, domain, service, entity string, data map[string]any) {
	t.Helper()
	if entity == "" {
		t.Fatalf("%s.%s: no such entity", domain, service)
	}
	body := map[string]any{"entity_id": entity}
	for k, v := range data {
		body[k] = v
	}
	if err := ha.Call(http.MethodPost, "/api/services/"+domain+"/"+service, body, nil); err != nil {
		t.Fatalf("%s.%s %s: %v", domain, service, entity, err)
	}
}

// waitAttribute waits until entity's attribute is the number want.
func waitAttribute(t *testing.T, ha *hatest.HomeAssistant, entity, attr string, want float64) {
	t.Helper()
	deadline := time.Now().Add(haLimit)
	for {
		got := ha.States()[entity].Attributes[attr]
		if v, ok := got.(float64); ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %v after %v, want %v", entity, attr, got, haLimit, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// carDevice waits for the device of the car vin.
func carDevice(t *testing.T, ws *hatest.WS, vin string) hatest.Device {
	t.Helper()
	deadline := time.Now().Add(haLimit)
	for {
		devs, err := ws.Devices()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if slices.Contains(d.Identifiers, [2]string{"mqtt", "fleet2mqtt_" + vin}) {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Home Assistant has no device for %s after %v", vin, haLimit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// carComponents is componentsOf for the car vin.
func carComponents(t *testing.T, ws *hatest.WS, dev hatest.Device, vin string) map[string]hatest.Entity {
	t.Helper()
	ents, err := ws.Entities(dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]hatest.Entity, len(ents))
	for _, e := range ents {
		out[strings.TrimPrefix(e.UniqueID, "fleet2mqtt_"+vin+"_")] = e
	}
	return out
}

// waitControls waits until the car's device has an entity for each control
// of want and none of absent, and returns the entity ids by control.
func waitControls(t *testing.T, ha *hatest.HomeAssistant, vin string, want, absent []string) map[string]string {
	t.Helper()
	ws := ha.WebSocket() // a new one: Home Assistant closes idle ones
	dev := carDevice(t, ws, vin)
	deadline := time.Now().Add(haLimit)
	for {
		ids := map[string]string{}
		for key, e := range carComponents(t, ws, dev, vin) {
			if control, ok := strings.CutPrefix(key, "control_"); ok {
				ids[control] = e.EntityID
			}
		}
		var missing, extra []string
		for _, c := range want {
			if ids[c] == "" {
				missing = append(missing, c)
			}
		}
		for _, c := range absent {
			if ids[c] != "" {
				extra = append(extra, ids[c])
			}
		}
		if len(missing) == 0 && len(extra) == 0 {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("controls in Home Assistant after %v: %v; missing %v, there but should not be %v", haLimit, ids, missing, extra)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
