package mqttwire

import (
	"bytes"
	"fmt"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"
)

// cases are PUBLISH packets of every shape the brokers write, with
// remaining lengths of one to three bytes.
func cases() []Publish {
	var out []Publish
	for _, topic := range []string{"a", "tesla/5YJ3E7EB2NF000001/Soc", "tesla/Ünïcode/ß"} {
		for _, version := range []byte{3, 4, 5} {
			out = append(out,
				Publish{Topic: topic, Version: version},
				Publish{Topic: topic, Version: version, QoS: 1, ID: 513, Retain: true},
				Publish{Topic: topic, Version: version, QoS: 1, ID: 65535, Dup: true},
				Publish{Topic: topic, Version: version, QoS: 2, ID: 1},
			)
		}
		out = append(out,
			Publish{Topic: topic, Version: 5, SubscriptionIDs: []int{1}},
			Publish{Topic: topic, Version: 5, QoS: 1, ID: 7, SubscriptionIDs: []int{1, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemaining}},
		)
	}
	return out
}

var payloads = [][]byte{nil, []byte("80"), bytes.Repeat([]byte("x"), 200), bytes.Repeat([]byte("y"), 200_000)}

func name(p Publish, payload []byte) string {
	return fmt.Sprintf("v%d/qos%d/retain=%t/dup=%t/ids=%d/topic=%d/payload=%d", p.Version, p.QoS, p.Retain, p.Dup, len(p.SubscriptionIDs), len(p.Topic), len(payload))
}

// TestAppendPublishMatchesMochi compares the encoder with mochi's, which
// the embedded broker's subscribers otherwise receive.
func TestAppendPublishMatchesMochi(t *testing.T) {
	for _, p := range cases() {
		for _, payload := range payloads {
			got := AppendPublish([]byte("prefix"), &p, payload)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatal("AppendPublish overwrote the buffer")
			}
			got = got[len("prefix"):]
			if len(got) != p.Size(len(payload)) {
				t.Errorf("%s: encoded %d bytes, Size says %d", name(p, payload), len(got), p.Size(len(payload)))
			}
			pk := mochi.Packet{
				FixedHeader:     mochi.FixedHeader{Type: mochi.Publish, Qos: p.QoS, Retain: p.Retain, Dup: p.Dup},
				TopicName:       p.Topic,
				PacketID:        p.ID,
				ProtocolVersion: p.Version,
				Payload:         payload,
			}
			pk.Properties.SubscriptionIdentifier = p.SubscriptionIDs
			var want bytes.Buffer
			if err := pk.PublishEncode(&want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%s:\n got %x\nwant %x", name(p, payload), got[:min(len(got), 64)], want.Bytes()[:min(want.Len(), 64)])
			}
		}
	}
}

// TestAppendPublishReadsInPaho decodes the MQTT 5 packets with paho's
// decoder, the one an external broker's clients are most alike.
func TestAppendPublishReadsInPaho(t *testing.T) {
	for _, p := range cases() {
		if p.Version != 5 {
			continue
		}
		for _, payload := range payloads {
			b := AppendPublish(nil, &p, payload)
			cp, err := paho.ReadPacket(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: paho cannot read the packet: %v", name(p, payload), err)
			}
			got, ok := cp.Content.(*paho.Publish)
			if !ok {
				t.Fatalf("%s: paho decoded %T, want PUBLISH", name(p, payload), cp.Content)
			}
			// paho keeps one subscription identifier of a packet: the last.
			var id *int
			if got.Properties != nil {
				id = got.Properties.SubscriptionIdentifier
			}
			idOK := id == nil && len(p.SubscriptionIDs) == 0 ||
				id != nil && len(p.SubscriptionIDs) > 0 && *id == p.SubscriptionIDs[len(p.SubscriptionIDs)-1]
			if got.Topic != p.Topic || !bytes.Equal(got.Payload, payload) || got.QoS != p.QoS || got.Retain != p.Retain ||
				got.Duplicate != p.Dup || (p.QoS > 0 && got.PacketID != p.ID) || !idOK {
				t.Errorf("%s: paho read topic %q, %d bytes, qos %d, retain %t, dup %t, id %d, subscription identifier ok %t",
					name(p, payload), got.Topic, len(got.Payload), got.QoS, got.Retain, got.Duplicate, got.PacketID, idOK)
			}
		}
	}
}

func TestVarint(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{MaxRemaining, []byte{0xff, 0xff, 0xff, 0x7f}},
	} {
		if got := AppendVarint([]byte{0xaa}, tc.n); !bytes.Equal(got, append([]byte{0xaa}, tc.want...)) {
			t.Errorf("AppendVarint(%d) = %x, want aa%x", tc.n, got, tc.want)
		}
		if got := VarintLen(tc.n); got != len(tc.want) {
			t.Errorf("VarintLen(%d) = %d, want %d", tc.n, got, len(tc.want))
		}
	}
}

func TestAppendPublishDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	payload := []byte("80.5")
	ids := []int{1, 300}
	for _, version := range []byte{4, 5} {
		allocs := testing.AllocsPerRun(100, func() {
			p := Publish{Topic: "tesla/5YJ3E7EB2NF000001/BatteryLevel", QoS: 1, Retain: true, ID: 42, Version: version, SubscriptionIDs: ids}
			buf = AppendPublish(buf[:0], &p, payload)
		})
		if allocs != 0 {
			t.Errorf("version %d: AppendPublish allocates %v times", version, allocs)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	buf := make([]byte, 0, 1024)
	topic := "tesla/5YJ3E7EB2NF000001/BatteryLevel"
	payload := []byte("80.5")
	b.ReportAllocs()
	for b.Loop() {
		p := Publish{Topic: topic, QoS: 1, Retain: true, ID: 42, Version: 5}
		buf = AppendPublish(buf[:0], &p, payload)
	}
}
