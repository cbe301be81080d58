package embedded

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestComponent: the broker listens once Start returned and is closed by
// Stop; a listener that cannot open fails Start, naming the broker.
func TestComponent(t *testing.T) {
	b, err := New(testConfig(), t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := b.Component()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := b.Addr(ListenerTCP)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the broker does not listen after Start: %v", err)
	}
	conn.Close()
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.Addr(ListenerTCP) != "" {
		t.Error("the listener is still open after Stop")
	}

	cfg := testConfig()
	cfg.Listen = addr
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skip("the port was taken meanwhile")
	}
	defer ln.Close()
	taken, err := New(cfg, t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := taken.Component().Start(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "embedded broker: ") {
		t.Errorf("start on a taken port: %v", err)
	}
}
