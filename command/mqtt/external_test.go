package mqtt_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	cmdmqtt "github.com/fleet2mqtt/fleet2mqtt/command/mqtt"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// externalClient connects to the broker at url as clientID.
func externalClient(t *testing.T, ctx context.Context, url, clientID string, log *slog.Logger) *external.Client {
	t.Helper()
	cfg := external.DefaultConfig()
	cfg.URL, cfg.ClientID = url, clientID
	c, err := external.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := c.AwaitConnection(actx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestExternalBrokerNeverRunsRetainedCommands: with a real mosquitto as
// the external broker, a command left retained on the broker before
// fleet2mqtt subscribes never reaches the car, and one published with the
// retain flag afterwards is refused with the reason; a plain command runs.
func TestExternalBrokerNeverRunsRetainedCommands(t *testing.T) {
	broker := testenv.Mosquitto(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	fleet, err := fakefleet.Start(ctx, fakefleet.Options{VINs: []string{vin}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	car := fleet.Server.Car(vin)
	engine, err := command.New(command.Config{Key: fleet.Key, Transport: fleet.Owner,
		SessionDir: filepath.Join(t.TempDir(), "commands"), RateLimit: &command.RateLimit{}}, log)
	if err != nil {
		t.Fatal(err)
	}

	// An automation published commands with the retain flag, long ago.
	owner := externalClient(t, ctx, broker.URL(), "automation", log)
	results := make(chan command.Result, 10)
	if err := owner.Subscribe(ctx, prefix+"/+/+/+/result", func(_ string, payload []byte) {
		var res command.Result
		if err := json.Unmarshal(payload, &res); err != nil {
			t.Errorf("result %s: %v", payload, err)
		}
		results <- res
	}); err != nil {
		t.Fatal(err)
	}
	pub := func(topic, payload string, retain bool) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := owner.Publish(pctx, []pubsub.Message{{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}}); err != nil {
			t.Fatal(err)
		}
	}
	pub(topicOf("command", "flash_lights"), "", true)
	pub(topicOf("set", "charging"), "ON", true)

	// fleet2mqtt starts on the external broker.
	bridge := externalClient(t, ctx, broker.URL(), "fleet2mqtt", log)
	s := enabled()
	h, err := cmdmqtt.New(cmdmqtt.Config{Prefix: prefix, Settings: s, Engine: engine,
		Source: cmdmqtt.External{Subscriber: bridge}, Publisher: bridge, QoS: 1}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Wait)

	next := func() command.Result {
		t.Helper()
		select {
		case res := <-results:
			return res
		case <-time.After(wait):
			t.Fatal("no result")
			return command.Result{}
		}
	}
	// A plain command runs; it is the first result: the retained ones
	// were never delivered.
	pub(topicOf("command", "honk_horn"), "", false)
	if res := next(); res.Command != "honk_horn" || !res.OK {
		t.Fatalf("first result %+v, want honk_horn executed", res)
	}
	// Published with the retain flag now: refused, with the reason.
	pub(topicOf("command", "flash_lights"), "", true)
	if res := next(); res.Command != "flash_lights" || res.OK || !strings.Contains(res.Reason, "retained commands are not run") {
		t.Fatalf("retained publish: %+v, want refused as retained", res)
	}
	if st := car.State(); st.Flashes != 0 || st.Charging || st.Honks != 1 {
		t.Errorf("car state %+v: only the honk may have reached it", st)
	}
	if signed, rest, _ := car.Counts(); signed != 2 || rest != 0 {
		t.Errorf("the car was sent %d signed and %d REST requests, want 2 (handshake, honk)", signed, rest)
	}
}
