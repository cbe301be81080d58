package embedded

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// defaultConnectTimeout is how long a client has, from the moment its connection
// is accepted, to finish the TLS handshake and send its CONNECT packet.
// mochi (v2.7.9) sets no deadline before CONNECT, so a connection that
// never sends one would hold its goroutine and buffers for ever; once the
// CONNECT is read, mochi replaces the deadline with one from the client's
// keepalive.
const defaultConnectTimeout = 10 * time.Second

// connectDeadline sets a deadline of timeout on every connection it
// accepts.
type connectDeadline struct {
	net.Listener
	timeout time.Duration
}

func (l connectDeadline) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(l.timeout)); err != nil {
		c.Close()
		return nil, fmt.Errorf("set connect deadline: %w", err)
	}
	return c, nil
}

// listenTCP opens a TCP listener for mochi (TLS when tlsConfig is set)
// whose connections must send CONNECT within timeout.
func listenTCP(id, addr string, tlsConfig *tls.Config, timeout time.Duration) (listeners.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var l net.Listener = connectDeadline{Listener: ln, timeout: timeout}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	return listeners.NewNet(id, l), nil
}
