package simulate

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/internal/uuid"
)

// MQTTSubscriber counts the messages an MQTT broker delivers on a topic
// filter: the load driver's view of what a server published.
type MQTTSubscriber struct {
	client *paho.Client
	conn   net.Conn
	epoch  time.Time
	count  atomic.Int64
	last   atomic.Int64 // arrival of the last counted message, nanoseconds since epoch
}

// MQTTOptions says where and how to subscribe.
type MQTTOptions struct {
	// Addr is the broker's host:port (an mqtt:// prefix is accepted).
	Addr string
	// Topic is the topic filter, such as "tesla/#".
	Topic string
	// QoS is the subscription's maximum QoS (0, 1 or 2).
	QoS byte
	// Username and Password authenticate when Username is set.
	Username, Password string
}

// DialMQTT connects an MQTT 5 client to the broker and subscribes to the
// topic filter. Retained messages are not asked for and not counted, so
// the count is what is published from now on.
func DialMQTT(ctx context.Context, opt MQTTOptions) (*MQTTSubscriber, error) {
	return dialMQTT(ctx, opt, nil)
}

// dialMQTT is DialMQTT that also hands every counted message to onMessage
// (when set), on the client's one reading goroutine.
func dialMQTT(ctx context.Context, opt MQTTOptions, onMessage func(topic string, payload []byte)) (*MQTTSubscriber, error) {
	addr := strings.TrimPrefix(opt.Addr, "mqtt://")
	if opt.QoS > 2 {
		return nil, fmt.Errorf("mqtt qos %d: must be 0, 1 or 2", opt.QoS)
	}
	raw, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to mqtt broker: %w", err)
	}
	s := &MQTTSubscriber{conn: newBufferedConn(raw), epoch: time.Now()}
	clientID := "fleet2mqtt-load-" + uuid.New()[:8]
	s.client = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     s.conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				if !pr.Packet.Retain {
					if onMessage != nil {
						onMessage(pr.Packet.Topic, pr.Packet.Payload)
					}
					s.last.Store(int64(time.Since(s.epoch)))
					s.count.Add(1)
				}
				return true, nil
			},
		},
	})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if opt.Username != "" {
		cp.Username, cp.UsernameFlag = opt.Username, true
		cp.Password, cp.PasswordFlag = []byte(opt.Password), true
	}
	ca, err := s.client.Connect(ctx, cp)
	if err != nil {
		raw.Close()
		if ca != nil {
			return nil, fmt.Errorf("mqtt connect refused (reason code %#x): %w", ca.ReasonCode, err)
		}
		return nil, fmt.Errorf("mqtt connect: %w", err)
	}
	sa, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: opt.Topic, QoS: opt.QoS, RetainHandling: 2},
	}})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("mqtt subscribe %q: %w", opt.Topic, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		s.Close()
		return nil, fmt.Errorf("mqtt subscribe %q refused: reasons %v", opt.Topic, sa.Reasons)
	}
	return s, nil
}

// Count returns how many messages have arrived so far.
func (s *MQTTSubscriber) Count() int64 { return s.count.Load() }

// lastArrival returns when the last counted message arrived.
func (s *MQTTSubscriber) lastArrival() time.Time {
	return s.epoch.Add(time.Duration(s.last.Load()))
}

// Settle waits until no message has arrived for quiet, or ctx ends, and
// returns the count then.
func (s *MQTTSubscriber) Settle(ctx context.Context, quiet time.Duration) int64 {
	poll := min(quiet/4, 50*time.Millisecond)
	prev, since := s.Count(), time.Now()
	for {
		if !sleep(ctx, poll) {
			return s.Count()
		}
		n := s.Count()
		if n != prev {
			prev, since = n, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return n
		}
	}
}

// Close disconnects from the broker.
func (s *MQTTSubscriber) Close() {
	_ = s.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
	s.conn.Close()
}

// bufferedConn reads through a buffer (paho reads every packet header in
// small pieces) and serialises writes, as paho requires of its connection
// (it treats a net.Conn that is also a sync.Locker as safe to share).
type bufferedConn struct {
	net.Conn
	sync.Mutex
	r *bufio.Reader
}

func newBufferedConn(c net.Conn) *bufferedConn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
