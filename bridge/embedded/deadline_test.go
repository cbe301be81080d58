package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
)

// TestConnectTimeout: a connection that does not send CONNECT in time is
// closed by the broker, on every listener, while a client that connected
// stays beyond that time.
func TestConnectTimeout(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	cfg := testConfig()
	cfg.TLS = TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	cfg.WebSocket = WebSocketConfig{Listen: "127.0.0.1:0"}
	b, err := New(cfg, t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	b.connectTimeout = timeout
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// A client that connects in time keeps its connection.
	c := mustDial(t, b.Addr(ListenerTCP), nil)

	for _, tc := range []struct {
		name string
		dial func() (io.Reader, error)
	}{
		{"tcp", func() (io.Reader, error) { return net.DialTimeout("tcp", b.Addr(ListenerTCP), wait) }},
		{"tls handshake done", func() (io.Reader, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", b.Addr(ListenerTLS), &tls.Config{RootCAs: pool})
		}},
		{"tls handshake never started", func() (io.Reader, error) {
			return net.DialTimeout("tcp", b.Addr(ListenerTLS), wait)
		}},
		{"websocket", func() (io.Reader, error) {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: wait}
			ws, _, err := d.Dial("ws://"+b.Addr(ListenerWebSocket)+"/mqtt", nil)
			if err != nil {
				return nil, err
			}
			return ws.NetConn(), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer r.(io.Closer).Close()
			r.(net.Conn).SetReadDeadline(time.Now().Add(wait))
			start := time.Now()
			_, err = io.ReadAll(r)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the broker kept a connection without CONNECT open for %v", time.Since(start).Round(time.Millisecond))
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "test/alive", QoS: 1, Payload: []byte("1")}); err != nil {
		t.Errorf("a connected client lost its connection after %v: %v", timeout, err)
	}
}
