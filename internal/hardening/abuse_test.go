//go:build hardening

package hardening

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// clientsRetainedFile is where the embedded broker keeps the retained
// messages of MQTT clients (outside fleet2mqtt's own topics).
func clientsRetainedFile(f *fleet) string {
	return filepath.Join(f.DataDir, "mqtt", "mqtt-retained-clients.bin")
}

// publishQoS1 publishes as an anonymous MQTT 5 client and returns the
// PUBACK's reason code; it fails when no PUBACK comes within 10 s.
func publishQoS1(c *paho.Client, topic string, payload []byte, retain bool) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: 1, Retain: retain})
	if resp != nil {
		return resp.ReasonCode, nil
	}
	return 0, err
}

func anonymousClient(t *testing.T, addr string) *paho.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := mqttClient(ctx, addr, &paho.Connect{ClientID: "hardening-abuse-" + newTxID()[:8], CleanStart: true, KeepAlive: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

// TestRetainedJunk: an MQTT client tries to fill memory and disk with
// retained messages.
func TestRetainedJunk(t *testing.T) {
	r := trial(t, areaHostile,
		"an anonymous MQTT 5 client publishes 200 retained messages of 1 MB on junk/<n> (QoS 1) while a car streams; then fleet2mqtt restarts",
		"the clients' retained messages stop at the default bound (32 MiB): the rest get PUBACK 0x97 (quota exceeded), counted in fleet2mqtt_mqtt_retained_refused_total; the car's saves do not rewrite the clients' file; RSS stays within 192 MB of the start (the refused megabytes are read, then garbage) and the restart loads only what was kept")
	f := startFleet(t, "retained-junk")
	rss0, _ := f.memory()
	c := anonymousClient(t, f.MQTT)
	junk := bytes.Repeat([]byte("j"), 1_000_000) // under the broker's 1 MiB packet limit
	accepted, refused := 0, 0
	for i := range 200 {
		rc, err := publishQoS1(c, fmt.Sprintf("junk/%d", i), junk, true)
		table.attacks.Add(1)
		switch {
		case err != nil:
			r.fatalf(t, "junk/%d: no PUBACK: %v", i, err)
		case rc == 0:
			accepted++
		case rc == 0x97:
			refused++
		default:
			r.fatalf(t, "junk/%d: reason code %#x", i, rc)
		}
	}
	if accepted > 34 || refused == 0 { // 32 MiB of 1 MB messages
		r.errorf(t, "%d of 200 retained megabytes accepted, %d refused", accepted, refused)
	}
	if got := f.metric("fleet2mqtt_mqtt_retained_refused_total"); int(got) != refused {
		r.errorf(t, "fleet2mqtt_mqtt_retained_refused_total = %v, want %d", got, refused)
	}
	if !eventually(30*time.Second, func() bool { _, err := os.Stat(clientsRetainedFile(f)); return err == nil }) {
		r.fatalf(t, "the clients' retained messages were not saved within 30 s")
	}
	clients0, _ := os.Stat(clientsRetainedFile(f))
	// A car streams for a few persist intervals: its saves write the
	// bridge's file only.
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	for i := range 5 {
		sendRecord(t, car, id.VIN, float64(50+i))
		time.Sleep(time.Second)
	}
	ours, err := os.Stat(retainedFile(f))
	if err != nil {
		r.fatalf(t, "the car's retained messages not saved: %v", err)
	}
	clients1, _ := os.Stat(clientsRetainedFile(f))
	if !os.SameFile(clients0, clients1) {
		r.errorf(t, "the car's saves rewrote the clients' file")
	}
	rss1, peak1 := f.memory()
	if rss1-rss0 > 192 {
		r.errorf(t, "RSS %.0f → %.0f MB", rss0, rss1)
	}
	if code := f.stop(); code != 0 {
		r.errorf(t, "exit code %d", code)
	}
	f.mustStart()
	rss2, _ := f.memory()
	if rss2 > rss0+128 {
		r.errorf(t, "RSS after the restart %.0f MB", rss2)
	}
	r.figure("%d accepted, %d refused with 0x97; clients' file %.1f MB, the car's %d bytes (rewritten alone while the car streams); RSS %.0f → %.0f MB (peak %.0f), %.0f MB after the restart",
		accepted, refused, float64(clients1.Size())/(1<<20), ours.Size(), rss0, rss1, peak1, rss2)
}

// TestOverlappingConnections: a car opens its next connection before the
// old one ends, as a change from Wi-Fi to LTE does.
func TestOverlappingConnections(t *testing.T) {
	r := trial(t, areaFaults,
		"a car opens a second connection (Wi-Fi to LTE), streams over it, then its first connection closes; then the second closes",
		"tesla/<VIN>/connected stays true while the second connection is open, and turns false once both are closed")
	f := startFleet(t, "overlap")
	sub := subscribe(t, f.MQTT, subOptions{})
	id := f.identities(1)[0]
	topic := "tesla/" + id.VIN + "/connected"
	first := connectRaw(t, f, id, dialOptions{})
	sendRecord(t, first, id.VIN, 50)
	second := connectRaw(t, f, id, dialOptions{})
	sendRecord(t, second, id.VIN, 51)
	first.close()
	if !eventually(15*time.Second, func() bool { return f.metric("fleet2mqtt_vehicles_connected") == 1 }) {
		r.fatalf(t, "the first connection's end was not noticed")
	}
	sendRecord(t, second, id.VIN, 52)
	sub.settle(500*time.Millisecond, 5*time.Second)
	if got, _ := sub.lastPayload(topic); got != "true" {
		r.errorf(t, "%s = %q while the second connection streams, want true", topic, got)
	}
	second.close()
	if !eventually(15*time.Second, func() bool { got, _ := sub.lastPayload(topic); return got == "false" }) {
		got, _ := sub.lastPayload(topic)
		r.errorf(t, "%s = %q after both connections closed, want false", topic, got)
	}
	r.figure("connected true with one of two connections open, false with none")
}

// TestDiscoveryHijack: a client tries to rewrite what Home Assistant
// shows of a car, and to talk on the broker's $SYS topics.
func TestDiscoveryHijack(t *testing.T) {
	r := trial(t, areaAccess,
		"an anonymous MQTT 5 client publishes a retained config on homeassistant/device/fleet2mqtt_<VIN>/config pointing the battery at evil/…, and QoS 1 publishes on $SYS/x; also homeassistant/status and another device's config",
		"the car's config and $SYS/x get PUBACK 0x87 (not authorized) at once, nothing is kept; homeassistant/status and other devices' configs are accepted")
	f := startFleet(t, "hijack")
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	sendRecord(t, car, id.VIN, 50)
	c := anonymousClient(t, f.MQTT)
	own := "homeassistant/device/fleet2mqtt_" + id.VIN + "/config"
	for _, topic := range []string{own, "$SYS/x"} {
		t0 := time.Now()
		rc, err := publishQoS1(c, topic, []byte(`{"cmps":{"soc":{"p":"sensor","state_topic":"evil/x"}}}`), true)
		table.attacks.Add(1)
		if err != nil || rc != 0x87 {
			r.errorf(t, "%s: reason code %#x, error %v; want 0x87", topic, rc, err)
		}
		r.figure("%s answered 0x87 after %v", topic, time.Since(t0).Round(time.Millisecond))
	}
	for _, topic := range []string{"homeassistant/status", "homeassistant/device/zigbee2mqtt_0x1/config"} {
		if rc, err := publishQoS1(c, topic, []byte("online"), false); err != nil || rc != 0 {
			r.errorf(t, "%s: reason code %#x, error %v; want it accepted", topic, rc, err)
		}
	}
	sub := subscribe(t, f.MQTT, subOptions{Filter: "homeassistant/#"})
	sub.settle(time.Second, 10*time.Second)
	if got, _ := sub.lastPayload(own); strings.Contains(got, "evil/") {
		r.errorf(t, "the car's config points at evil/: %s", shorten(got, 200))
	}
}

// TestListenAddressCheck: -check-config refuses every listen address a
// listener would refuse.
func TestListenAddressCheck(t *testing.T) {
	r := trial(t, areaFaults,
		"fleet2mqtt -check-config with a port out of range or an unparsable host in each listen key (http.listen, vehicle.listen, mqtt.embedded.listen, tls.listen, websocket.listen)",
		"each check fails, naming the key, without starting anything")
	for _, tc := range []struct{ key, yaml string }{
		{"http.listen", "http:\n  listen: 127.0.0.1:99999\n"},
		{"vehicle.listen", "vehicle:\n  listen: 'not a host:443'\n"},
		{"mqtt.embedded.listen", "mqtt:\n  embedded:\n    listen: 127.0.0.1:65536\n"},
		{"mqtt.embedded.tls.listen", "mqtt:\n  embedded:\n    tls:\n      listen: 'a_b:8883'\n"},
		{"mqtt.embedded.websocket.listen", "mqtt:\n  embedded:\n    websocket:\n      listen: ':70000'\n"},
	} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte("data_dir: "+t.TempDir()+"\n"+tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binPath, "serve", "-check-config", "-config", path).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.key+":") {
			r.errorf(t, "%s: -check-config %v:\n%s", tc.key, err, out)
			continue
		}
		_, msg, _ := strings.Cut(strings.TrimSpace(lastLine(string(out))), ".yaml: ")
		r.figure("%s", shorten(msg, 140))
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// alertsFrame is an alerts record of vin with the given alert names.
func alertsFrame(vin string, names []string) []byte {
	now := time.Now()
	alerts := make([]telemetry.Alert, len(names))
	for i, n := range names {
		alerts[i] = telemetry.Alert{Name: n, StartedAt: now, Audiences: []telemetry.Audience{telemetry.AudienceCustomer}}
	}
	payload, err := simulate.EncodeAlerts(vin, now, alerts)
	if err != nil {
		panic(err) // test data
	}
	txid := newTxID()
	return envelope.AppendFrame(nil, envelope.Frame{
		TxID: []byte(txid), Topic: []byte(telemetry.TopicAlerts), MessageID: []byte(txid), Type: envelope.TypeStream,
		Stream: envelope.Stream{CreatedAt: uint32(now.Unix()), Payload: payload, DeviceType: []byte(simulate.DeviceType), DeviceID: []byte(vin)},
	})
}

// TestFreeTextNames: a car sends ever new alert names.
func TestFreeTextNames(t *testing.T) {
	r := trial(t, areaHostile,
		"a car sends 5 alerts records of 100 new alert names each (500 distinct names)",
		"every record is acknowledged; the car gets at most 256 alert topics; the 244 names past the limit are counted in fleet2mqtt_bridge_names_refused_total and logged once")
	f := startFleet(t, "names")
	sub := subscribe(t, f.MQTT, subOptions{})
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	mark := f.out.mark()
	for frame := range 5 {
		names := make([]string, 100)
		for i := range names {
			names[i] = fmt.Sprintf("Hostile_%03d_%s", frame*100+i, newTxID()[:6])
		}
		if err := car.writeFrame(true, opBinary, alertsFrame(id.VIN, names)); err != nil {
			r.fatalf(t, "write: %v", err)
		}
		if ack, err := car.response(15 * time.Second); err != nil || !ack {
			r.errorf(t, "alerts record %d not acknowledged (%v, %v)", frame, ack, err)
		}
		table.attacks.Add(1)
	}
	sub.settle(time.Second, 20*time.Second)
	topics := sub.topicsUnder("tesla/" + id.VIN + "/alerts/")
	if topics > 256 {
		r.errorf(t, "%d alert topics", topics)
	}
	refused := f.metric("fleet2mqtt_bridge_names_refused_total")
	if refused != 244 {
		r.errorf(t, "fleet2mqtt_bridge_names_refused_total = %v, want 244", refused)
	}
	lines := len(f.out.find(mark, func(l string) bool { return strings.HasPrefix(logMsg(l), "vehicle sends more distinct fields") }))
	if lines != 1 {
		r.errorf(t, "%d log lines, want 1", lines)
	}
	r.figure("%d alert topics; %.0f names refused; %d log line", topics, refused, lines)
}

// TestCrashLeftovers: temporary files that interrupted writes left are
// removed at start, and only those.
func TestCrashLeftovers(t *testing.T) {
	r := trial(t, areaFaults,
		"before a start, the data directory holds temporary files as a SIGKILL during each atomic writer leaves them (mqtt-retained.bin.<n>.tmp of 8 MB, .homeassistant.json.<n>, setup/.<file>.tmp-<n>, .<file>.<n>.tmp, a .dev-pki-<n> directory) next to look-alikes of the owner's",
		"start-up removes the leftovers and logs each; the look-alikes stay")
	f := newFleet(t, "leftovers")
	leftovers := []string{"mqtt/mqtt-retained.bin.4242.tmp", ".homeassistant.json.77", "setup/.token.json.tmp-123", ".vehicle.key.99.tmp", ".dev-pki-3431459038/ca.key"}
	kept := []string{"notes.tmp", "mqtt/mqtt-retained.bin.bak", ".homeassistant.json.old", "setup/my.json.tmp"}
	for _, name := range append(leftovers, kept...) {
		path := filepath.Join(f.DataDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		size := 1
		if strings.HasPrefix(name, "mqtt/") {
			size = 8 << 20
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte("x"), size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.mustStart()
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(f.DataDir, name)); !errors.Is(err, fs.ErrNotExist) {
			r.errorf(t, "%s not removed: %v", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(f.DataDir, name)); err != nil {
			r.errorf(t, "%s removed: %v", name, err)
		}
	}
	logged := len(f.out.find(0, func(l string) bool { return strings.Contains(logMsg(l), "temporary file of an interrupted") }))
	r.figure("%d leftovers removed (%d log lines), %d look-alikes kept", len(leftovers), logged, len(kept))
}

// TestPersistenceFailureVisible: the data directory stops taking writes
// while fleet2mqtt runs.
func TestPersistenceFailureVisible(t *testing.T) {
	r := trial(t, areaFaults,
		"while a car streams, the broker's data directory is replaced by a file (saves fail as on a read-only or full disk, for root too) for 10 s of 1 s persist intervals; then SIGTERM",
		"the failure is logged at once and then backs off (not every tick); /healthz answers 503 degraded and `fleet2mqtt healthcheck` exits 1; fleet2mqtt_mqtt_retained_save_failing is 1; records are still acknowledged; the stop exits non-zero, saying the retained messages were not saved")
	f := startFleet(t, "persist-fail")
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	sendRecord(t, car, id.VIN, 50)
	dir := filepath.Join(f.DataDir, "mqtt")
	if !eventually(30*time.Second, func() bool { _, err := os.Stat(retainedFile(f)); return err == nil }) {
		r.fatalf(t, "nothing saved")
	}
	mark := f.out.mark()
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	table.faults.Add(1)
	for i := range 10 {
		sendRecord(t, car, id.VIN, float64(60+i))
		time.Sleep(time.Second)
	}
	lines := len(f.out.find(mark, func(l string) bool { return strings.HasPrefix(logMsg(l), "could not save retained MQTT messages") }))
	if lines < 1 || lines > 2 {
		r.errorf(t, "%d log lines about failing saves in 10 s, want 1 (then backing off)", lines)
	}
	code, body, err := f.get("/healthz")
	if err != nil || code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "degraded" {
		r.errorf(t, "/healthz: %d %q %v, want 503 degraded", code, body, err)
	}
	hc := exec.Command(binPath, "healthcheck", "-url", "http://"+f.HTTP+"/healthz")
	if err := hc.Run(); err == nil {
		r.errorf(t, "fleet2mqtt healthcheck exited 0 with saves failing")
	}
	if v := f.metric("fleet2mqtt_mqtt_retained_save_failing"); v != 1 {
		r.errorf(t, "fleet2mqtt_mqtt_retained_save_failing = %v", v)
	}
	failures := f.metric("fleet2mqtt_mqtt_retained_save_failures_total")
	mark = f.out.mark()
	exit := f.stop()
	if exit == 0 {
		r.errorf(t, "exit code 0 after the final save failed")
	}
	said := f.out.find(mark, func(l string) bool { return strings.Contains(l, "not saved at shutdown") })
	if len(said) == 0 {
		r.errorf(t, "no log line says the retained messages were not saved at shutdown")
	}
	_ = os.Remove(dir)
	_ = os.Rename(dir+".away", dir)
	r.figure("%d error line in 10 s (%.0f failed saves); /healthz %d %s; exit code %d", lines, failures, code, strings.TrimSpace(body), exit)
}

// TestWebHostCheck: a DNS-rebinding page reaches the web listener under
// a name of its own.
func TestWebHostCheck(t *testing.T) {
	r := trial(t, areaAccess,
		"GET /healthz and /metrics with Host: rebind.attacker.example (a DNS-rebinding page's name for the listener), and with the listener's own address while a car is connected",
		"both answer 421 for the attacker's name; with the listener's address /healthz says ok and /metrics shows no VIN")
	f := startFleet(t, "hostcheck")
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	sendRecord(t, car, id.VIN, 50)
	for _, path := range []string{"/healthz", "/metrics"} {
		req, _ := http.NewRequest("GET", "http://"+f.HTTP+path, nil)
		req.Host = "rebind.attacker.example"
		resp, err := http.DefaultClient.Do(req)
		table.attacks.Add(1)
		if err != nil {
			r.fatalf(t, "%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			r.errorf(t, "%s with a foreign Host: %d, want 421", path, resp.StatusCode)
		}
	}
	code, body, err := f.get("/metrics")
	if err != nil || code != 200 {
		r.fatalf(t, "/metrics: %d %v", code, err)
	}
	if strings.Contains(body, id.VIN) {
		r.errorf(t, "/metrics shows the VIN")
	}
	r.figure("421 for the foreign Host; /metrics %d bytes without the VIN", len(body))
}

// TestKillDuringWrites kills fleet2mqtt while it writes its files: the
// retained store (saved every second while cars stream and a client keeps
// 8 MB retained) and the Home Assistant discovery state.
func TestKillDuringWrites(t *testing.T) {
	const kills = 12
	r := trial(t, areaFaults,
		fmt.Sprintf("5 cars stream (a record every 10 ms each) while a client's 8 MB of retained messages and the cars' state are saved every 1 s; fleet2mqtt is killed with SIGKILL at random moments, %d times, and started again each time", kills),
		"every data file is the old or the new one, never torn: no retained file is set aside as corrupt, homeassistant.json parses; after each start no temporary file of an atomic writer remains in the data directory")
	f := startFleet(t, "kill-writes")
	c := anonymousClient(t, f.MQTT)
	for i := range 8 {
		if rc, err := publishQoS1(c, fmt.Sprint("big/", i), bytes.Repeat([]byte("b"), 1_000_000), true); err != nil || rc != 0 {
			r.fatalf(t, "big/%d: %#x %v", i, rc, err)
		}
	}
	c.Disconnect(&paho.Disconnect{})
	g := newGate(t, f.Vehicle)
	p := newPool(t, poolConfig{URL: "wss://" + g.addr() + "/", TLS: f.carTLS(), IDs: f.identities(5), Fields: 3,
		AckTimeout: 5 * time.Second, MaxBackoff: time.Second})
	if err := p.connect(time.Minute); err != nil {
		r.fatalf(t, "%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.stream(ctx, 10*time.Millisecond, -1)
	leftovers := 0
	for k := range kills {
		// Clients' saves happen when clients change: one per cycle.
		if err := publishRetained(f.MQTT, "big/toggle", strings.Repeat(fmt.Sprint(k), 500_000)); err != nil {
			r.fatalf(t, "kill %d: %v", k, err)
		}
		time.Sleep(time.Duration(800+mrand.IntN(1400)) * time.Millisecond)
		f.kill()
		table.faults.Add(1)
		var tmp []string
		_ = filepath.WalkDir(f.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(d.Name(), ".tmp") || strings.Contains(d.Name(), ".tmp-") || strings.HasPrefix(d.Name(), ".homeassistant.json.")) {
				tmp = append(tmp, d.Name())
			}
			return nil
		})
		leftovers += len(tmp)
		f.mustStart()
		if bad, _ := filepath.Glob(filepath.Join(f.DataDir, "mqtt", "*.corrupt*")); len(bad) > 0 {
			r.fatalf(t, "kill %d: a retained file was torn: %v", k, bad)
		}
		if raw, err := os.ReadFile(filepath.Join(f.DataDir, "homeassistant.json")); err == nil && !json.Valid(raw) {
			r.fatalf(t, "kill %d: homeassistant.json is torn", k)
		}
		_ = filepath.WalkDir(f.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".tmp") {
				r.errorf(t, "kill %d: %s remains after the start", k, path)
			}
			return nil
		})
	}
	cancel()
	p.wait()
	p.stop()
	r.figure("%d kills; %d temporary files found after the kills, none after the starts; no torn file", kills, leftovers)
}
