package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// rawClient speaks MQTT 3.1.1 or 5 byte by byte (with mochi's packet
// codec), so that tests see exactly what the broker writes: flags, packet
// identifiers, properties.
type rawClient struct {
	t       testing.TB
	id      string
	version byte
	conn    net.Conn
	r       *bufio.Reader
	queue   []packets.Packet // PUBLISH packets read while waiting for something else
	nextID  uint16
}

// dialRaw connects a client with a clean session; props are its CONNECT
// properties (MQTT 5).
func dialRaw(t testing.TB, b *Broker, version byte, props packets.Properties) *rawClient {
	t.Helper()
	return dialRawID(t, b, fmt.Sprint("raw-", clientIDs.Add(1)), version, true, props)
}

func dialRawID(t testing.TB, b *Broker, id string, version byte, clean bool, props packets.Properties) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", b.Addr(ListenerTCP), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, id: id, version: version, conn: conn, r: bufio.NewReader(conn), nextID: 100}
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect:     packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, Keepalive: 30, ClientIdentifier: id},
		Properties:  props,
	})
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connect: %+v", ack)
	}
	return c
}

func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		pk.FixedHeader.Qos = 1
		err = pk.UnsubscribeEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		c.t.Fatalf("cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err == nil {
		_, err = c.conn.Write(buf.Bytes())
	}
	if err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read returns the next packet from the connection.
func (c *rawClient) read() packets.Packet {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	var pk packets.Packet
	hb, err := c.r.ReadByte()
	if err == nil {
		err = pk.FixedHeader.Decode(hb)
	}
	if err == nil {
		pk.FixedHeader.Remaining, _, err = packets.DecodeLength(c.r)
	}
	body := make([]byte, pk.FixedHeader.Remaining)
	if err == nil {
		_, err = io.ReadFull(c.r, body)
	}
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	pk.ProtocolVersion = c.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pingresp, packets.Disconnect:
	default:
		c.t.Fatalf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatalf("decode packet type %d: %v", pk.FixedHeader.Type, err)
	}
	return pk
}

// until reads up to the first packet of type typ, queueing PUBLISH packets
// on the way.
func (c *rawClient) until(typ byte) packets.Packet {
	c.t.Helper()
	for {
		pk := c.read()
		if pk.FixedHeader.Type == typ {
			return pk
		}
		if pk.FixedHeader.Type != packets.Publish {
			c.t.Fatalf("got packet type %d waiting for %d", pk.FixedHeader.Type, typ)
		}
		c.queue = append(c.queue, pk)
	}
}

// subscribe subscribes and returns the reason codes; retained messages
// that arrive before the SUBACK are queued.
func (c *rawClient) subscribe(props packets.Properties, subs ...packets.Subscription) []byte {
	c.t.Helper()
	c.nextID++
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: c.nextID, Filters: subs, Properties: props})
	ack := c.until(packets.Suback)
	if ack.PacketID != c.nextID {
		c.t.Fatalf("SUBACK for packet %d, want %d", ack.PacketID, c.nextID)
	}
	return ack.ReasonCodes
}

func (c *rawClient) unsubscribe(filters ...string) {
	c.t.Helper()
	c.nextID++
	var subs packets.Subscriptions
	for _, f := range filters {
		subs = append(subs, packets.Subscription{Filter: f})
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe}, PacketID: c.nextID, Filters: subs})
	c.until(packets.Unsuback)
}

// next returns the next PUBLISH packet.
func (c *rawClient) next() packets.Packet {
	c.t.Helper()
	if len(c.queue) > 0 {
		pk := c.queue[0]
		c.queue = c.queue[1:]
		return pk
	}
	return c.until(packets.Publish)
}

func (c *rawClient) puback(id uint16) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
}

// sync returns once the broker has processed everything the client sent
// before: it answers packets in order.
func (c *rawClient) sync() {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	c.until(packets.Pingresp)
}

// expectNext checks that the next message is on topic with payload.
func (c *rawClient) expectNext(topic, payload string) packets.Packet {
	c.t.Helper()
	pk := c.next()
	if pk.TopicName != topic || string(pk.Payload) != payload {
		c.t.Fatalf("got %s %q, want %s %q", pk.TopicName, pk.Payload, topic, payload)
	}
	return pk
}

func publish(t testing.TB, b *Broker, msgs ...pubsub.Message) {
	t.Helper()
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
}

// serverClient returns mochi's state of a connected client.
func serverClient(t testing.TB, b *Broker, id string) *mqtt.Client {
	t.Helper()
	cl, ok := b.server.Clients.Get(id)
	if !ok {
		t.Fatalf("no client %s", id)
	}
	return cl
}

const (
	socTopic  = "tesla/" + testVIN + "/Soc"
	gearTopic = "tesla/" + testVIN + "/Gear"
)

// TestDelivery checks what a subscriber receives of the bridge's messages
// for each protocol version and subscription QoS: the QoS is the lower of
// message and subscription, QoS 1 messages carry distinct packet
// identifiers and leave mochi's in-flight store when acknowledged, and
// live messages are not flagged retained (MQTT 5: unless the subscription
// asks to retain as published).
func TestDelivery(t *testing.T) {
	for _, tc := range []struct {
		version byte
		qos     byte
		rap     bool
	}{
		{4, 0, false}, {4, 1, false}, {5, 0, false}, {5, 1, false}, {5, 1, true},
	} {
		t.Run(fmt.Sprintf("v%d qos%d rap=%t", tc.version, tc.qos, tc.rap), func(t *testing.T) {
			broker := startBroker(t, testConfig(), "")
			c := dialRaw(t, broker, tc.version, packets.Properties{})
			codes := c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: tc.qos, RetainAsPublished: tc.rap})
			if !bytes.Equal(codes, []byte{tc.qos}) {
				t.Fatalf("SUBACK %v", codes)
			}
			sent := []pubsub.Message{
				{Topic: socTopic, Payload: []byte("80"), QoS: 1, Retain: true},
				{Topic: "tesla/" + testVIN + "/compat", Payload: []byte("1"), QoS: 1},
				{Topic: gearTopic, Payload: []byte("D"), QoS: 0, Retain: true},
				{Topic: socTopic, Payload: []byte("81"), QoS: 1, Retain: true},
			}
			publish(t, broker, sent...)
			ids := map[uint16]bool{}
			for _, m := range sent {
				pk := c.expectNext(m.Topic, string(m.Payload))
				if want := min(m.QoS, tc.qos); pk.FixedHeader.Qos != want {
					t.Errorf("%s: QoS %d, want %d", m.Topic, pk.FixedHeader.Qos, want)
				}
				if want := m.Retain && tc.rap; pk.FixedHeader.Retain != want {
					t.Errorf("%s: retain %t, want %t", m.Topic, pk.FixedHeader.Retain, want)
				}
				if pk.FixedHeader.Dup {
					t.Errorf("%s: dup set", m.Topic)
				}
				if pk.FixedHeader.Qos > 0 {
					if pk.PacketID == 0 || ids[pk.PacketID] {
						t.Errorf("%s: packet id %d (seen: %v)", m.Topic, pk.PacketID, ids)
					}
					ids[pk.PacketID] = true
					c.puback(pk.PacketID)
				}
			}
			c.sync()
			if n := serverClient(t, broker, c.id).State.Inflight.Len(); n != 0 {
				t.Errorf("%d messages still in flight after their acknowledgements", n)
			}
		})
	}
}

// TestSubscriptionIdentifiers: an MQTT 5 subscriber learns which of its
// subscriptions a message matched.
func TestSubscriptionIdentifiers(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 5, packets.Properties{})
	c.subscribe(packets.Properties{SubscriptionIdentifier: []int{7}}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	c.subscribe(packets.Properties{SubscriptionIdentifier: []int{300}}, packets.Subscription{Filter: "tesla/+/Soc", Qos: 0})
	publish(t, broker,
		pubsub.Message{Topic: socTopic, Payload: []byte("80"), QoS: 1},
		pubsub.Message{Topic: gearTopic, Payload: []byte("D"), QoS: 1})
	for _, want := range []struct {
		topic string
		ids   []int
	}{{socTopic, []int{7, 300}}, {gearTopic, []int{7}}} {
		pk := c.next()
		if pk.TopicName != want.topic || !slices.Equal(pk.Properties.SubscriptionIdentifier, want.ids) {
			t.Errorf("%s: subscription identifiers %v, want %s %v", pk.TopicName, pk.Properties.SubscriptionIdentifier, want.topic, want.ids)
		}
		if pk.FixedHeader.Qos != 1 {
			t.Errorf("%s: QoS %d, want 1 (the higher of the two subscriptions)", pk.TopicName, pk.FixedHeader.Qos)
		}
	}
	// A retained message sent on subscribe carries the new subscription's.
	publish(t, broker, pubsub.Message{Topic: gearTopic, Payload: []byte("P"), Retain: true})
	if pk := c.expectNext(gearTopic, "P"); !slices.Equal(pk.Properties.SubscriptionIdentifier, []int{7}) {
		t.Errorf("live %s: subscription identifiers %v, want [7]", gearTopic, pk.Properties.SubscriptionIdentifier)
	}
	c.subscribe(packets.Properties{SubscriptionIdentifier: []int{42}}, packets.Subscription{Filter: "tesla/+/Gear"})
	if pk := c.expectNext(gearTopic, "P"); !pk.FixedHeader.Retain || !slices.Equal(pk.Properties.SubscriptionIdentifier, []int{42}) {
		t.Errorf("retained %s: retain %t, subscription identifiers %v, want true [42]", gearTopic, pk.FixedHeader.Retain, pk.Properties.SubscriptionIdentifier)
	}
}

// TestRetainedOnSubscribe: a new subscription gets the retained messages
// that match it, flagged retained, at the lower QoS, as its retain
// handling says; a shared subscription gets none but its share of live
// messages.
func TestRetainedOnSubscribe(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	publish(t, broker,
		pubsub.Message{Topic: socTopic, Payload: []byte("80"), QoS: 1, Retain: true},
		pubsub.Message{Topic: gearTopic, Payload: []byte("D"), QoS: 0, Retain: true},
		pubsub.Message{Topic: "tesla/" + testVIN + "/live", Payload: []byte("x"), QoS: 1})
	// Another client's retained message, with properties that must survive.
	other := mustDial(t, broker.Addr(ListenerTCP), nil)
	if _, err := other.Publish(t.Context(), &paho.Publish{Topic: "home/x", QoS: 1, Retain: true, Payload: []byte("1"),
		Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "k", Value: "v"}}}}); err != nil {
		t.Fatal(err)
	}
	marker := func(c *rawClient, n int) {
		t.Helper()
		publish(t, broker, pubsub.Message{Topic: "tesla/marker", Payload: []byte(strconv.Itoa(n)), QoS: 0})
		c.expectNext("tesla/marker", strconv.Itoa(n))
	}

	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			c := dialRaw(t, broker, version, packets.Properties{})
			c.subscribe(packets.Properties{}, packets.Subscription{Filter: "#", Qos: 1})
			got := map[string]packets.Packet{}
			for range 3 {
				pk := c.next()
				got[pk.TopicName] = pk
				if !pk.FixedHeader.Retain {
					t.Errorf("%s: not flagged retained", pk.TopicName)
				}
			}
			for topic, want := range map[string]struct {
				payload string
				qos     byte
			}{socTopic: {"80", 1}, gearTopic: {"D", 0}, "home/x": {"1", 1}} {
				pk, ok := got[topic]
				if !ok || string(pk.Payload) != want.payload || pk.FixedHeader.Qos != want.qos {
					t.Errorf("retained %s: %+v, want %q at QoS %d", topic, pk, want.payload, want.qos)
				}
				if pk.FixedHeader.Qos > 0 {
					c.puback(pk.PacketID)
				}
			}
			if version == 5 {
				p := got["home/x"].Properties
				if p.ContentType != "text/plain" || len(p.User) != 1 || p.User[0] != (packets.UserProperty{Key: "k", Val: "v"}) {
					t.Errorf("another client's retained message lost its properties: %+v", p)
				}
			}
			marker(c, 1) // nothing else came first

			// Subscribing again replaces the subscription and sends the
			// retained messages again, unless retain handling says no.
			if version == 5 {
				c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/+/Gear", RetainHandling: 2})
				marker(c, 2)
				c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/+/Gear", RetainHandling: 1})
				marker(c, 3) // not new
				c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/+/Soc", RetainHandling: 1})
				c.expectNext(socTopic, "80")
				marker(c, 4)
			}
		})
	}

	t.Run("shared", func(t *testing.T) {
		c := dialRaw(t, broker, 5, packets.Properties{})
		c.subscribe(packets.Properties{}, packets.Subscription{Filter: "$share/g/tesla/#", Qos: 1})
		publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("82"), QoS: 1, Retain: true})
		pk := c.expectNext(socTopic, "82") // live, not the retained 80
		c.puback(pk.PacketID)
		late := dialRaw(t, broker, 5, packets.Properties{})
		late.subscribe(packets.Properties{}, packets.Subscription{Filter: socTopic})
		late.expectNext(socTopic, "82") // the shared topic's message was kept
	})
}

// TestRetainedOrder: a client that subscribes while the bridge publishes
// never receives an older value of a topic after a newer one, and ends
// with the latest.
func TestRetainedOrder(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	const last = 2000
	for round := range 5 {
		publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("0"), QoS: 0, Retain: true})
		errs := make(chan error, 1)
		go func() {
			for i := 1; i <= last; i++ {
				if err := broker.Publish(context.Background(), []pubsub.Message{{Topic: socTopic, Payload: []byte(strconv.Itoa(i)), QoS: 0, Retain: true}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		c := dialRaw(t, broker, 4, packets.Properties{})
		c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#"})
		prev := -1
		for prev != last {
			pk := c.next()
			n, err := strconv.Atoi(string(pk.Payload))
			if err != nil || n < prev {
				t.Fatalf("round %d: %q after %d", round, pk.Payload, prev)
			}
			prev = n
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPersistentSession: QoS 1 messages for a subscriber with a session
// that outlives its connection wait for it while it is away and arrive
// when it comes back; a clean session keeps nothing.
func TestPersistentSession(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	props := packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}
	c := dialRawID(t, broker, "persistent", 5, true, props)
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.conn.Close()
	waitFor(t, "the client to be offline", func() bool { return serverClient(t, broker, "persistent").Closed() })

	publish(t, broker,
		pubsub.Message{Topic: socTopic, Payload: []byte("1"), QoS: 1},
		pubsub.Message{Topic: socTopic, Payload: []byte("2"), QoS: 0}, // QoS 0: not kept
		pubsub.Message{Topic: socTopic, Payload: []byte("3"), QoS: 1})
	if n := serverClient(t, broker, "persistent").State.Inflight.Len(); n != 2 {
		t.Fatalf("%d messages kept for the offline session, want 2", n)
	}

	back := dialRawID(t, broker, "persistent", 5, false, props)
	var got []string
	for range 2 {
		pk := back.next()
		got = append(got, string(pk.Payload))
		back.puback(pk.PacketID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "3"}) {
		t.Errorf("after reconnecting: %q, want 1 and 3", got)
	}
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("4"), QoS: 1})
	pk := back.expectNext(socTopic, "4")
	back.puback(pk.PacketID)
	back.sync()
	if n := serverClient(t, broker, "persistent").State.Inflight.Len(); n != 0 {
		t.Errorf("%d messages in flight after all were acknowledged", n)
	}

	// A clean session ends with its connection: nothing is kept.
	clean := dialRawID(t, broker, "clean", 5, true, packets.Properties{})
	clean.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	cl := serverClient(t, broker, "clean")
	clean.conn.Close()
	waitFor(t, "the clean session to end", func() bool { _, ok := broker.server.Clients.Get("clean"); return !ok })
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("5"), QoS: 1})
	if n := cl.State.Inflight.Len(); n != 0 {
		t.Errorf("%d messages kept for an ended clean session", n)
	}
}

// TestReceiveMaximum: an MQTT 5 client that accepts at most two
// unacknowledged messages gets two; the others follow as it acknowledges.
func TestReceiveMaximum(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 5, packets.Properties{ReceiveMaximum: 2})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	var msgs []pubsub.Message
	for i := range 5 {
		msgs = append(msgs, pubsub.Message{Topic: socTopic, Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	publish(t, broker, msgs...)
	cl := serverClient(t, broker, c.id)
	broker.fan.smu.Lock()
	s := broker.fan.senders[cl]
	broker.fan.smu.Unlock()
	s.mu.Lock()
	waiting := len(s.waiting)
	s.mu.Unlock()
	if waiting != 3 {
		t.Errorf("%d messages wait for the receive maximum, want 3", waiting)
	}
	if n := cl.State.Inflight.Len(); n != 5 {
		t.Errorf("%d messages in flight, want all 5", n)
	}
	var got []string
	for range 5 {
		pk := c.next()
		got = append(got, string(pk.Payload))
		c.puback(pk.PacketID)
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Errorf("got %q, want all in order", got)
	}
	c.sync()
	if n := cl.State.Inflight.Len(); n != 0 {
		t.Errorf("%d messages in flight after all were acknowledged", n)
	}
	if n := broker.fan.holding.Load(); n != 0 {
		t.Errorf("%d senders still hold messages back", n)
	}
}

// TestMaximumPacketSize: a message larger than the client accepts is not
// sent to it (nor kept in flight); the next one is.
func TestMaximumPacketSize(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 5, packets.Properties{MaximumPacketSize: 64})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	publish(t, broker,
		pubsub.Message{Topic: socTopic, Payload: bytes.Repeat([]byte("x"), 100), QoS: 1},
		pubsub.Message{Topic: gearTopic, Payload: []byte("D"), QoS: 1})
	pk := c.expectNext(gearTopic, "D")
	c.puback(pk.PacketID)
	c.sync()
	if n := serverClient(t, broker, c.id).State.Inflight.Len(); n != 0 {
		t.Errorf("%d messages in flight", n)
	}
}

// TestUnsubscribe: after UNSUBACK no message of the filter arrives.
func TestUnsubscribe(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 4, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/+/Soc"}, packets.Subscription{Filter: "marker"})
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("1")})
	c.expectNext(socTopic, "1")
	c.unsubscribe("tesla/+/Soc")
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("2")}, pubsub.Message{Topic: "marker", Payload: []byte("m")})
	c.expectNext("marker", "m")
}

// TestOfflineSessionFull: a persistent session whose client is away keeps
// QoS 1 messages up to max_queued; the others are dropped and counted.
func TestOfflineSessionFull(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueued = 2
	broker := startBroker(t, cfg, "")
	props := packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}
	c := dialRawID(t, broker, "away", 5, true, props)
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.conn.Close()
	waitFor(t, "the client to be offline", func() bool { return serverClient(t, broker, "away").Closed() })

	for i := range 3 {
		publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	if n := serverClient(t, broker, "away").State.Inflight.Len(); n != 2 {
		t.Errorf("%d messages kept for the offline session, want max_queued (2)", n)
	}
	if n := broker.Dropped(DropSessionFull); n != 1 {
		t.Errorf("%d drops counted as session_full, want 1", n)
	}
}

// TestSenderEnds: when a client goes, its sender stops.
func TestSenderEnds(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 4, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "#"})
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("1")})
	c.expectNext(socTopic, "1")
	f := broker.fan
	senders := func() int {
		f.smu.Lock()
		defer f.smu.Unlock()
		return len(f.senders)
	}
	if n := senders(); n != 1 {
		t.Fatalf("%d senders, want 1", n)
	}
	c.conn.Close()
	waitFor(t, "the sender to stop", func() bool { return senders() == 0 })
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("2")})
	if n := senders(); n != 0 {
		t.Errorf("%d senders after the client left", n)
	}
}

func TestPublishRefuses(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	for _, tc := range []struct {
		msg  pubsub.Message
		want error
	}{
		{pubsub.Message{Topic: ""}, packets.ErrProtocolViolationNoTopic},
		{pubsub.Message{Topic: "tesla/+/Soc"}, packets.ErrProtocolViolationSurplusWildcard},
		{pubsub.Message{Topic: "tesla/#"}, packets.ErrProtocolViolationSurplusWildcard},
		{pubsub.Message{Topic: string(bytes.Repeat([]byte("a"), 70000))}, packets.ErrProtocolViolationInvalidTopic},
		{pubsub.Message{Topic: "tesla/x", QoS: 3}, packets.ErrProtocolViolationQosOutOfRange},
	} {
		if err := broker.Publish(t.Context(), []pubsub.Message{tc.msg}); !errors.Is(err, tc.want) {
			t.Errorf("topic %.20q qos %d: %v, want %v", tc.msg.Topic, tc.msg.QoS, err, tc.want)
		}
	}
}

// TestAppendPublish compares the encoder with mochi's for packets without
// properties other than subscription identifiers.
func TestAppendPublish(t *testing.T) {
	for _, d := range []delivery{
		{version: 4}, {version: 4, qos: 1, id: 513, retain: true}, {version: 3, qos: 2, id: 1},
		{version: 5}, {version: 5, qos: 1, id: 65535, ids: []int{1, 127, 128, 16384, 268435455}},
	} {
		for _, payload := range [][]byte{nil, []byte("80"), bytes.Repeat([]byte("x"), 200), bytes.Repeat([]byte("y"), 20000)} {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "tesla/" + testVIN + "/state", Payload: payload}
			got := appendPublish([]byte("prefix"), &pk, d)
			var want bytes.Buffer
			want.WriteString("prefix")
			out := d.packet(&pk)
			if err := out.PublishEncode(&want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%+v, %d bytes of payload:\n got %x\nwant %x", d, len(payload), got[:min(len(got), 64)], want.Bytes()[:min(want.Len(), 64)])
			}
		}
	}
}

// waitFor waits until cond holds; it fails the test after wait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRetainedRepeat: a message the bridge publishes again unchanged is
// delivered again but not kept again; anything else that changes the
// retained message of a topic is kept: another payload or QoS, a
// deletion, and on topics clients may write, whatever the bridge sends.
func TestRetainedRepeat(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := dialRaw(t, broker, 5, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "#"})
	retained := func(topic string) (packets.Packet, bool) {
		broker.fan.flushRetained() // as anything that reads mochi's index does
		return broker.server.Topics.Retained.Get(topic)
	}

	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("80"), QoS: 0, Retain: true})
	first, _ := retained(socTopic)
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("80"), QoS: 0, Retain: true})
	c.expectNext(socTopic, "80")
	c.expectNext(socTopic, "80")
	if again, _ := retained(socTopic); &again.Payload[0] != &first.Payload[0] {
		t.Error("an unchanged message was kept again")
	}
	for _, step := range []struct {
		msg  pubsub.Message
		want string // retained payload afterwards; "" for none
		qos  byte
	}{
		{pubsub.Message{Topic: socTopic, Payload: []byte("80"), QoS: 1, Retain: true}, "80", 1},
		{pubsub.Message{Topic: socTopic, Payload: []byte("81"), QoS: 1, Retain: true}, "81", 1},
		{pubsub.Message{Topic: socTopic, Payload: nil, QoS: 1, Retain: true}, "", 0},
		{pubsub.Message{Topic: socTopic, Payload: []byte("81"), QoS: 1, Retain: true}, "81", 1},
	} {
		publish(t, broker, step.msg)
		pk := c.expectNext(step.msg.Topic, string(step.msg.Payload))
		if pk.FixedHeader.Qos > 0 {
			c.puback(pk.PacketID)
		}
		got, ok := retained(socTopic)
		if string(got.Payload) != step.want || ok != (step.want != "") || got.FixedHeader.Qos != step.qos {
			t.Errorf("after %q at QoS %d: retained %q (%t) at QoS %d, want %q at QoS %d",
				step.msg.Payload, step.msg.QoS, got.Payload, ok, got.FixedHeader.Qos, step.want, step.qos)
		}
	}

	// A topic clients may write too: the bridge's message is always kept.
	const config = "homeassistant/sensor/x/config"
	publish(t, broker, pubsub.Message{Topic: config, Payload: []byte("{}"), QoS: 1, Retain: true})
	c.puback(c.expectNext(config, "{}").PacketID)
	other := mustDial(t, broker.Addr(ListenerTCP), nil)
	if _, err := other.Publish(t.Context(), &paho.Publish{Topic: config, QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	c.puback(c.expectNext(config, "").PacketID)
	if _, ok := retained(config); ok {
		t.Fatal("the client's empty message did not delete the retained one")
	}
	publish(t, broker, pubsub.Message{Topic: config, Payload: []byte("{}"), QoS: 1, Retain: true})
	if got, _ := retained(config); string(got.Payload) != "{}" {
		t.Errorf("retained %q after the bridge published {} again", got.Payload)
	}
}

// TestReceiveMaximumUnderLoad streams QoS 1 messages of the bridge, and of
// a client through mochi's own path, to an MQTT 5 subscriber with a small
// receive maximum, and checks that every message arrives. With mochi's
// flow control left on, messages it held back were never sent once the
// first held-back one was acknowledged, and its double read lock of the
// in-flight store could hang the subscriber's connection for good.
func TestReceiveMaximumUnderLoad(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	addr := broker.Addr(ListenerTCP)
	rm := uint16(10)
	sub := mustDial(t, addr, &paho.Connect{Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}})
	sub.subscribe(t, "tesla/#")
	sub.subscribe(t, "other/#")
	pub := mustDial(t, addr, nil)

	// Fewer than max_queued in all, so that the publishers rarely wait.
	const batches, batch, others = 200, 20, 1000
	errs := make(chan error, 2)
	go func() {
		msgs := make([]pubsub.Message, batch)
		for i := range batches {
			for j := range msgs {
				msgs[j] = pubsub.Message{Topic: fmt.Sprintf("tesla/%s/F%d", testVIN, j), Payload: []byte(strconv.Itoa(i*batch + j)), QoS: 1}
			}
			if err := broker.Publish(context.Background(), msgs); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	go func() {
		for i := range others {
			if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: "other/x", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				errs <- fmt.Errorf("client publish: %w", err)
				return
			}
		}
		errs <- nil
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	seen := make(map[string]bool)
	want := batches*batch + others
	timeout := time.After(60 * time.Second)
	for len(seen) < want {
		select {
		case m := <-sub.msgs:
			seen[m.Topic[:5]+string(m.Payload)] = true
		case <-timeout:
			t.Fatalf("%d of %d messages arrived; mochi holds %d in flight for the subscriber",
				len(seen), want, serverClient(t, broker, sub.ClientID()).State.Inflight.Len())
		}
	}
	if n := broker.server.Info.MessagesDropped + broker.server.Info.InflightDropped; n != 0 {
		t.Errorf("the broker dropped %d messages", n)
	}
	waitFor(t, "an empty in-flight store", func() bool {
		return serverClient(t, broker, sub.ClientID()).State.Inflight.Len() == 0
	})
}

// TestRetainedReplacementRead: a retained message of the bridge that
// replaced another, and waits in its topic's kept state, is what every
// reader of the retained messages gets: a client that subscribes, an
// in-process subscription, and, after a change of subscriptions emptied
// the routes, a later replacement still wins over it.
func TestRetainedReplacementRead(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	for _, soc := range []string{"70", "71"} {
		publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte(soc), QoS: 1, Retain: true})
	}
	if pk, _ := broker.server.Topics.Retained.Get(socTopic); string(pk.Payload) != "70" {
		t.Fatalf("mochi's index holds %q before anything read it, want the first message, 70, with 71 waiting", pk.Payload)
	}
	c := dialRaw(t, broker, 4, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	if pk := c.expectNext(socTopic, "71"); !pk.FixedHeader.Retain || pk.FixedHeader.Qos != 1 {
		t.Errorf("retain %v, QoS %d on subscribing; want a retained QoS 1 message", pk.FixedHeader.Retain, pk.FixedHeader.Qos)
	} else {
		c.puback(pk.PacketID)
	}

	// The subscription emptied the routes; the topic keeps its state.
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("72"), QoS: 1, Retain: true})
	c.puback(c.expectNext(socTopic, "72").PacketID)
	got := make(chan string, 4)
	if err := broker.Subscribe(t.Context(), socTopic, func(_ string, payload []byte) { got <- string(payload) }); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "72" {
			t.Errorf("an in-process subscription got %q, want the newest retained message, 72", p)
		}
	case <-time.After(wait):
		t.Fatal("an in-process subscription got no retained message")
	}
}

// TestOfflineBudget: offline persistent sessions keep max_offline_queued
// messages in all, the bridge's and other clients' alike; the rest is
// dropped and counted, and a session that resumes gives its share back.
func TestOfflineBudget(t *testing.T) {
	cfg := testConfig()
	cfg.MaxOfflineQueued = 10
	broker := startBroker(t, cfg, "")
	props := packets.Properties{SessionExpiryInterval: 600, SessionExpiryIntervalFlag: true}
	for _, id := range []string{"gone-a", "gone-b"} {
		c := dialRawID(t, broker, id, 5, true, props)
		c.subscribe(packets.Properties{}, packets.Subscription{Filter: "#", Qos: 1})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		c.conn.Close()
		waitFor(t, id+" to be offline", func() bool { return serverClient(t, broker, id).Closed() })
	}
	kept := func(id string) int { return serverClient(t, broker, id).State.Inflight.Len() }

	for i := range 4 { // the bridge's: 8 kept
		publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	other := dialRaw(t, broker, 5, packets.Properties{})
	for i := range 3 { // another client's, through mochi: 2 more kept, then the budget is spent
		other.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "other/x", PacketID: uint16(i + 1), Payload: []byte("x")})
		other.until(packets.Puback)
	}
	for i := range 5 { // the bridge's again: all dropped
		publish(t, broker, pubsub.Message{Topic: gearTopic, Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	// mochi acknowledges another client's message before it delivers it.
	want := int64(2*(4+3+5) - 10)
	waitFor(t, "every message kept or dropped", func() bool { return broker.Dropped(DropOfflineFull) >= want })
	if a, b := kept("gone-a"), kept("gone-b"); a+b != 10 {
		t.Errorf("offline sessions keep %d and %d messages, want 10 in all", a, b)
	}
	if n := broker.Dropped(DropOfflineFull); n != want {
		t.Errorf("%d drops counted as offline_full, want %d", n, want)
	}
	if n := broker.OfflineQueued(); n != 10 {
		t.Errorf("OfflineQueued %d, want 10", n)
	}

	// gone-a comes back: what it kept is its own again, outside the
	// budget, which gone-b may now use.
	a := kept("gone-a")
	back := dialRawID(t, broker, "gone-a", 5, false, props)
	for range a {
		pk := back.next()
		back.puback(pk.PacketID)
	}
	// mochi resends a resumed session's messages before it tells the
	// broker's hooks that the session is established.
	waitFor(t, "gone-a's share given back", func() bool { return broker.OfflineQueued() == int64(10-a) })
	before := kept("gone-b")
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("after"), QoS: 1})
	if n := kept("gone-b"); n != before+1 {
		t.Errorf("gone-b keeps %d messages after gone-a resumed, want %d", n, before+1)
	}
}

// TestSessionExpiry: a persistent session ends max_session_expiry after
// its client left, with what it kept and its subscriptions; an MQTT 5
// client that asks for longer is told the bound.
func TestSessionExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionExpiry = time.Second
	broker := startBroker(t, cfg, "")

	c5 := dialRawID(t, broker, "asks-long", 5, true, packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true})
	if got := serverClient(t, broker, "asks-long").Properties.Props.SessionExpiryInterval; got != 1 {
		t.Errorf("an MQTT 5 client asking for 3600 s keeps its session %d s, want 1", got)
	}
	c5.conn.Close()

	c := dialRawID(t, broker, "leaves", 4, false, packets.Properties{})
	c.subscribe(packets.Properties{}, packets.Subscription{Filter: "tesla/#", Qos: 1})
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.conn.Close()
	waitFor(t, "the client to be offline", func() bool { return serverClient(t, broker, "leaves").Closed() })
	publish(t, broker, pubsub.Message{Topic: socTopic, Payload: []byte("1"), QoS: 1})
	if n := broker.OfflineQueued(); n != 1 {
		t.Fatalf("OfflineQueued %d, want 1", n)
	}
	waitFor(t, "the session to end", func() bool {
		_, ok := broker.server.Clients.Get("leaves")
		return !ok
	})
	if n := broker.OfflineQueued(); n != 0 {
		t.Errorf("OfflineQueued %d after the session ended, want 0", n)
	}
	if subs := broker.server.Topics.Subscribers(socTopic); len(subs.Subscriptions) != 0 {
		t.Errorf("the ended session's subscription is still in the topic index: %v", subs.Subscriptions)
	}
}

// TestSubscriptionQuota: a client gets max_subscriptions filters; more are
// refused with 0x97 (MQTT 5) or 0x80 (MQTT 3), one log line says so, and
// subscribing again to a filter it has is not a new one.
func TestSubscriptionQuota(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSubscriptions = 3
	broker, logs := startLoggedBroker(t, cfg)
	for _, tc := range []struct {
		version byte
		refused byte
	}{{5, 0x97}, {4, 0x80}} {
		c := dialRaw(t, broker, tc.version, packets.Properties{})
		got := c.subscribe(packets.Properties{},
			packets.Subscription{Filter: "a/1", Qos: 1}, packets.Subscription{Filter: "a/2", Qos: 1})
		got = append(got, c.subscribe(packets.Properties{},
			packets.Subscription{Filter: "a/1", Qos: 0}, // had it: not a new one
			packets.Subscription{Filter: "a/3", Qos: 1},
			packets.Subscription{Filter: "a/4", Qos: 1})...)
		got = append(got, c.subscribe(packets.Properties{}, packets.Subscription{Filter: "a/5"})...)
		if want := []byte{1, 1, 0, 1, tc.refused, tc.refused}; !bytes.Equal(got, want) {
			t.Errorf("MQTT %d: SUBACK codes %v, want %v", tc.version, got, want)
		}
		if n := serverClient(t, broker, c.id).State.Subscriptions.Len(); n != 3 {
			t.Errorf("MQTT %d: %d subscriptions kept, want 3", tc.version, n)
		}
		// The refused filters are not in the index either.
		publish(t, broker, pubsub.Message{Topic: "a/4", Payload: []byte("x")})
		publish(t, broker, pubsub.Message{Topic: "a/3", Payload: []byte("y")})
		c.expectNext("a/3", "y")
	}
	if n := strings.Count(logs.String(), "more are refused"); n != 2 {
		t.Errorf("%d log lines about the quota for two clients, want 2:\n%s", n, logs.String())
	}
}

// TestMaxClients: a client past max_clients is refused in its CONNACK,
// and one may connect again once another has left.
func TestMaxClients(t *testing.T) {
	cfg := testConfig()
	cfg.MaxClients = 2
	broker, logs := startLoggedBroker(t, cfg)
	first := dialRaw(t, broker, 5, packets.Properties{})
	dialRaw(t, broker, 4, packets.Properties{})
	connack := func(version byte) byte {
		conn, err := net.DialTimeout("tcp", broker.Addr(ListenerTCP), wait)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &rawClient{t: t, version: version, conn: conn, r: bufio.NewReader(conn)}
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: fmt.Sprint("over-", version)}})
		return c.read().ReasonCode
	}
	if code := connack(5); code != packets.ErrServerBusy.Code {
		t.Errorf("a third MQTT 5 client: CONNACK %#x, want %#x (server busy)", code, packets.ErrServerBusy.Code)
	}
	if code := connack(4); code != 0x03 { // MQTT 3.1.1's "server unavailable"
		t.Errorf("a third MQTT 3 client: CONNACK %#x, want 0x03 (server unavailable)", code)
	}
	// One line for both (at most one a minute), once mochi has logged the first.
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(logs.String(), "max_clients clients are connected") })
	if n := strings.Count(logs.String(), "max_clients clients are connected"); n != 1 {
		t.Errorf("%d log lines for two refused clients, want 1:\n%s", n, logs.String())
	}
	first.conn.Close()
	waitFor(t, "the first client to leave", func() bool {
		cl, ok := broker.server.Clients.Get(first.id)
		return !ok || cl.Closed()
	})
	// mochi counts a client out once its connection's goroutine is done.
	waitFor(t, "a client to be accepted again", func() bool { return connack(5) == 0 })
}
