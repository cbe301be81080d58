package embedded

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TestPersistence: what the bridge published retained is there again after
// a restart on the same data directory, for a client that subscribes to
// the new broker; what was not retained is not.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()

	first := startBroker(t, cfg, dir)
	bcfg := bridge.DefaultConfig()
	bcfg.Compat.Enabled = true
	br, err := bridge.New(bcfg, first, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := br.Online(ctx); err != nil {
		t.Fatal(err)
	}
	for _, soc := range []float64{79.5, 80.5} {
		if err := br.Handle(ctx, &telemetry.Record{VIN: testVIN, Topic: telemetry.TopicV, Data: []telemetry.Datum{
			{Field: telemetry.FieldSoc, Value: telemetry.FloatValue(soc)},
			{Field: telemetry.FieldGear, Value: telemetry.EnumNumber(telemetry.EnumShiftState, 5)},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	// Another client's retained message (say, discovery of another tool)
	// is kept too.
	other := mustDial(t, first.Addr(ListenerTCP), nil)
	if _, err := other.Publish(ctx, packetPublish("homeassistant/sensor/x/config", `{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	other.Disconnect(&paho.Disconnect{})
	if err := br.Offline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, retainedFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("retained file mode %v, want 0600", mode)
	}

	second := startBroker(t, cfg, dir)
	c := mustDial(t, second.Addr(ListenerTCP), nil)
	c.subscribe(t, "#")
	want := []string{
		`homeassistant/sensor/x/config {"name":"x"}`,
		"tesla/" + testVIN + "/Gear D",
		"tesla/" + testVIN + "/Soc 80.5",
		"tesla/" + testVIN + `/state {"Soc":80.5,"Gear":"D"}`,
		"tesla/bridge/state offline",
	}
	var got []string
	for range want {
		m := c.next(t)
		if !m.Retain {
			t.Errorf("%s not flagged retained", m.Topic)
		}
		got = append(got, m.Topic+" "+string(m.Payload))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("retained after restart:\n got %q\nwant %q", got, want)
	}
	// Nothing else: the compatibility messages were not retained. A
	// message published now is the next one the client sees.
	if err := second.Publish(ctx, []pubsub.Message{{Topic: "tesla/marker", Payload: []byte("m"), QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t); m.Topic != "tesla/marker" {
		t.Errorf("unexpected message %s %q", m.Topic, m.Payload)
	}
}

// TestPeriodicSave: retained messages reach the disk while the broker
// runs, so that a crash loses at most the last interval.
func TestPeriodicSave(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.PersistInterval = time.Second
	b := startBroker(t, cfg, dir)
	// The second message replaces the first: it waits in the topic's
	// kept state until the save writes it into the index (see kept).
	var msg []pubsub.Message
	for _, soc := range []string{"79", "80"} {
		msg = []pubsub.Message{{Topic: "tesla/" + testVIN + "/Soc", Payload: []byte(soc), QoS: 1, Retain: true}}
		if err := b.Publish(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		raw, err := os.ReadFile(filepath.Join(dir, retainedFile))
		if err == nil {
			msgs, err := decodeRetained(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 1 && msgs[0].TopicName == msg[0].Topic && string(msgs[0].Payload) == "80" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("retained message not saved while the broker runs")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCorruptStore: a damaged file does not stop the broker; it is set
// aside and the broker starts empty.
func TestCorruptStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, retainedFile)
	good := encodeForTest(t, map[string]packets.Packet{"a/b": retainedPacket("a/b", "1")})
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, testConfig(), dir)
	for topic := range b.server.Topics.Retained.GetAll() {
		if topic[0] != '$' {
			t.Errorf("retained message %s from a corrupt file", topic)
		}
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("corrupt file not set aside: %v", err)
	}
}

// packetPublish is a retained QoS 1 publish from a client.
func packetPublish(topic, payload string) *paho.Publish {
	return &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)}
}

func retainedPacket(topic, payload string) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: 1},
		TopicName:   topic,
		Payload:     []byte(payload),
		Created:     1767225600,
	}
}

func encodeForTest(t testing.TB, m map[string]packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := encodeRetained(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decodeRetained decodes a whole file into storage messages.
func decodeRetained(raw []byte) ([]storage.Message, error) {
	var msgs []storage.Message
	err := decodeRetainedFunc(raw, func(pk packets.Packet) {
		msgs = append(msgs, storage.Message{
			TopicName: pk.TopicName, Payload: pk.Payload, FixedHeader: pk.FixedHeader, Created: pk.Created,
			Properties: storage.MessageProperties{
				PayloadFormat: pk.Properties.PayloadFormat, PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
				ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
				CorrelationData: pk.Properties.CorrelationData, User: pk.Properties.User,
			},
		})
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

func TestStoreRoundTrip(t *testing.T) {
	full := retainedPacket("x/with/props", "payload")
	full.Properties = packets.Properties{
		PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "application/json",
		ResponseTopic: "x/resp", CorrelationData: []byte{1, 2},
		User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k", Val: "w"}},
	}
	in := map[string]packets.Packet{
		"tesla/V/Soc":  retainedPacket("tesla/V/Soc", "80"),
		"x/with/props": full,
		"empty":        retainedPacket("empty", ""), // a deletion, not kept
	}
	msgs, err := decodeRetained(encodeForTest(t, in))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		want := in[m.TopicName]
		pk := m.ToPacket()
		if pk.TopicName != want.TopicName || !bytes.Equal(pk.Payload, want.Payload) || pk.Created != want.Created ||
			pk.FixedHeader != want.FixedHeader {
			t.Errorf("%s: got %+v, want %+v", m.TopicName, pk, want)
		}
		p, w := pk.Properties, want.Properties
		if p.PayloadFormat != w.PayloadFormat || p.PayloadFormatFlag != w.PayloadFormatFlag || p.ContentType != w.ContentType ||
			p.ResponseTopic != w.ResponseTopic || !bytes.Equal(p.CorrelationData, w.CorrelationData) || !slices.Equal(p.User, w.User) {
			t.Errorf("%s: properties %+v, want %+v", m.TopicName, p, w)
		}
	}
	// Damage anywhere is detected.
	good := encodeForTest(t, in)
	for _, cut := range []int{0, 5, len(retainedMagic), len(good) / 2, len(good) - 1} {
		if _, err := decodeRetained(good[:cut]); err == nil {
			t.Errorf("file cut at %d accepted", cut)
		}
	}
}

func FuzzDecodeRetained(f *testing.F) {
	f.Add(encodeForTest(f, map[string]packets.Packet{"a": retainedPacket("a", "1")}))
	f.Add([]byte(retainedMagic + "\x05\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msgs, err := decodeRetained(raw)
		if err != nil {
			return
		}
		// What decodes encodes to a file that decodes to the same.
		m := make(map[string]packets.Packet, len(msgs))
		for _, msg := range msgs {
			m[msg.TopicName] = msg.ToPacket()
		}
		again, err := decodeRetained(encodeForTest(t, m))
		if err != nil {
			t.Fatalf("re-encoded file: %v", err)
		}
		if len(again) != len(m) {
			t.Errorf("%d messages after a round trip, want %d", len(again), len(m))
		}
		for _, msg := range again {
			if !bytes.Equal(msg.Payload, m[msg.TopicName].Payload) {
				t.Errorf("%s: payload changed in a round trip", msg.TopicName)
			}
		}
	})
}
