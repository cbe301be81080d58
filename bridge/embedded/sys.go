package embedded

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// refusedSysTopic stands in for a client's publish on a $SYS topic: a
// valid topic name that the guard refuses (it starts with '$').
const refusedSysTopic = "$fleet2mqtt/refused"

// sysRefusal answers a client's publish on the broker's $SYS topics.
// mochi v2.7.9 drops such a publish before its ACL check, without an
// answer, so a QoS 1 or 2 publisher waits for its acknowledgement forever.
// The hook renames the topic of such a publish, before mochi validates it,
// to one the guard refuses: the publisher then gets what any refused
// publish gets (an MQTT 5 client a PUBACK or PUBREC with reason code 0x87,
// not authorized; an MQTT 3 client is disconnected; QoS 0 is dropped).
type sysRefusal struct{ mqtt.HookBase }

func (sysRefusal) ID() string { return "fleet2mqtt-sys-refusal" }

func (sysRefusal) Provides(b byte) bool { return b == mqtt.OnPacketRead }

func (sysRefusal) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && !cl.Net.Inline && isSysTopic(pk.TopicName) {
		pk.TopicName = refusedSysTopic
	}
	return pk, nil
}

// isSysTopic reports whether topic is one of the broker's $SYS topics, as
// mochi recognises them (case-insensitive).
func isSysTopic(topic string) bool {
	return len(topic) >= len(mqtt.SysPrefix) && strings.EqualFold(topic[:len(mqtt.SysPrefix)], mqtt.SysPrefix)
}
