package simulate

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestMQTTSubscriber: the load driver's subscriber, against a real
// mosquitto, counts every message published after it subscribed at each
// QoS (acknowledging QoS 1 and 2, or the broker would stop sending), hands
// each to its observer whole, leaves out retained messages, logs in, and
// says why the broker refused it.
func TestMQTTSubscriber(t *testing.T) {
	broker := testenv.Mosquitto(t, testenv.WithUser("load", "secret"), testenv.WithConfig("max_inflight_messages 10"))
	pub := dialLoggedPublisher(t, broker.Addr, "load", "secret")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "tesla/old/retained", Payload: []byte("1"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			var got []string
			sub, err := dialMQTT(ctx, MQTTOptions{Addr: broker.Addr, Topic: "tesla/#", QoS: qos, Username: "load", Password: "secret"},
				func(topic, payload []byte, _ time.Time) { got = append(got, string(topic)+"="+string(payload)) })
			if err != nil {
				t.Fatal(err)
			}
			// More than the broker's window of 10: without acknowledgements
			// the rest would never come.
			const n = 500
			for i := range n {
				p := &paho.Publish{Topic: fmt.Sprintf("tesla/car/F%d", i%7), Payload: []byte(strings.Repeat("v", i%300)), QoS: qos}
				if _, err := pub.Publish(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			if c := sub.Settle(ctx, 300*time.Millisecond); c != n {
				t.Fatalf("%d messages counted, want %d", c, n)
			}
			sub.Close()
			for i, m := range got {
				if want := fmt.Sprintf("tesla/car/F%d=%s", i%7, strings.Repeat("v", i%300)); m != want {
					t.Fatalf("message %d: %.40q, want %.40q", i, m, want)
				}
			}
		})
	}
	_, err := dialMQTT(ctx, MQTTOptions{Addr: broker.Addr, Topic: "tesla/#", Username: "load", Password: "wrong"}, nil)
	if err == nil || !strings.Contains(err.Error(), "mqtt connect refused (reason code 0x87)") {
		t.Errorf("wrong password: %v, want the broker's refusal 0x87 (not authorized)", err)
	}
}

func dialLoggedPublisher(t *testing.T, addr, user, password string) *paho.Client {
	t.Helper()
	conn, err := (&net.Dialer{}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: "test-publisher", CleanStart: true, KeepAlive: 30, Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: true}
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}
