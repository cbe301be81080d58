package announce

import (
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TestRemovalRepeatedAtBirth: components removed at start (here the
// controls, with commands turned off) are removed again in the answer to
// Home Assistant's next birth message. With the embedded broker, Home
// Assistant reconnects only after fleet2mqtt's start-up announcement, and
// the retained config it then reads no longer names them: without the
// repeat their entities stayed.
func TestRemovalRepeatedAtBirth(t *testing.T) {
	e := newEnv(t)
	live := dial(t, e.broker.Addr("tcp"))
	live.subscribe(t, "homeassistant/#")
	withControls := discovery.DefaultConfig()
	withControls.Controls = discovery.Controls{Enabled: true, Security: true}
	a, stop := e.start(withControls)
	send(t, a, e.bridge, data(testVIN, datum(telemetry.FieldLocked, telemetry.BoolValue(true))))
	live.waitFor(t, -1, configTopic(testVIN), func(p string) bool { c, _ := components(t, p); return has(c, "control_lock") })
	stop()

	const bare = `"control_lock":{"p":"lock"}`
	live.mu.Lock()
	mark := len(live.msgs) - 1
	live.mu.Unlock()
	e.start(discovery.DefaultConfig())
	i, removal := live.waitFor(t, mark, configTopic(testVIN), anyPayload)
	if !strings.Contains(removal.payload, bare) {
		t.Fatalf("first config after the restart %s, want the lock removed", removal.payload)
	}
	i, _ = live.waitFor(t, i, configTopic(testVIN), func(p string) bool { return !strings.Contains(p, bare) })

	ha := dial(t, e.broker.Addr("tcp"))
	ha.publish(t, "homeassistant/status", "online", false)
	i, answer := live.waitFor(t, i, configTopic(testVIN), anyPayload)
	if !strings.Contains(answer.payload, bare) {
		t.Errorf("the answer to Home Assistant's birth %s, want the lock removed again", answer.payload)
	}
	i, m := live.waitFor(t, i, configTopic(testVIN), anyPayload)
	if comps, _ := components(t, m.payload); has(comps, "control_lock") || !has(comps, "Locked") {
		t.Errorf("components after the birth %v, want Locked without control_lock", keys(comps))
	}

	// Removed once with Home Assistant listening: the next birth gets the
	// config alone.
	ha.publish(t, "homeassistant/status", "online", false)
	_, next := live.waitFor(t, i, configTopic(testVIN), anyPayload)
	if strings.Contains(next.payload, bare) {
		t.Errorf("the answer to a second birth removes again: %s", next.payload)
	}
}
