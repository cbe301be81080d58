package external

import (
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// pahoModule is the MQTT client library; parts of this package rely on the
// internals of the version below (see the package doc, "Pinned to paho").
const (
	pahoModule  = "github.com/eclipse/paho.golang"
	pahoVersion = "v0.23.0"
)

// TestPinnedPaho fails when go.mod moves paho off the version this package
// was verified against, with, for each file that relies on paho's
// internals, what to check again in the new version's source.
func TestPinnedPaho(t *testing.T) {
	for _, tc := range []struct {
		file     string
		reverify []string
	}{
		{"conn.go", []string{
			"paho still writes every packet inside Lock and Unlock when the connection implements sync.Locker (packets.ControlPacket.WriteTo), as one or more Write calls, so that conn may buffer Writes and decide in Unlock when to flush; a packet written without the lock would interleave with session's PUBLISH packets",
			"paho still reads the connection from one goroutine only, reading each packet's fixed header byte by byte (packets.ReadPacket), so that conn.Read may hand it exactly one packet's bytes at a time and take PUBACKs out of the stream before paho sees them",
			"paho still needs no PUBACK it did not ask for: every QoS 1 PUBLISH on the connection is session's, not paho's (the bridge never calls paho's Publish)",
			"autopaho still dials through ClientConfig.AttemptConnection and uses the net.Conn it returns as is, and still closes it (conn.Close must not wait for a writer) when the connection drops",
		}},
		{"session.go", []string{
			"session still satisfies paho's session.SessionManager with the same meaning of each method: ConAckReceived when the CONNACK arrives, with the connection as writer (session resends there, before new messages); ConnectionLost; AddToSession for SUBSCRIBE and UNSUBSCRIBE, answered on resp; PacketReceived for acknowledgements and incoming PUBLISH, passed on pubs; Ack after the handlers ran",
			"autopaho's ConnectionManager still offers no publish that both batches and reports delivery (Publish blocks a round trip per message, PublishViaQueue reports nothing); if it now does, compare it with BenchmarkPublish before keeping session's own publish path",
		}},
		{"client.go", []string{
			"autopaho still sends DISCONNECT as soon as the context of NewConnection ends (why run gives it a context of its own to publish offline first), and ClientConfig's ConnectPacketBuilder, WillMessage, CleanStartOnInitialConnection and SessionExpiryInterval still mean what New sets them for",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			testenv.RequireModule(t, pahoModule, pahoVersion, tc.reverify...)
		})
	}
}
