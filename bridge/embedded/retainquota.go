package embedded

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainQuotaLogInterval is how often, at most, a refused retained message
// is logged.
const retainQuotaLogInterval = time.Minute

// retainQuota bounds the retained messages MQTT clients keep on the
// broker, on the topics outside the bridge's own: at most maxCount
// messages and maxBytes bytes (topic and payload) in all, so that a client
// cannot fill memory and the data directory. A retained publish that would
// go beyond is refused: an MQTT 5 client publishing at QoS 1 or 2 gets
// reason code 0x97 (quota exceeded); other publishes are delivered to the
// current subscribers but not kept. Removing a retained message (an empty
// payload) and replacing one by a message no larger always pass.
type retainQuota struct {
	mqtt.HookBase
	maxCount int
	maxBytes int64
	ours     func(topic string) bool // the bridge's own topics: not counted
	log      *slog.Logger

	mu    sync.Mutex
	sizes map[string]int64 // bytes by client topic with a retained message
	bytes int64

	refused  atomic.Int64
	loggedAt atomic.Int64 // Unix nanoseconds of the last log line
}

func newRetainQuota(maxCount int, maxBytes int64, ours func(string) bool, log *slog.Logger) *retainQuota {
	return &retainQuota{maxCount: maxCount, maxBytes: maxBytes, ours: ours, log: log, sizes: make(map[string]int64)}
}

func (q *retainQuota) ID() string { return "fleet2mqtt-retain-quota" }

func (q *retainQuota) Provides(b byte) bool { return b == mqtt.OnPublish }

// counted reports whether topic's retained message counts against the
// quota.
func (q *retainQuota) counted(topic string) bool {
	return !strings.HasPrefix(topic, "$") && !q.ours(topic)
}

// loaded counts a retained message restored from disk at start. Messages
// kept before a smaller quota was configured stay; new ones are refused
// until clients remove enough.
func (q *retainQuota) loaded(pk packets.Packet) {
	if !q.counted(pk.TopicName) {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.set(pk.TopicName, int64(len(pk.TopicName)+len(pk.Payload)))
}

// set records topic's size (0 for none). q.mu is held.
func (q *retainQuota) set(topic string, size int64) {
	q.bytes += size - q.sizes[topic]
	if size == 0 {
		delete(q.sizes, topic)
	} else {
		q.sizes[topic] = size
	}
}

// OnPublish admits a client's retained publish when it fits the quota.
func (q *retainQuota) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || cl.Net.Inline || !q.counted(pk.TopicName) {
		return pk, nil
	}
	size := int64(0)
	if len(pk.Payload) > 0 {
		size = int64(len(pk.TopicName) + len(pk.Payload))
	}
	q.mu.Lock()
	old, had := q.sizes[pk.TopicName]
	count := len(q.sizes)
	if !had && size > 0 {
		count++
	}
	fits := size <= old || (count <= q.maxCount && q.bytes-old+size <= q.maxBytes)
	if fits {
		q.set(pk.TopicName, size)
	}
	q.mu.Unlock()
	if fits {
		return pk, nil
	}
	q.refused.Add(1)
	q.logRefusal(cl, pk)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrQuotaExceeded
	}
	pk.FixedHeader.Retain = false // delivered, not kept
	return pk, nil
}

// logRefusal logs a refused retained message, at most once per
// retainQuotaLogInterval.
func (q *retainQuota) logRefusal(cl *mqtt.Client, pk packets.Packet) {
	now := time.Now().UnixNano()
	last := q.loggedAt.Load()
	if last != 0 && now-last < int64(retainQuotaLogInterval) || !q.loggedAt.CompareAndSwap(last, now) {
		return
	}
	q.mu.Lock()
	count, bytes := len(q.sizes), q.bytes
	q.mu.Unlock()
	q.log.Warn("refused a retained MQTT message: the clients' retained messages are at their limit (mqtt.embedded.client_retained_messages, client_retained_bytes); logged once a minute",
		"client", cl.ID, "remote", cl.Net.Remote, "topic", pk.TopicName, "size", len(pk.Payload),
		"retained", count, "retained_bytes", bytes, "max_messages", q.maxCount, "max_bytes", q.maxBytes,
		"refused_total", q.refused.Load())
}

// retainLoaded keeps a retained message restored from disk.
func (b *Broker) retainLoaded(pk packets.Packet) int64 {
	b.quota.loaded(pk)
	return b.server.Topics.RetainMessage(pk)
}

// RetainedRefused counts the clients' retained messages refused by the
// quota since the broker started.
func (b *Broker) RetainedRefused() int64 { return b.quota.refused.Load() }
