package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/announce"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
)

// TestDiscoveryEndToEnd: a car streams golden frames; Home Assistant's
// discovery config for it appears on the embedded broker, and `fleet2mqtt
// discovery remove` takes it away again.
func TestDiscoveryEndToEnd(t *testing.T) {
	a := startTestApp(t, nil)
	live := subscribe(t, a.mqttAddr, "homeassistant/#")
	alerts := subscribe(t, a.mqttAddr, "tesla/+/active_alerts")

	ws := carConn(t, a, e2eVIN)
	for _, name := range []string{"01_v_scalar_types.bin", "08_alerts.bin"} {
		frame, err := os.ReadFile(filepath.Join("../../testdata/vehicle-frames", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, resp, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if f, err := envelope.Parse(resp); err != nil || f.Type != envelope.TypeStreamAck {
			t.Fatalf("%s: response %x (%v), want an ack", name, resp, err)
		}
	}

	topic := discovery.Topic(discovery.DefaultConfig(), e2eVIN)
	config := live.wait(t, topic)
	comps, err := discovery.ParseAnnounced([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Soc", "ChargeLimitSoc", "Locked", "VehicleSpeed", "streaming", "alerts"} {
		if _, ok := comps[key]; !ok {
			t.Errorf("the config lacks %s: %s", key, config)
		}
	}
	for _, part := range []string{`"name":"Golden Test Car"`, `"sw":"2025.44.25.5 abcdef123456"`, `"availability":[{"topic":"tesla/bridge/state"`} {
		if !strings.Contains(config, part) {
			t.Errorf("the config lacks %s: %s", part, config)
		}
	}
	if got := alerts.wait(t, "tesla/"+e2eVIN+"/active_alerts"); !strings.HasPrefix(got, `{"count":`) {
		t.Errorf("active alerts %q", got)
	}

	// discovery remove, as a user would run it next to the running app.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	yaml := "data_dir: " + a.cfg.DataDir + "\nmqtt:\n  embedded:\n    listen: " + a.mqttAddr + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runDiscovery(context.Background(), []string{"remove", "-config", cfgFile, e2eVIN}, &stdout, &stderr); code != 0 {
		t.Fatalf("discovery remove exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "removed "+e2eVIN) {
		t.Errorf("discovery remove said %q", stdout.String())
	}
	deadline := time.After(10 * time.Second)
	for {
		live.mu.Lock()
		got := live.msgs[topic]
		live.mu.Unlock()
		if got == "" {
			break
		}
		select {
		case <-live.seen:
		case <-deadline:
			t.Fatalf("the config was not emptied: %s", got)
		}
	}
	// Nothing retained: the embedded broker hands retained messages to a
	// new in-process subscription before Subscribe returns.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var retained []string
	if err := a.broker.Subscribe(ctx, topic, func(_ string, p []byte) { retained = append(retained, string(p)) }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if len(retained) != 0 {
		t.Errorf("still retained on %s: %q", topic, retained)
	}
}

func TestDiscoveryRemoveErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("data_dir: "+dir+"\n"+yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// A loopback port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", nil, 2, "Usage: fleet2mqtt discovery remove"},
		{"unknown subcommand", []string{"add", e2eVIN}, 2, `unknown subcommand "add"`},
		{"no VIN", []string{"remove"}, 2, "name at least one VIN"},
		{"not a VIN", []string{"remove", "a/b"}, 2, `"a/b" is not a VIN`},
		{"bad config", []string{"remove", "-config", write("bad.yaml", "homeassistant:\n  prefix: a/#\n"), e2eVIN}, 1, "homeassistant.prefix"},
		{"no listener", []string{"remove", "-config", write("nolisten.yaml", "mqtt:\n  embedded:\n    listen: \"\"\n"), e2eVIN}, 1, "mqtt.embedded.listen is empty"},
		{"hashed password only", []string{"remove", "-config", write("never.yaml",
			"mqtt:\n  embedded:\n    allow_anonymous: never\n    users:\n      - name: ha\n        password: $2y$10$abcdefghijklmnopqrstuuJ0e8yG8J6Qm5l5c1Zs3o9ZbXkQ1x2y.\n"), e2eVIN}, 1, "plain password"},
		{"broker not running", []string{"remove", "-timeout", "1s", "-config", write("down.yaml", "mqtt:\n  embedded:\n    listen: "+closed+"\n"), e2eVIN}, 1, "cannot reach the embedded broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runDiscovery(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

func TestDiscoveryConfig(t *testing.T) {
	cfg := config.Default()
	if !cfg.DiscoveryEnabled() || cfg.HomeAssistant.Prefix != "homeassistant" {
		t.Errorf("discovery is not on by default: %+v", cfg.HomeAssistant)
	}
	cfg.MQTT.Compat.Enabled, cfg.MQTT.Compat.Exclusive = true, true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.DiscoveryEnabled() {
		t.Error("discovery is on with mqtt.compat.exclusive, which publishes none of its topics")
	}

	for _, tc := range []struct{ yaml, want string }{
		{"homeassistant:\n  prefix: \"\"\n", "homeassistant.prefix: must be set"},
		{"homeassistant:\n  include: [battery_level]\n", `did you mean "BatteryLevel"`},
		{"homeassistant:\n  status_topic: tesla/status\n", `homeassistant.status_topic: "tesla/status" is under mqtt.prefix`},
		{"homeassistant:\n  enabled: yes please\n", "cannot unmarshal"},
	} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: loadConfig = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
}

// TestDiscoveryOffWithExclusive: with the compatibility layout alone the
// app announces nothing and keeps no discovery state.
func TestDiscoveryOffWithExclusive(t *testing.T) {
	a := startTestApp(t, func(c *config.Config) { c.MQTT.Compat.Enabled, c.MQTT.Compat.Exclusive = true, true })
	if a.announcer != nil {
		t.Error("an announcer runs with mqtt.compat.exclusive")
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, announce.StateFile)); !os.IsNotExist(err) {
		t.Errorf("state file: %v", err)
	}
}
