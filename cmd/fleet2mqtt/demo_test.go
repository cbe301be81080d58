package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `fleet2mqtt demo` and checks that a subscriber sees the
// simulated car's signals on the embedded broker it announces.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runDemo(ctx, []string{"-data-dir", t.TempDir(), "-mqtt-listen", "127.0.0.1:0", "-vehicle-listen", "127.0.0.1:0",
			"-http-listen", "127.0.0.1:0", "-speed", "100", "-scenario", "drive"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("demo exited with %d\n%s", code, stderr.String())
		}
	}()

	watch := regexp.MustCompile(`mosquitto_sub -h (\S+) -p (\d+) -t 'tesla/#'`)
	signal := regexp.MustCompile(`One signal:\s+(tesla/\S+/Soc)`)
	deadline := time.Now().Add(20 * time.Second)
	var m, sig []string
	for m == nil || sig == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not say where to look:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m, sig = watch.FindStringSubmatch(stdout.String()), signal.FindStringSubmatch(stdout.String())
	}
	sub := subscribe(t, m[1]+":"+m[2], "tesla/#")
	locTopic := sig[1][:len(sig[1])-len("Soc")] + "Location"
	first := sub.wait(t, locTopic)
	// The car drives: its location changes.
	deadline = time.Now().Add(20 * time.Second)
	for {
		sub.mu.Lock()
		now := sub.msgs[locTopic]
		sub.mu.Unlock()
		if now != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed %s", locTopic, first)
		}
		select {
		case <-sub.seen:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if got := sub.wait(t, "tesla/bridge/state"); got != "online" {
		t.Errorf("bridge state %q", got)
	}
	// The state object holds every latest value, as JSON.
	vinPrefix := sig[1][:len(sig[1])-len("Soc")]
	var state map[string]any
	if err := json.Unmarshal([]byte(sub.wait(t, vinPrefix+"state")), &state); err != nil {
		t.Fatalf("state object: %v", err)
	}
	if _, ok := state["Location"]; !ok {
		t.Errorf("state object %v has no Location", state)
	}
	// Home Assistant discovery announces the car.
	vin := strings.TrimSuffix(strings.TrimPrefix(vinPrefix, "tesla/"), "/")
	ha := subscribe(t, m[1]+":"+m[2], "homeassistant/#")
	var cfg struct {
		Device struct {
			Identifiers []string `json:"ids"`
		} `json:"dev"`
		Components map[string]json.RawMessage `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(ha.wait(t, "homeassistant/device/fleet2mqtt_"+vin+"/config")), &cfg); err != nil {
		t.Fatalf("discovery config: %v", err)
	}
	if len(cfg.Components) < 5 {
		t.Errorf("discovery config has %d components, want one per signal seen", len(cfg.Components))
	}
}
