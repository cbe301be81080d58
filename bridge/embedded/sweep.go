package embedded

import (
	"errors"
	"reflect"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// stopRetainedSweep stops mochi's sweep of expired retained messages
// (Server.clearExpiredRetainedMessages, run once a second by its event
// loop). The sweep copies every retained message (800 bytes each) under
// the retained index's read lock, 10 to 50 ms for 4,000 to 12,000 topics
// on a busy machine, while every publisher that changes a retained value
// waits for the write lock: the record path stalled once a second, which
// made the broker's maximum acknowledgement latency 25 to 50 ms. The
// broker keeps retained messages for ever (MaximumMessageExpiryInterval
// 0) and the bridge's messages carry no expiry, so the sweep only ever
// removed client-published retained messages with an MQTT 5 message
// expiry; sendRetained skips those once expired instead, and they stay in
// memory until their topic is written again.
//
// mochi has no option for the sweep: its ticker is reached by reflection
// (mochi v2.7.9, see TestPinnedMochi).
func stopRetainedSweep(s *mqtt.Server) error {
	loop := reflect.ValueOf(s).Elem().FieldByName("loop")
	if loop.Kind() != reflect.Pointer || loop.IsNil() {
		return errors.New("mochi has no event loop where expected")
	}
	t := loop.Elem().FieldByName("retainedExpiry")
	if !t.IsValid() || t.Type() != reflect.TypeFor[*time.Ticker]() || t.IsNil() {
		return errors.New("mochi has no retained-expiry ticker where expected")
	}
	(*time.Ticker)(t.UnsafePointer()).Stop()
	return nil
}
