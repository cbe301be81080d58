// Package pubsub holds what the bridge and the brokers it publishes
// through agree on: a Message, and the Publisher and Subscriber interfaces
// that the embedded broker (bridge/embedded) and the external broker client
// (bridge/external) implement. It imports nothing of fleet2mqtt, so that the
// brokers need not import the bridge, nor the bridge the brokers.
package pubsub

import "context"

// Message is one MQTT message the bridge publishes.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Publisher delivers messages to an MQTT broker. The embedded broker and the
// external broker client implement it; tests use a recorder.
type Publisher interface {
	// Publish returns nil once the broker has accepted every message in
	// msgs: handed to the embedded broker, or acknowledged by an external
	// broker (PUBACK at QoS 1, written to the connection at QoS 0). Only
	// then may the vehicle's frame be acknowledged. Publish must not keep
	// msgs or their payloads after it returns. It returns an error when ctx
	// ends or the messages cannot be delivered; the caller then does not
	// acknowledge, and the vehicle sends the record again.
	Publish(ctx context.Context, msgs []Message) error
}

// Subscriber lets the bridge listen to topics on the same broker, such as
// Home Assistant's birth message on homeassistant/status.
type Subscriber interface {
	// Subscribe calls handle for every message on topic (a filter that may
	// hold wildcards) until ctx ends. Handlers must not block for long.
	Subscribe(ctx context.Context, topic string, handle func(topic string, payload []byte)) error
}
