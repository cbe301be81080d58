package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	cmdmqtt "github.com/fleet2mqtt/fleet2mqtt/command/mqtt"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const (
	vin    = "5YJ3E1EA7KF000001"
	prefix = "tesla"
	// wait bounds how long a test waits for something that should happen
	// at once; it fails tests that hang, it measures nothing.
	wait = 10 * time.Second
)

type rig struct {
	fleet  *fakefleet.Fleet
	car    *fleetapitest.Car
	broker *embedded.Broker
	addr   string
}

// newRig: a fake Tesla with one paired car, the command engine, the
// embedded broker with users alice (may command) and bob (may not) and
// anonymous clients from loopback, and the command handler.
func newRig(t *testing.T, settings command.Settings) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	fleet, err := fakefleet.Start(ctx, fakefleet.Options{VINs: []string{vin}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	engine, err := command.New(command.Config{Key: fleet.Key, Transport: fleet.Owner,
		SessionDir: filepath.Join(t.TempDir(), "commands"), RateLimit: &command.RateLimit{}}, log)
	if err != nil {
		t.Fatal(err)
	}
	b := serve(ctx, t, settings, cmdmqtt.Config{Engine: engine}, log)
	return &rig{fleet: fleet, car: fleet.Server.Car(vin), broker: b, addr: b.Addr(embedded.ListenerTCP)}
}

// serve starts the embedded broker with users alice (may command) and bob
// (may not) and anonymous clients from loopback, and a command handler of
// hc (its engine and limits; the rest is filled in) on it.
func serve(ctx context.Context, t *testing.T, settings command.Settings, hc cmdmqtt.Config, log *slog.Logger) *embedded.Broker {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Users = []embedded.User{{Name: "alice", Password: "pw-a"}, {Name: "bob", Password: "pw-b"}}
	b, err := embedded.New(cfg, t.TempDir(), prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	b.AllowCommands(embedded.CommandACL{Filters: cmdmqtt.Filters(prefix), Users: settings.MQTTUsers, Anonymous: settings.AllowAnonymous})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	hc.Prefix, hc.Settings, hc.Source, hc.Publisher, hc.QoS = prefix, settings, cmdmqtt.Embedded{Broker: b}, b, 1
	h, err := cmdmqtt.New(hc, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Wait)
	return b
}

func enabled() command.Settings {
	s := command.DefaultSettings()
	s.Enabled = true
	s.MQTTUsers = []string{"alice"}
	return s
}

type client struct {
	*paho.Client
	msgs chan *paho.Publish
}

var ids atomic.Int64

func dial(t *testing.T, addr, user, password string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{msgs: make(chan *paho.Publish, 64)}
	c.Client = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}}})
	cp := &paho.Connect{ClientID: fmt.Sprint("cmd-test-", ids.Add(1)), KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(password), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect as %q: %v", user, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *client) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// publish sends at QoS 1 and returns the PUBACK's reason code.
func (c *client) publish(t *testing.T, topic, payload string, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)})
	if resp == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp.ReasonCode
}

// result waits for the result of a command published on topic.
func (c *client) result(t *testing.T, topic string) command.Result {
	t.Helper()
	for {
		select {
		case m := <-c.msgs:
			if m.Topic != topic+"/result" {
				continue
			}
			var res command.Result
			if err := json.Unmarshal(m.Payload, &res); err != nil {
				t.Fatalf("result %s: %v", m.Payload, err)
			}
			return res
		case <-time.After(wait):
			t.Fatalf("no result on %s/result", topic)
			return command.Result{}
		}
	}
}

func topicOf(kind, name string) string { return prefix + "/" + vin + "/" + kind + "/" + name }

func TestCommandTopicsDriveTheCar(t *testing.T) {
	r := newRig(t, enabled())
	alice := dial(t, r.addr, "alice", "pw-a")
	alice.subscribe(t, prefix+"/+/+/+/result")

	for _, tc := range []struct {
		kind, name, payload string
		check               func(fleetapitest.CarState) bool
	}{
		{"set", "charge_limit", "70", func(s fleetapitest.CarState) bool { return s.ChargeLimit == 70 }},
		{"set", "charging", "ON", func(s fleetapitest.CarState) bool { return s.Charging }},
		{"set", "charging_amps", "12", func(s fleetapitest.CarState) bool { return s.ChargingAmps == 12 }},
		{"set", "temperature", "21.5", func(s fleetapitest.CarState) bool { return s.DriverTemp == 21.5 && s.PassengerTemp == 21.5 }},
		{"set", "climate", "heat_cool", func(s fleetapitest.CarState) bool { return s.ClimateOn }},
		{"set", "sentry", "ON", func(s fleetapitest.CarState) bool { return s.Sentry }},
		{"set", "flash", "PRESS", func(s fleetapitest.CarState) bool { return s.Flashes == 1 }},
		{"command", "set_charge_limit", `{"percent":85}`, func(s fleetapitest.CarState) bool { return s.ChargeLimit == 85 }},
		{"command", "set_charge_limit", "90", func(s fleetapitest.CarState) bool { return s.ChargeLimit == 90 }},
		{"command", "charge_stop", "", func(s fleetapitest.CarState) bool { return !s.Charging }},
		{"command", "honk_horn", "", func(s fleetapitest.CarState) bool { return s.Honks == 1 }},
	} {
		topic := topicOf(tc.kind, tc.name)
		if code := alice.publish(t, topic, tc.payload, false); code >= 0x80 {
			t.Fatalf("alice's publish on %s refused: reason code %#x", topic, code)
		}
		res := alice.result(t, topic)
		if !res.OK {
			t.Fatalf("%s %q: %s", topic, tc.payload, res.Reason)
		}
		if st := r.car.State(); !tc.check(st) {
			t.Errorf("%s %q: the car's state is %+v", topic, tc.payload, st)
		}
	}
}

// TestOnlyConfiguredUsersCommand: anonymous clients (from loopback) and
// users not named in commands.mqtt_users are refused by the broker, and
// nothing they publish reaches the car.
func TestOnlyConfiguredUsersCommand(t *testing.T) {
	r := newRig(t, enabled())
	alice := dial(t, r.addr, "alice", "pw-a")
	alice.subscribe(t, prefix+"/+/+/+/result")
	for _, c := range []*client{dial(t, r.addr, "", ""), dial(t, r.addr, "bob", "pw-b")} {
		for _, topic := range []string{topicOf("command", "flash_lights"), topicOf("set", "flash"), topicOf("set", "charge_limit")} {
			if code := c.publish(t, topic, "PRESS", false); code != 0x87 {
				t.Errorf("publish on %s: reason code %#x, want 0x87 (not authorized)", topic, code)
			}
		}
	}
	// A result topic is the bridge's alone.
	if code := alice.publish(t, topicOf("command", "flash_lights")+"/result", `{"ok":true}`, false); code != 0x87 {
		t.Errorf("alice's publish on a result topic: reason code %#x, want 0x87", code)
	}
	// alice's command arrives after everything the others sent.
	topic := topicOf("command", "honk_horn")
	alice.publish(t, topic, "", false)
	if res := alice.result(t, topic); !res.OK {
		t.Fatal(res.Reason)
	}
	signed, rest, wakes := r.car.Counts()
	st := r.car.State()
	if st.Flashes != 0 || st.ChargeLimit != 80 || st.Honks != 1 {
		t.Errorf("the car's state is %+v: only alice's honk should have reached it", st)
	}
	if rest != 0 || wakes != 0 || signed > 3 { // handshake + honk (+ a refreshed handshake at most)
		t.Errorf("the car received %d signed, %d REST commands and %d wakes", signed, rest, wakes)
	}
}

// TestAnonymousWhenAllowed: allow_anonymous lets clients without a user
// name command the car.
func TestAnonymousWhenAllowed(t *testing.T) {
	s := enabled()
	s.AllowAnonymous = true
	r := newRig(t, s)
	anon := dial(t, r.addr, "", "")
	anon.subscribe(t, prefix+"/+/+/+/result")
	topic := topicOf("set", "flash")
	if code := anon.publish(t, topic, "PRESS", false); code >= 0x80 {
		t.Fatalf("reason code %#x", code)
	}
	if res := anon.result(t, topic); !res.OK || r.car.State().Flashes != 1 {
		t.Fatalf("%+v, car %+v", res, r.car.State())
	}
}

func TestRefusals(t *testing.T) {
	r := newRig(t, enabled())
	alice := dial(t, r.addr, "alice", "pw-a")
	alice.subscribe(t, prefix+"/+/+/+/result")
	for _, tc := range []struct{ kind, name, payload, reason string }{
		{"command", "door_unlock", "", "access commands are off"},
		{"set", "lock", "UNLOCK", "access commands are off"},
		{"command", "set_charge_limit", `{"percentage":80}`, `missing argument "percent"`},
		{"command", "set_charge_limit", "120", "out of range"},
		{"set", "charging", "MAYBE", "want ON or OFF"},
		{"set", "nonsense", "1", "unknown control"},
		{"command", "self_destruct", "", "unknown command"},
		// Valid arguments padded past the bound: refused by size, unparsed.
		{"command", "set_charge_limit", `{"percent":80}` + strings.Repeat(" ", 200<<10), "at most 65536"},
		{"command", "charge_start", "", ""}, // retained: see below
	} {
		topic := topicOf(tc.kind, tc.name)
		retain := tc.reason == ""
		if retain {
			tc.reason = "retained commands are not run"
		}
		alice.publish(t, topic, tc.payload, retain)
		res := alice.result(t, topic)
		if res.OK || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s %q: ok %t, reason %q; want a refusal naming %q", topic, tc.payload, res.OK, res.Reason, tc.reason)
		}
	}
	if signed, rest, wakes := r.car.Counts(); signed+rest+wakes != 0 {
		t.Errorf("refused commands reached the car: %d signed, %d REST, %d wakes", signed, rest, wakes)
	}
	if st := r.car.State(); st.Charging {
		t.Error("a retained charge_start started charging")
	}
}

// gate is an executor whose commands run until released, for a car whose
// budget may be spent.
type gate struct {
	release chan struct{}
	spent   map[string]bool
}

func (g *gate) Execute(ctx context.Context, req command.Request) command.Result {
	<-g.release
	return command.Result{VIN: req.VIN, Command: req.Name, OK: true}
}

func (g *gate) RateLimited(vin string) error {
	if g.spent[vin] {
		return fmt.Errorf("%w: try again in 30s", command.ErrRateLimited)
	}
	return nil
}

// TestFullSlots: with every slot taken, a command is refused at once, and
// one for a car whose budget is spent is told so rather than to try again
// shortly.
func TestFullSlots(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const other = "5YJ3E1EA7KF000002"
	g := &gate{release: make(chan struct{}), spent: map[string]bool{other: true}}
	b := serve(ctx, t, enabled(), cmdmqtt.Config{Engine: g, MaxInFlight: 1}, slog.New(slog.DiscardHandler))
	alice := dial(t, b.Addr(embedded.ListenerTCP), "alice", "pw-a")
	alice.subscribe(t, prefix+"/+/+/+/result")
	first := topicOf("command", "flash_lights")
	alice.publish(t, first, "", false)
	// The handler takes the slot before the broker acknowledges the
	// publish: the slot is taken from here on.
	busy := topicOf("command", "honk_horn")
	alice.publish(t, busy, "", false)
	if res := alice.result(t, busy); res.OK || !strings.Contains(res.Reason, "too many commands in flight (1)") {
		t.Errorf("a command with every slot taken: %+v, want too many commands in flight", res)
	}
	spent := prefix + "/" + other + "/command/honk_horn"
	alice.publish(t, spent, "", false)
	if res := alice.result(t, spent); res.OK || !strings.Contains(res.Reason, "rate limit") {
		t.Errorf("a command for a car whose budget is spent, with every slot taken: %+v, want the rate limit", res)
	}
	close(g.release)
	if res := alice.result(t, first); !res.OK {
		t.Errorf("the command that held the slot: %+v", res)
	}
}

func TestCommandsOff(t *testing.T) {
	s := enabled()
	s.Enabled = false
	r := newRig(t, s)
	alice := dial(t, r.addr, "alice", "pw-a")
	alice.subscribe(t, prefix+"/+/+/+/result")
	topic := topicOf("set", "charging")
	alice.publish(t, topic, "ON", false)
	if res := alice.result(t, topic); res.OK || !strings.Contains(res.Reason, "commands.enabled") {
		t.Fatalf("%+v", res)
	}
}

func TestEveryControlIsACommand(t *testing.T) {
	for _, name := range cmdmqtt.Controls() {
		if command.CategoryOf(name) != "" {
			t.Errorf("control %q shadows a command name", name)
		}
	}
}

// TestHomeAssistantControlsCommand: every control Home Assistant is told
// of publishes, on its command topics, payloads that become valid
// commands.
func TestHomeAssistantControlsCommand(t *testing.T) {
	cfg := discovery.DefaultConfig()
	cfg.Controls = discovery.Controls{Enabled: true, Charging: true, Climate: true, Security: true, Access: true, Alerts: true}
	var seat []telemetry.Field
	for _, name := range []string{"SeatHeaterLeft", "SeatHeaterRight", "SeatHeaterRearLeft", "SeatHeaterRearCenter", "SeatHeaterRearRight", "HvacSteeringWheelHeatLevel"} {
		f, _ := telemetry.FieldByName(name)
		seat = append(seat, f)
	}
	msgs := discovery.Messages(cfg, discovery.Bridge{Prefix: prefix, Availability: prefix + "/bridge/state"}, discovery.Vehicle{VIN: vin, Streaming: seat})
	var payload struct {
		Cmps map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal(msgs[0].Payload, &payload); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for key, c := range payload.Cmps {
		if !strings.HasPrefix(key, "control_") {
			continue
		}
		str := func(k string) string { s, _ := c[k].(string); return s }
		sends := map[string][]string{} // command topic → payloads Home Assistant sends
		switch c["p"] {
		case "switch":
			sends[str("command_topic")] = []string{str("payload_on"), str("payload_off")}
		case "number":
			sends[str("command_topic")] = []string{fmt.Sprint(c["min"]), fmt.Sprint(c["max"])}
		case "select":
			for _, o := range c["options"].([]any) {
				sends[str("command_topic")] = append(sends[str("command_topic")], o.(string))
			}
		case "lock":
			sends[str("command_topic")] = []string{str("payload_lock"), str("payload_unlock")}
		case "cover":
			sends[str("command_topic")] = []string{str("payload_open"), str("payload_close")}
		case "button":
			sends[str("command_topic")] = []string{str("payload_press")}
		case "climate":
			for _, m := range c["modes"].([]any) {
				sends[str("mode_command_topic")] = append(sends[str("mode_command_topic")], m.(string))
			}
			sends[str("temperature_command_topic")] = []string{fmt.Sprint(c["min_temp"]), fmt.Sprint(c["max_temp"]), "21.5"}
		}
		if len(sends) == 0 {
			t.Errorf("%s: platform %v sends nothing", key, c["p"])
		}
		for topic, payloads := range sends {
			for _, p := range payloads {
				name, args, err := cmdmqtt.ParseControl(prefix, topic, []byte(p))
				if err != nil {
					t.Errorf("%s: %s %q: %v", key, topic, p, err)
					continue
				}
				if _, err := command.Build(name, args); err != nil {
					t.Errorf("%s: %s %q makes an invalid command %s %s: %v", key, topic, p, name, args, err)
				}
				checked++
			}
		}
	}
	if checked < 30 {
		t.Errorf("only %d payloads checked", checked)
	}
}
