package bridge

import (
	"math"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// payloadNone is the payload of a signal without a valid value: Home
// Assistant's MQTT entities read it as "unknown" (see the package
// documentation).
const payloadNone = "None"

// appendNative appends the payload of a signal topic: the value as plain
// text, or payloadNone when the car has no valid value.
func appendNative(dst []byte, v telemetry.Value) []byte {
	if !valid(v) {
		return append(dst, payloadNone...)
	}
	return v.AppendText(dst)
}

// sameText reports whether a value's payload is its JSON: valid numbers,
// booleans and composite values.
func sameText(v telemetry.Value) bool {
	switch v.Kind() {
	case telemetry.KindIntValue, telemetry.KindBoolValue, telemetry.KindDoorsValue, telemetry.KindTiresValue:
		return true
	case telemetry.KindFloatValue, telemetry.KindLocationValue:
		return valid(v)
	}
	return false
}

// appendStateValue appends a value of the state object: JSON, with null
// for a signal without a valid value.
func appendStateValue(dst []byte, v telemetry.Value) []byte {
	if !valid(v) {
		return append(dst, "null"...)
	}
	return v.AppendJSON(dst)
}

// valid reports whether v carries a usable value: not invalid, not empty,
// and not a float or location that JSON and Home Assistant cannot take.
func valid(v telemetry.Value) bool {
	switch v.Kind() {
	case telemetry.KindFloatValue:
		return finite(v.Float())
	case telemetry.KindLocationValue:
		lat, lon := v.Location()
		return finite(lat) && finite(lon)
	}
	return v.Valid()
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// appendNativeAlert appends
// {"started_at":…,"ended_at":…,"audiences":[…],"active":…}.
func appendNativeAlert(dst []byte, a *telemetry.Alert) []byte {
	dst = append(dst, `{"started_at":`...)
	dst = telemetry.AppendJSONTime(dst, a.StartedAt)
	dst = append(dst, `,"ended_at":`...)
	dst = telemetry.AppendJSONTime(dst, a.EndedAt)
	dst = append(dst, `,"audiences":[`...)
	for i, au := range a.Audiences {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, au.String()...)
		dst = append(dst, '"')
	}
	dst = append(dst, `],"active":`...)
	if a.Active() {
		dst = append(dst, "true}"...)
	} else {
		dst = append(dst, "false}"...)
	}
	return dst
}

// appendNativeError appends {"created_at":…,"body":…,"tags":{…}} with the
// tags sorted by key; keys is scratch space.
func appendNativeError(dst []byte, e *telemetry.VehicleError, keys *[]string) []byte {
	dst = append(dst, `{"created_at":`...)
	dst = telemetry.AppendJSONTime(dst, e.CreatedAt)
	dst = append(dst, `,"body":`...)
	dst = telemetry.AppendJSONString(dst, e.Body)
	dst = append(dst, `,"tags":{`...)
	for i, k := range sortedKeys(e.Tags, keys) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = telemetry.AppendJSONString(dst, k)
		dst = append(dst, ':')
		dst = telemetry.AppendJSONString(dst, e.Tags[k])
	}
	return append(dst, "}}"...)
}

// sortedKeys returns the keys of m in order, in the scratch slice keys.
func sortedKeys(m map[string]string, keys *[]string) []string {
	ks := (*keys)[:0]
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	*keys = ks
	return ks
}
