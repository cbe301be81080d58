package bridge

import (
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// batch collects the messages of one record. Every payload is appended to
// one buffer; the messages get their payload slices only when the batch is
// sealed, because appending may move the buffer.
type batch struct {
	buf   []byte
	msgs  []pubsub.Message
	spans []span
	// Scratch space for the record at hand, kept to avoid allocations.
	slots []int32  // slot index of each datum, -1 for none
	order []int32  // alert indexes grouped by name
	group []int32  // index of the first alert with the same name
	keys  []string // sorted error tag keys
}

// span is where a payload lies in batch.buf.
type span struct{ start, end int }

// maxPooledBuffer is the largest buffer a batch keeps when it goes back to
// the pool; a record with huge strings should not pin its memory forever.
const maxPooledBuffer = 256 << 10

var batchPool = sync.Pool{New: func() any { return new(batch) }}

func getBatch() *batch { return batchPool.Get().(*batch) }

func putBatch(b *batch) {
	if cap(b.buf) > maxPooledBuffer {
		return
	}
	b.buf = b.buf[:0]
	clear(b.msgs) // drop references to topics and payloads
	b.msgs = b.msgs[:0]
	b.spans = b.spans[:0]
	clear(b.keys)
	b.keys = b.keys[:0]
	batchPool.Put(b)
}

// begin starts a message; its payload is what is appended to b.buf until
// the next begin or seal.
func (b *batch) begin(topic string, qos byte, retain bool) {
	if n := len(b.spans); n > 0 {
		b.spans[n-1].end = len(b.buf)
	}
	b.msgs = append(b.msgs, pubsub.Message{Topic: topic, QoS: qos, Retain: retain})
	b.spans = append(b.spans, span{start: len(b.buf)})
}

// seal ends the last message and returns the messages with their payloads.
// Each payload's capacity ends where it does, so that nobody can append
// into its neighbour.
func (b *batch) seal() []pubsub.Message {
	if n := len(b.spans); n > 0 {
		b.spans[n-1].end = len(b.buf)
	}
	for i, s := range b.spans {
		b.msgs[i].Payload = b.buf[s.start:s.end:s.end]
	}
	return b.msgs
}
