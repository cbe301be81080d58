package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

const (
	testPrefix = "tesla"
	testVIN    = "5YJ3TESTVIN000001"
	// wait bounds how long a test waits for something that should happen
	// at once; it fails tests that hang, it does not measure anything.
	wait = 10 * time.Second
)

// testConfig listens on a free loopback port and keeps retained messages.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startBroker starts a broker on dataDir (a new one when empty) and closes
// it when the test ends.
func startBroker(t testing.TB, cfg Config, dataDir string) *Broker {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	b, err := New(cfg, dataDir, testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// client is a real MQTT 5 client (paho) with the messages it received.
type client struct {
	*paho.Client
	msgs chan *paho.Publish
}

var clientIDs atomic.Int64

// dialClient connects to addr with cp (a default Connect when nil) over a
// new TCP connection.
func dialClient(t testing.TB, addr string, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	return connectClient(t, conn, cp)
}

func connectClient(t testing.TB, conn net.Conn, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	c := &client{msgs: make(chan *paho.Publish, 1<<16)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn), // paho may write from several goroutines
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
	})
	if cp == nil {
		cp = &paho.Connect{}
	}
	if cp.ClientID == "" {
		cp.ClientID = fmt.Sprint("test-", clientIDs.Add(1))
	}
	cp.KeepAlive = 30
	cp.CleanStart = true
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// mustDial connects or fails the test.
func mustDial(t testing.TB, addr string, cp *paho.Connect) *client {
	t.Helper()
	c, _, err := dialClient(t, addr, cp)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

func (c *client) subscribe(t testing.TB, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: reasons %v", filter, sa.Reasons)
	}
	// mochi acknowledges a subscription before it sends the retained
	// messages, and reads the retained index without a lock (a data race
	// inside mochi v2.7.9 when a retained message is published meanwhile).
	// A second request is processed after the first has finished, so its
	// acknowledgement means the retained messages have been queued. (mochi
	// may refuse it, "packet identifier in use", confusing the ids of its
	// own messages with the client's; a refusal is an acknowledgement too.)
	if _, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"test/sync/never"}}); ctx.Err() != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
}

// next returns the next message the client received.
func (c *client) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no message arrived")
		return nil
	}
}
