// Package envelope reads and builds the FlatBuffers envelope that wraps every
// binary WebSocket frame of Tesla's vehicle telemetry protocol.
//
// A frame is a FlatBuffer with no file identifier and no size prefix whose
// root table is the Envelope (txid, topic, message_type, message,
// message_id); for message_type Stream the message union holds a Stream table
// (created_at, sender_id, payload, device_type, device_id,
// delivered_at_epoch_ms). Parse reads any valid layout through the vtables and
// treats every offset as hostile. The Append functions write the layouts that
// Tesla's reference server produces, byte for byte, without allocating when
// the destination has room.
package envelope

import (
	"errors"
	"strconv"
)

// MessageType is the Envelope's message_type: the tag of its message union.
type MessageType uint8

// Message types defined by the protocol.
const (
	// TypeNone means the union holds nothing.
	TypeNone MessageType = 0
	// TypeStream marks a record: the union holds a Stream table.
	TypeStream MessageType = 4
	// TypeStreamAck marks an acknowledgement: StreamAck has no fields.
	TypeStreamAck MessageType = 5
)

// String returns the protocol name of t, or its number when t is unknown.
func (t MessageType) String() string {
	switch t {
	case TypeNone:
		return "none"
	case TypeStream:
		return "stream"
	case TypeStreamAck:
		return "stream_ack"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// ErrorText is the payload of the error response the server sends for a frame
// it cannot use.
const ErrorText = "incorrect message format"

// Frame is a parsed envelope. Byte slices returned by Parse alias the input
// frame (their capacity is clipped to their length); they are valid as long as
// the frame's bytes are. An absent vector is nil, a present empty one is empty
// but not nil.
type Frame struct {
	// TxID is the transaction id, echoed in the server's response.
	TxID []byte
	// Topic names the payload's kind: V, alerts, errors, connectivity.
	Topic []byte
	// MessageID is the message id set by the sender.
	MessageID []byte
	// Type is the union tag telling what the message is.
	Type MessageType
	// Stream is the record; meaningful only when Type is TypeStream.
	Stream Stream
}

// Stream is the record carried by a Stream-typed envelope.
type Stream struct {
	// CreatedAt is the creation time in epoch seconds.
	CreatedAt uint32
	// SenderID is the deprecated sender, e.g. "vehicle_device.<VIN>".
	// It is claimed by the car: identity comes from the client certificate.
	SenderID []byte
	// Payload is the protobuf message, typed by the envelope's topic.
	Payload []byte
	// DeviceType is the claimed device type, e.g. "vehicle_device".
	DeviceType []byte
	// DeviceID is the claimed device id, e.g. the VIN.
	DeviceID []byte
	// DeliveredAtEpochMS is set by a server on receipt, not by the car.
	DeliveredAtEpochMS uint64
}

// Errors returned by Parse, wrapped with the place of the fault.
var (
	// ErrTruncated reports a structure or vector that runs past the end of
	// the frame, the usual result of a cut-off frame.
	ErrTruncated = errors.New("truncated frame")
	// ErrBadOffset reports an offset no valid buffer holds: zero, beyond
	// 2^31-1, or pointing before the start of the frame.
	ErrBadOffset = errors.New("bad offset")
	// ErrBadVTable reports a vtable too small to hold its own header.
	ErrBadVTable = errors.New("bad vtable")
	// ErrNoMessage reports a Stream-typed envelope without its message.
	ErrNoMessage = errors.New("missing message")
	// ErrUnknownType reports a message_type other than Stream or StreamAck.
	ErrUnknownType = errors.New("unknown message type")
)
