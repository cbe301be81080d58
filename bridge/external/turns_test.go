package external

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
)

// TestQuotaTurns: batches that wait for the broker's Receive Maximum go
// first come first served: one that comes while another waits, even with
// quota free by then, queues behind it; and a batch whose quota ran out
// half way finishes before later ones start.
func TestQuotaTurns(t *testing.T) {
	s := newSession(quietLogger())
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	c := newConn(client, &s.waiting, s.pubacks)
	rm := uint16(2)
	if err := s.ConAckReceived(c, &packets.Connect{}, &packets.Connack{Properties: &packets.Properties{ReceiveMaximum: &rm}}); err != nil {
		t.Fatal(err)
	}
	sent := make(chan sentPublish, 16)
	go readPublishes(server, sent)
	next := func() sentPublish {
		t.Helper()
		select {
		case p := <-sent:
			return p
		case <-time.After(waitTimeout):
			t.Fatal("nothing sent")
			return sentPublish{}
		}
	}
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.quotaWaiters)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	errs := make(chan error, 3)
	publish := func(topics ...string) {
		msgs := make([]pubsub.Message, len(topics))
		for i, topic := range topics {
			msgs[i] = pubsub.Message{Topic: topic, Payload: []byte("1"), QoS: 1}
		}
		go func() { errs <- s.publish(ctx, getBatch(msgs)) }()
	}

	publish("a0", "a1", "a2")
	a0, a1 := next(), next()
	waitFor(t, "a to wait for quota", func() bool { return queued() == 1 })
	publish("b0")
	waitFor(t, "b to queue behind a", func() bool { return queued() == 2 })
	s.puback(a0.id, 0) // a's turn: quota 1
	publish("c0")      // comes with quota free, a and b waiting: queues last
	var order []string
	for _, want := range []string{"a2", "b0", "c0"} {
		p := next()
		order = append(order, p.topic)
		if p.topic != want {
			t.Fatalf("sent in the order %v, want a2, b0, c0", order)
		}
		s.puback(p.id, 0)
		if p.topic == "a2" {
			s.puback(a1.id, 0)
		}
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

type sentPublish struct {
	topic string
	id    uint16
}

// readPublishes decodes the MQTT 5 PUBLISH packets (QoS 1) written to r.
func readPublishes(r io.Reader, out chan<- sentPublish) {
	br := bufio.NewReader(r)
	for {
		hlen, n, err := mqttwire.PeekFixedHeader(br)
		if err != nil {
			return
		}
		_, _ = br.Discard(hlen)
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		l := int(binary.BigEndian.Uint16(p))
		out <- sentPublish{topic: string(p[2 : 2+l]), id: binary.BigEndian.Uint16(p[2+l:])}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
