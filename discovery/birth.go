package discovery

import (
	"bytes"
	"math/rand/v2"
	"time"
)

// Home Assistant announces itself on its status topic
// (Config.StatusTopicOrDefault, "homeassistant/status" by default): online
// when it starts (its birth message) and offline when it stops (its last
// will). On online it has lost whatever it knew of discovery that was not
// retained, and many installations publish the birth message before
// their own subscriptions settle. The rule:
//
//  1. Subscribe to the status topic when connected to the broker.
//  2. When OnStatus says online, wait RepublishDelay, so that Home
//     Assistant is subscribed to the discovery topics and a fleet of
//     replicas does not answer at the same instant.
//  3. Publish Messages for every car, then the current value of every
//     signal topic, the connected and active_alerts topics (retained
//     messages reach Home Assistant anyway; publishing them again covers
//     installations with retain turned off).
//
// A second online during the delay restarts it; offline needs no action.

// Delays before republishing after Home Assistant's birth message.
const (
	MinRepublishDelay = 1 * time.Second
	MaxRepublishDelay = 5 * time.Second
)

// OnStatus reports whether a payload on Home Assistant's status topic says
// that Home Assistant (re)started: exactly online, surrounding white space
// ignored.
func OnStatus(payload []byte) bool {
	return string(bytes.TrimSpace(payload)) == "online"
}

// RepublishDelay returns how long to wait after Home Assistant's birth
// message before announcing again: uniformly random in [1 s, 5 s). r is
// the source of randomness; nil uses the global one.
func RepublishDelay(r *rand.Rand) time.Duration {
	span := int64(MaxRepublishDelay - MinRepublishDelay)
	var n int64
	if r == nil {
		n = rand.Int64N(span)
	} else {
		n = r.Int64N(span)
	}
	return MinRepublishDelay + time.Duration(n)
}
