package embedded

import (
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// mochiModule is the broker library; parts of this package rely on the
// internals of the version below (see the package doc, "Pinned to mochi").
const (
	mochiModule  = "github.com/mochi-mqtt/server/v2"
	mochiVersion = "v2.7.9"
)

// TestPinnedMochi fails when go.mod moves mochi off the version this
// package was verified against, with, for each file that relies on mochi's
// internals, what to check again in the new version's source.
func TestPinnedMochi(t *testing.T) {
	for _, tc := range []struct {
		file     string
		reverify []string
	}{
		{"fanout.go", []string{
			"Server.Publish still costs what makes fanout worth it (a packet copy for the retained store, maps per topic lookup, copied subscription maps, a new buffer per encoded packet): compare BenchmarkEmbedded with fanout bypassed; if mochi's path is now as cheap, drop fanout",
			"mochi's flow control: a message held back for a receive maximum is still deleted from the in-flight store when sent (its PUBACK frees no quota), and Inflight.NextImmediate then GetAll still take the read lock twice; and a send quota of zero (Inflight.ResetSendQuota(0) in OnSessionEstablish and OnSessionEstablished) still makes mochi neither hold messages back nor look for held-back ones. If the bug is fixed, sender.mustWait/wait/release may go",
			"OnSessionEstablished still runs after a resumed session's in-flight store is taken over and before the client's first packet is read",
			"Topics.Subscribers still returns Subscriptions (merged per client: highest QoS, RetainAsPublished, Identifiers), Shared and InlineSubscriptions as makeRoute reads them",
			"TopicsIndex.RetainMessage (returns 1, -1 or 0), Topics.Retained.Add, GetAll (a copy) and Len, and TopicsIndex.Messages still reading the tree without its lock (why retainedTopics uses Retained.GetAll)",
			"the in-flight store: Client.NextPacketID, State.Inflight.Set/Get/Delete/Len; mochi still processes PUBACK, PUBREC and PUBCOMP of packets fanout put there, resends them when a session resumes and keeps them while it is offline; the Info counters Inflight, InflightDropped, MessagesDropped, Retained, BytesSent, PacketsSent and MessagesSent mean what fanout adds to them",
			"hooks: OnSubscribe may still set RetainHandling to 2 to keep mochi from sending retained messages, and an empty filter it sets is still refused as invalid without touching the index (max_subscriptions); OnSubscribed still runs once the subscriptions are in the index and before SUBACK, with the very reason codes SUBACK then carries (it sets 0x97 there), OnQosComplete after an acknowledgement, OnDisconnect after the client is closed; a session's Clean, Props.SessionExpiryInterval and ProtocolVersion still decide what mochi keeps for an offline client (sessionEnds)",
			"writes: mochi still writes each of its packets to Client.Net.Conn with one Write call, so that sender.run's writes go in between whole; PublishEncode still encodes as internal/mqttwire does (TestAppendPublish) and WritePacket still counts message expiry down",
		}},
		{"store.go", []string{
			"mochi still loads retained messages only through the StoredRetainedMessages hook (which store does not provide: it fills Topics.RetainMessage itself before Serve, with payloads sharing the file's memory, which mochi never writes), and calls OnRetainMessage (r is 1, -1 or 0) and OnRetainedExpired as store expects",
			"packets.Packet and packets.Properties have no new field that a retained message carries and the file format leaves out (encodeRetained, decodeRetainedFunc)",
			"Topics.Retained.GetAll still returns a copy that save may read without mochi's lock",
		}},
		{"sys.go", []string{
			"processPublish still drops a client's publish on a $SYS topic (IsValidFilter) without an answer, OnPacketRead still runs before that check and may rename the topic, and a publish the ACL refuses still gets a PUBACK or PUBREC with 0x87 from an MQTT 5 client",
		}},
		{"owned.go", []string{
			"OnPublish still sees a client's whole packet after the ACL check, stops at the first hook error, answers an MQTT 5 QoS 1 or 2 publish refused with packets.ErrNotAuthorized with that reason code, and drops one refused with ErrRejectPacket without an answer",
		}},
		{"retainquota.go", []string{
			"OnPublish still runs after the ACL check and before the retained message is kept; a packets.Code error still answers an MQTT 5 QoS 1 or 2 publish with that reason code and drops it, and a packet returned with Retain cleared is delivered but not kept",
		}},
		{"sweep.go", []string{
			"Server still has the field loop *loop with retainedExpiry *time.Ticker, whose only work is clearExpiredRetainedMessages (a copy of every retained message under the index's lock, once a second); if mochi makes the sweep cheap or optional, use that instead",
		}},
		{"deadline.go", []string{
			"mochi still sets no deadline on an accepted connection before its CONNECT, and still replaces the deadline with one from the client's keepalive once CONNECT is read (else connectDeadline would cut clients off after defaultConnectTimeout)",
			"listeners.NewNet still serves the net.Listener it is given, so that the deadline and TLS wrapping apply",
		}},
		{"broker.go", []string{
			"Clients.GetByListener still takes its read lock twice (why safeClose disconnects a listener's clients itself); Listener.Close still calls its CloseFn with the listener's id",
			"Server.DisconnectClient still sends DISCONNECT to MQTT 3 clients too (why safeClose only stops those), and Client.Stop still closes the connection without writing",
			"Capabilities.MaximumMessageExpiryInterval 0 still keeps retained messages for ever, and MaximumInflight and MaximumClientWritesPending still bound a subscriber's queue",
		}},
		{"auth.go", []string{
			"an OnConnect hook that sends its own CONNACK (Server.SendConnack) and returns an error still ends the connection without a second CONNACK; mochi still does not check a will topic against the ACL (if it does now, the will check may go)",
		}},
		{"websocket.go", []string{
			"mochi still reads a connection from one goroutine, serialises its writes and sets deadlines from the reading goroutine (wsConn's wmu), and still waits for its clients after closing the listeners (wsListener.Close ends them first)",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			testenv.RequireModule(t, mochiModule, mochiVersion, tc.reverify...)
		})
	}
}
