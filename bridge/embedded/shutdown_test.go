package embedded

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// An MQTT 3.1.1 client (Home Assistant's) sees the broker's shutdown as
// the connection closing: the server never sends DISCONNECT in that
// version, and such clients read one as a protocol error.
func TestCloseSendsNoDisconnectToMQTT3Clients(t *testing.T) {
	b := startBroker(t, testConfig(), "")
	conn, err := net.DialTimeout("tcp", b.Addr(ListenerTCP), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	// CONNECT, protocol level 4 (3.1.1), clean session, keepalive 60 s,
	// client id "v3".
	connect := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'v', '3'}
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	if _, err := io.ReadFull(conn, connack); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(connack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x, want 20 02 00 00", connack)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading until the broker closes the connection: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("the broker sent % x to an MQTT 3.1.1 client as it closed, want nothing (a DISCONNECT is e0)", rest)
	}
}
