package embedded

import (
	"slices"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ownedTopics are topics outside the protected prefixes whose contents only
// the bridge writes, each kind recognised by a function: Home Assistant's
// discovery configs of the bridge's cars, for example, among the configs
// of other devices that everyone may write. A client may still remove
// such a message (an empty payload): Home Assistant does that when its
// user deletes the device, and so does `fleet2mqtt discovery remove`.
// It is safe for concurrent use.
type ownedTopics struct {
	match atomic.Pointer[[]func(topic string) bool]
}

// add reserves the topics for which match reports true.
func (o *ownedTopics) add(match func(topic string) bool) {
	for {
		old := o.match.Load()
		var list []func(string) bool
		if old != nil {
			list = slices.Clone(*old)
		}
		list = append(list, match)
		if o.match.CompareAndSwap(old, &list) {
			return
		}
	}
}

// owns reports whether only the bridge may write topic.
func (o *ownedTopics) owns(topic string) bool {
	if list := o.match.Load(); list != nil {
		for _, m := range *list {
			if m(topic) {
				return true
			}
		}
	}
	return false
}

// ProtectTopics reserves for the bridge the topics for which match reports
// true, such as the Home Assistant discovery configs of its cars: from
// then on clients may only remove their messages (publish an empty
// payload), not write any, nor leave a last will there. A refused publish
// is answered as the vehicle topics' are (0x87, not authorized). match
// must be fast and safe for concurrent use; call ProtectTopics before
// Start to leave no gap.
func (b *Broker) ProtectTopics(match func(topic string) bool) { b.guard.owned.add(match) }

// ownedGuard refuses a client's publish with a payload on an owned topic.
// The ACL check (guard.OnACLCheck) does not see payloads, so this runs
// where mochi hands over the whole packet.
type ownedGuard struct {
	mqtt.HookBase
	guard *guard
}

func (ownedGuard) ID() string { return "fleet2mqtt-owned-topics" }

func (ownedGuard) Provides(b byte) bool { return b == mqtt.OnPublish }

func (o ownedGuard) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || len(pk.Payload) == 0 || !o.guard.owned.owns(pk.TopicName) {
		return pk, nil
	}
	o.guard.log.Debug("refused MQTT publish on a topic the bridge owns", "client", cl.ID, "remote", cl.Net.Remote, "topic", pk.TopicName)
	switch {
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket // dropped, as the ACL drops QoS 0
	case cl.Properties.ProtocolVersion == 5:
		return pk, packets.ErrNotAuthorized // answered with 0x87
	default: // MQTT 3 has no reason codes: disconnected, as the ACL does
		_ = o.guard.server.DisconnectClient(cl, packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
}

// bridgesOwn reports whether topic's retained message is the bridge's:
// under a protected prefix, or an owned topic. The store keeps those in
// the bridge's file, and the clients' retained quota leaves them out.
func (g *guard) bridgesOwn(topic string) bool {
	return g.bridgeOnly(topic) || g.owned.owns(topic)
}
