package external

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestPublishOnce: the messages reach the broker, retained, and the
// client is done when it returns; an unreachable broker is named.
func TestPublishOnce(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c, err := New(Config{URL: broker.URL(), ClientID: "once"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.PublishOnce(ctx, "the test broker", []pubsub.Message{{Topic: "once/a", Payload: []byte("1"), QoS: 1, Retain: true}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("the client is still running after PublishOnce")
	}
	if got := subscribe(t, broker.URL(), "once/#", 0).waitMessage(t, "once/a", "1"); !got.retain {
		t.Error("not retained")
	}

	c, err = New(Config{URL: "mqtt://127.0.0.1:1", ClientID: "nowhere"}, quietLogger(), withBackoff(fastBackoff))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := c.PublishOnce(short, "the broker at nowhere", nil); err == nil || !strings.HasPrefix(err.Error(), "cannot reach the broker at nowhere: ") {
		t.Errorf("unreachable broker: %v", err)
	}
}

// TestComponent: the client connects on Start and is done after Stop.
func TestComponent(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c, err := New(Config{URL: broker.URL(), ClientID: "component"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	comp := c.Component()
	ctx, cancel := context.WithCancel(context.Background())
	if err := comp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // the client outlives the start's context
	awaitConnection(t, c)
	if err := comp.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("the client is still running after Stop")
	}
}
