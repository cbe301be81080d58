package main

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestDemoCommandLoop is the loop of `fleet2mqtt demo` end to end: an MQTT
// command → the engine signs it → the fake Fleet API's car verifies and
// applies it → the simulated car streams the change → the signal's MQTT
// topic shows it. Home Assistant is told of the controls.
func TestDemoCommandLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runDemo(ctx, []string{"-data-dir", t.TempDir(), "-mqtt-listen", "127.0.0.1:0", "-vehicle-listen", "127.0.0.1:0",
			"-http-listen", "127.0.0.1:0", "-speed", "20", "-scenario", "alerts"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("demo exited with %d\n%s", code, stderr.String())
		}
	}()
	banner := regexp.MustCompile(`mosquitto_pub -h (\S+) -p (\d+) -t '(tesla/\S+)/set/charging' -m ON`)
	deadline := time.Now().Add(20 * time.Second)
	var m []string
	for m == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not say how to command:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = banner.FindStringSubmatch(stdout.String())
	}
	addr, car := m[1]+":"+m[2], m[3]
	vin := strings.TrimPrefix(car, "tesla/")
	sub := subscribe(t, addr, "tesla/#")
	if got := sub.wait(t, car+"/ChargeLimitSoc"); got != "80" {
		t.Fatalf("ChargeLimitSoc starts at %s, want 80", got)
	}
	pub := publisher(t, addr)

	pub(car+"/set/charge_limit", "65")
	var res struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(sub.wait(t, car+"/set/charge_limit/result")), &res); err != nil || !res.OK {
		t.Fatalf("set charge_limit: %+v %v", res, err)
	}
	if got := sub.waitFor(t, car+"/ChargeLimitSoc", "65"); got != "65" {
		t.Fatalf("ChargeLimitSoc is %s after setting the limit to 65", got)
	}

	pub(car+"/command/charge_start", "")
	if err := json.Unmarshal([]byte(sub.wait(t, car+"/command/charge_start/result")), &res); err != nil || !res.OK {
		t.Fatalf("charge_start: %+v %v", res, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		sub.mu.Lock()
		state := sub.msgs[car+"/DetailedChargeState"]
		sub.mu.Unlock()
		if state == "Starting" || state == "Charging" || state == "Complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DetailedChargeState is %q after charge_start", state)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Home Assistant's device has the controls (commands are on in the
	// demo), with state from the signal topics.
	ha := subscribe(t, addr, "homeassistant/#")
	var cfg struct {
		Components map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(ha.wait(t, "homeassistant/device/fleet2mqtt_"+vin+"/config")), &cfg); err != nil {
		t.Fatal(err)
	}
	if c := cfg.Components["control_charge_limit"]; c["command_topic"] != car+"/set/charge_limit" || c["state_topic"] != car+"/ChargeLimitSoc" {
		t.Errorf("charge limit control %v", c)
	}
	if _, ok := cfg.Components["control_frunk"]; ok {
		t.Error("access controls are announced though access is off")
	}
}

// publisher connects an anonymous MQTT client (the demo allows anonymous
// commands from this machine) and returns its QoS 1 publish.
func publisher(t *testing.T, addr string) func(topic, payload string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "demo-commander", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return func(topic, payload string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
		if err != nil || resp.ReasonCode >= 0x80 {
			t.Fatalf("publish %s: %v %+v", topic, err, resp)
		}
	}
}
