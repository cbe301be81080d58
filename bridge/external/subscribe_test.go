package external

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestSubscribeWithoutRetained: with NoRetained, the broker (a real
// mosquitto) sends none of the retained messages on subscribing, neither
// at first nor on the resubscription after a reconnection, and a message
// published with the retain flag arrives with it. By default, retained
// messages arrive on subscribing, flagged.
func TestSubscribeWithoutRetained(t *testing.T) {
	broker := testenv.Mosquitto(t)
	pub := startClient(t, Config{URL: broker.URL(), ClientID: "publisher"})
	awaitConnection(t, pub)
	publish(t, pub,
		pubsub.Message{Topic: "cmd/old", Payload: []byte("retained before"), QoS: 1, Retain: true},
		pubsub.Message{Topic: "plain/old", Payload: []byte("retained before"), QoS: 1, Retain: true})

	c := startClient(t, Config{URL: broker.URL(), ClientID: "commands"})
	awaitConnection(t, c)
	cmds := make(chan Delivery, 10)
	if err := c.SubscribeWith(context.Background(), "cmd/+", SubscribeOptions{NoRetained: true}, func(d Delivery) { cmds <- d }); err != nil {
		t.Fatal(err)
	}
	plain := make(chan Delivery, 10)
	if err := c.SubscribeWith(context.Background(), "plain/+", SubscribeOptions{}, func(d Delivery) { plain <- d }); err != nil {
		t.Fatal(err)
	}
	next := func(ch chan Delivery, what string) Delivery {
		t.Helper()
		select {
		case d := <-ch:
			return d
		case <-time.After(waitTimeout):
			t.Fatalf("no %s", what)
			return Delivery{}
		}
	}
	if d := next(plain, "retained message on a default subscription"); d.Topic != "plain/old" || !d.Retain {
		t.Errorf("default subscription got %+v, want plain/old flagged retained", d)
	}

	publish(t, pub,
		pubsub.Message{Topic: "cmd/live", Payload: []byte("live"), QoS: 1},
		pubsub.Message{Topic: "cmd/sticky", Payload: []byte("published retained"), QoS: 1, Retain: true})
	// The retained message, had it been sent, would have come first: it is
	// queued when the subscription is made, before these were published.
	if d := next(cmds, "live message"); d.Topic != "cmd/live" || d.Retain {
		t.Fatalf("got %+v, want cmd/live without the retain flag (and no cmd/old)", d)
	}
	if d := next(cmds, "message published retained"); d.Topic != "cmd/sticky" || !d.Retain {
		t.Fatalf("got %+v, want cmd/sticky with the retain flag as published", d)
	}

	// The broker restarts with its retained messages (saved on SIGTERM),
	// without our subscription (clean start): the resubscription sends
	// none of them either.
	broker.Stop()
	broker.Start()
	awaitReconnect(t, c)
	awaitConnection(t, pub)
	deadline := time.After(waitTimeout)
	for {
		publish(t, pub, pubsub.Message{Topic: "cmd/marker", Payload: []byte("after restart"), QoS: 1})
		select {
		case d := <-cmds:
			if d.Topic != "cmd/marker" {
				t.Fatalf("after the reconnection got %+v (retained %v), want only the marker", d.Topic, d.Retain)
			}
			return
		case <-time.After(200 * time.Millisecond):
			// The resubscription may not have reached the broker yet.
		case <-deadline:
			t.Fatal("subscription not made again after reconnecting")
		}
	}
}

func TestSubscribeOptionsOfAFilterAgree(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := startClient(t, Config{URL: broker.URL()})
	awaitConnection(t, c)
	if err := c.SubscribeWith(context.Background(), "cmd/+", SubscribeOptions{NoRetained: true}, func(Delivery) {}); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(context.Background(), "cmd/+", func(string, []byte) {}); !errors.Is(err, ErrSubscribeOptions) {
		t.Errorf("second subscription with other options: %v, want ErrSubscribeOptions", err)
	}
	if err := c.SubscribeWith(context.Background(), "cmd/+", SubscribeOptions{NoRetained: true}, func(Delivery) {}); err != nil {
		t.Errorf("second subscription with the same options: %v", err)
	}
}
