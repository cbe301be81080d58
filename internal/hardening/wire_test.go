//go:build hardening

package hardening

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
)

// rawCar is a car spoken by hand, frame by frame, so that tests can send
// what a well-behaved client library never would.
type rawCar struct {
	tcp *net.TCPConn
	tls *tls.Conn
	r   *bufio.Reader
}

// dialOptions change how a raw connection is made.
type dialOptions struct {
	// RecvBuffer sets the socket's receive buffer before connecting, so
	// that a client that does not read stops the server's writes soon.
	RecvBuffer int
}

// dialTLS opens a TLS connection to addr with cfg and completes the
// handshake.
func dialTLS(addr string, cfg *tls.Config, o dialOptions) (*rawCar, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if o.RecvBuffer > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuffer)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return &rawCar{tcp: c.(*net.TCPConn), tls: tc, r: bufio.NewReader(tc)}, nil
}

// upgrade sends the WebSocket upgrade a car sends and reads the answer;
// it returns the status code.
func (c *rawCar) upgrade(host string) (int, error) {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"X-Network-Interface: wifi\r\nVersion: 2025.44.25.5\r\n\r\n"
	_ = c.tls.SetDeadline(time.Now().Add(15 * time.Second))
	defer c.tls.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.tls, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
	return resp.StatusCode, nil
}

// writeFrame writes one masked client frame.
func (c *rawCar) writeFrame(fin bool, op byte, payload []byte) error {
	return writeFrame(c.tls, fin, op, payload, uint64(len(payload)))
}

// writeFrame writes a masked frame whose header claims length bytes (which
// may be a lie) followed by payload.
func writeFrame(w io.Writer, fin bool, op byte, payload []byte, length uint64) error {
	hdr := make([]byte, 0, 14)
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr = append(hdr, b0)
	switch {
	case length < 126:
		hdr = append(hdr, 0x80|byte(length))
	case length <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(length))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, length)
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, b := range payload {
		masked[i] = b ^ mask[i%4]
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(masked)
	return err
}

// readFrame reads one server frame, answering nothing; it returns the
// opcode and payload.
func (c *rawCar) readFrame(timeout time.Duration) (op byte, payload []byte, err error) {
	_ = c.tls.SetReadDeadline(time.Now().Add(timeout))
	defer c.tls.SetReadDeadline(time.Time{})
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 2<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.r, payload)
	return op, payload, err
}

// response reads frames until a binary one and tells whether it is an
// acknowledgement (true) or the protocol's error response (false).
func (c *rawCar) response(timeout time.Duration) (ack bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		op, p, err := c.readFrame(time.Until(deadline))
		if err != nil {
			return false, err
		}
		switch op {
		case opBinary:
			f, err := envelope.Parse(p)
			if err != nil {
				return false, fmt.Errorf("unreadable response: %w", err)
			}
			return f.Type == envelope.TypeStreamAck, nil
		case opClose:
			return false, fmt.Errorf("server closed the connection: % x", p)
		}
		// pings and anything else: not the answer
	}
}

// closedByServer reports whether the server has closed the connection:
// reading (and discarding) until an error within timeout.
func (c *rawCar) closedByServer(timeout time.Duration) bool {
	_ = c.tls.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// reset closes the connection with a TCP reset, as a car whose modem
// loses power mid-connection looks to the server.
func (c *rawCar) reset() {
	_ = c.tcp.SetLinger(0)
	c.tcp.Close()
}

func (c *rawCar) close() { c.tls.Close() }

// recordFrame builds the envelope of a V record of vin, as a car sends it.
func recordFrame(vin, txid string, data []telemetry.Datum) []byte {
	now := time.Now()
	payload, err := simulate.EncodeData(vin, now, data, false)
	if err != nil {
		panic(err) // test data
	}
	return envelope.AppendFrame(nil, envelope.Frame{
		TxID:      []byte(txid),
		Topic:     []byte(telemetry.TopicV),
		MessageID: []byte(txid),
		Type:      envelope.TypeStream,
		Stream: envelope.Stream{
			CreatedAt:  uint32(now.Unix()),
			SenderID:   []byte(simulate.DeviceType + "." + vin),
			Payload:    payload,
			DeviceType: []byte(simulate.DeviceType),
			DeviceID:   []byte(vin),
		},
	})
}

// socData is a one-signal record.
func socData(v float64) []telemetry.Datum {
	f, _ := telemetry.FieldByName("Soc")
	return []telemetry.Datum{{Field: f, Value: telemetry.FloatValue(v)}}
}

// newTxID returns a random txid.
func newTxID() string { return strings.ToLower(rand.Text()) }

// mqttClient connects a plain MQTT 5 client (no automatic reconnection),
// for publishing and for access checks.
func mqttClient(ctx context.Context, addr string, cp *paho.Connect, onMsg func(paho.PublishReceived)) (*paho.Client, *paho.Connack, error) {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	cfg := paho.ClientConfig{Conn: conn, OnClientError: func(error) {}}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMsg(pr)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	return c, ca, nil
}

// publishRetained publishes one retained QoS 1 message as an anonymous
// client and waits for the broker's acknowledgement.
func publishRetained(addr, topic, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := mqttClient(ctx, addr, &paho.Connect{ClientID: "hardening-pub-" + newTxID()[:8], CleanStart: true, KeepAlive: 30}, nil)
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true})
	if err != nil {
		return err
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("publish %s refused: reason %#x", topic, resp.ReasonCode)
	}
	return nil
}
