package external

import (
	"net"
	"syscall"
)

// quickAck returns c with TCP quick acknowledgements turned on again after
// every write, so that the kernel acknowledges the broker's answer at once
// instead of waiting up to 40 ms for data to piggyback on. A broker that
// does not set TCP_NODELAY (mosquitto's default) sends the first PUBACK of a
// batch and holds back the others until that acknowledgement arrives: with
// delayed ACKs a QoS 1 batch from a single vehicle would take 40 ms; with
// quick ACKs the rest follow at once, in one segment. Linux goes back to
// delayed ACKs whenever it sends data soon after receiving some, hence after
// every write.
func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: tc, raw: raw}
	q.set()
	return q
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (q *quickAckConn) Write(p []byte) (int, error) {
	n, err := q.TCPConn.Write(p)
	if err == nil {
		q.set()
	}
	return n, err
}

func (q *quickAckConn) set() {
	_ = q.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
