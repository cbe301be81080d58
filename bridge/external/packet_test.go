package external

import (
	"bytes"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestAppendPublish checks our encoder against paho's decoder.
func TestAppendPublish(t *testing.T) {
	long := strings.Repeat("x", 200_000) // a three-byte remaining length
	tests := []struct {
		name    string
		topic   string
		payload string
		qos     byte
		retain  bool
		dup     bool
		id      uint16
	}{
		{"qos0", "tesla/VIN/Soc", "80", 0, false, false, 0},
		{"qos1 retained", "tesla/VIN/Gear", "D", 1, true, false, 513},
		{"dup", "a", "", 1, false, true, 65535},
		{"two-byte length", "t", strings.Repeat("p", 200), 0, true, false, 0},
		{"three-byte length", "t/long", long, 1, false, false, 7},
		{"utf-8 topic", "tesla/Ünïcode/ß", "1", 1, false, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendPublish([]byte("prefix"), tt.topic, []byte(tt.payload), tt.qos, tt.retain, tt.dup, tt.id)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("appendPublish overwrote the buffer")
			}
			b = b[len("prefix"):]
			if got, want := len(b), publishSize(tt.topic, len(tt.payload), tt.qos); got != want {
				t.Errorf("encoded %d bytes, publishSize says %d", got, want)
			}
			cp, err := packets.ReadPacket(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("paho cannot read our packet: %v", err)
			}
			p, ok := cp.Content.(*packets.Publish)
			if !ok {
				t.Fatalf("decoded %T, want PUBLISH", cp.Content)
			}
			if p.Topic != tt.topic || string(p.Payload) != tt.payload || p.QoS != tt.qos ||
				p.Retain != tt.retain || p.Duplicate != tt.dup || (tt.qos > 0 && p.PacketID != tt.id) {
				t.Errorf("decoded topic %q payload %d bytes qos %d retain %v dup %v id %d",
					p.Topic, len(p.Payload), p.QoS, p.Retain, p.Duplicate, p.PacketID)
			}
		})
	}
}

func TestAppendPublishDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	payload := []byte("80.5")
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendPublish(buf[:0], "tesla/5YJ3E7EB2NF000001/BatteryLevel", payload, 1, true, false, 42)
	})
	if allocs != 0 {
		t.Errorf("appendPublish allocates %v times", allocs)
	}
}

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  bool
	}{
		{"tesla/VIN/Soc", true},
		{"/leading/slash", true},
		{"ünïcode/ß", true},
		{"", false},
		{"a/+/b", false},
		{"a/#", false},
		{"ü/#", false},
		{"nul\x00", false},
		{"bad\xff", false},
		{strings.Repeat("a", 65536), false},
	}
	for _, tt := range tests {
		if got := validTopic(tt.topic); got != tt.want {
			t.Errorf("validTopic(%.20q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"homeassistant/status", "homeassistant/status", true},
		{"homeassistant/status", "homeassistant/statusx", false},
		{"homeassistant/+", "homeassistant/status", true},
		{"homeassistant/+", "homeassistant/a/b", false},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"+/x", "/x", true},
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
	}
	for _, tt := range tests {
		if got := matchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for filter, want := range map[string]bool{
		"a/b": true, "a/+/c": true, "#": true, "a/#": true, "+": true,
		"": false, "a/#/b": false, "a+/b": false, "a/b#": false, "nul\x00": false,
	} {
		if got := validFilter(filter); got != want {
			t.Errorf("validFilter(%q) = %v, want %v", filter, got, want)
		}
	}
}
