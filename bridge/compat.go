package bridge

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// This file reproduces, byte for byte, the MQTT payloads of Tesla's
// reference server (fleet-telemetry's MQTT datastore, which marshals Go
// values with encoding/json after its own record transforms).

// appendCompatValue appends the reference server's JSON for a signal value.
// transformLocation is set for the record's first Location datum, the only
// one whose legacy string the reference turns into an object.
func appendCompatValue(dst []byte, v telemetry.Value, transformLocation bool) []byte {
	if raw, ok := v.Raw(); ok {
		// The reference keeps what older firmware sent as a string.
		return appendCompatString(dst, raw, transformLocation)
	}
	switch v.Kind() {
	case telemetry.KindNone:
		return append(dst, "{}"...)
	case telemetry.KindInvalid:
		return append(dst, "null"...)
	case telemetry.KindStringValue:
		return appendCompatString(dst, v.Str(), transformLocation)
	case telemetry.KindFloatValue:
		return appendCompatFloat(dst, v)
	case telemetry.KindEnumValue:
		return appendCompatEnum(dst, v)
	case telemetry.KindLocationValue:
		lat, lon := v.Location()
		return appendCompatLocation(dst, lat, lon)
	case telemetry.KindTiresValue:
		return appendCompatTires(dst, v.Tires())
	}
	// Ints, booleans, doors (all six keys, already in sorted order) and
	// times of day ("HH:MM:SS") read the same in both layouts.
	return v.AppendJSON(dst)
}

// appendCompatString appends a string value after the reference's record
// transforms: the legacy location string of the first Location datum
// becomes an object, a number in scientific notation is rewritten with
// five decimals.
func appendCompatString(dst []byte, s string, transformLocation bool) []byte {
	if transformLocation && s != "" {
		if lat, lon, ok := referenceLocation(s); ok {
			return appendCompatLocation(dst, lat, lon)
		}
	}
	if scientific(s) {
		if f, err := strconv.ParseFloat(s, 32); err == nil {
			dst = append(dst, '"')
			dst = strconv.AppendFloat(dst, f, 'f', 5, 64)
			return append(dst, '"')
		}
	}
	return appendGoJSONString(dst, s)
}

// referenceLocation parses a location string exactly as the reference
// does, with fmt.Sscanf and the same format, so that what it accepts (and
// refuses) stays identical. Only legacy firmware sends such strings.
func referenceLocation(s string) (lat, lon float64, ok bool) {
	var latQ, lonQ string
	n, err := fmt.Sscanf(s, "(%f %1s, %f %1s)", &lat, &latQ, &lon, &lonQ)
	if err != nil || n != 4 || !strings.Contains("NS", latQ) || !strings.Contains("EW", lonQ) {
		return 0, 0, false
	}
	if latQ == "S" {
		lat = -lat
	}
	if lonQ == "W" {
		lon = -lon
	}
	return lat, lon, true
}

// scientific reports whether s matches the reference's pattern for a float
// in scientific notation, ^[+-]?(\d*\.\d+|\d+\.\d*)([eE][+-]?\d+)$: a
// mantissa with a decimal point and at least one digit, and an exponent.
func scientific(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	whole := digits()
	if i >= len(s) || s[i] != '.' {
		return false
	}
	i++
	if whole+digits() == 0 {
		return false
	}
	if i >= len(s) || (s[i] != 'e' && s[i] != 'E') {
		return false
	}
	i++
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	return digits() > 0 && i == len(s)
}

// appendCompatLocation appends {"latitude":…,"longitude":…} (a Go map of
// float64, marshalled with sorted keys).
func appendCompatLocation(dst []byte, lat, lon float64) []byte {
	dst = append(dst, `{"latitude":`...)
	dst = appendGoJSONFloat(dst, lat, 64)
	dst = append(dst, `,"longitude":`...)
	dst = appendGoJSONFloat(dst, lon, 64)
	return append(dst, '}')
}

// appendCompatFloat appends a float as encoding/json writes the float32 or
// float64 the car sent.
func appendCompatFloat(dst []byte, v telemetry.Value) []byte {
	f := v.Float()
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return appendGoJSONFloat(dst, f, 64)
	}
	// Value.AppendJSON writes the shortest text for the precision the
	// float arrived with; that text equals encoding/json's except where
	// encoding/json switches to an exponent. Reading it back tells the
	// precision: a float32 printed as float32 does not read back as the
	// same float64 unless both print the same.
	start := len(dst)
	dst = v.AppendJSON(dst)
	if abs := math.Abs(f); abs >= 2e-6 && abs < 5e20 {
		return dst
	}
	bits := 64
	if g, err := strconv.ParseFloat(string(dst[start:]), 64); err != nil || g != f {
		bits = 32
	}
	return appendGoJSONFloat(dst[:start], f, bits)
}

// appendGoJSONFloat appends f as encoding/json does for a float of the
// given bit size: shortest representation, an exponent below 1e-6 and from
// 1e21 on, -0 for negative zero. encoding/json refuses NaN and infinities
// (the reference then fails the record); the bridge writes null.
func appendGoJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Like encoding/json, write e-7 rather than e-07.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// stringEnums are the value enums the reference converts with String(),
// which gives an unknown number as a string; it marshals the others by
// reflection, which gives an unknown number as a number.
var stringEnums = map[string]bool{
	"ShiftState": true, "LaneAssistLevel": true, "ScheduledChargingModeValue": true,
	"SentryModeState": true, "SpeedAssistLevel": true, "BMSStateValue": true,
	"BuckleStatus": true, "CarTypeValue": true, "ChargePortValue": true,
	"ChargePortLatchValue": true, "DriveInverterState": true, "HvilStatus": true,
	"WindowState": true, "SeatFoldPosition": true, "TractorAirStatus": true,
	"FollowDistance": true, "ForwardCollisionSensitivity": true,
	"GuestModeMobileAccess": true, "TrailerAirStatus": true,
	"DetailedChargeStateValue": true, "SunroofInstalledState": true,
	"TurnSignalState": true, "MediaStatus": true,
}

// appendCompatEnum appends an enum by its full protocol name. telemetry
// names a number its enum does not know "<Enum>(<n>)"; the reference
// writes the number, quoted or not depending on the enum.
func appendCompatEnum(dst []byte, v telemetry.Value) []byte {
	name := v.EnumName()
	if open := strings.LastIndexByte(name, '('); open > 0 && strings.HasSuffix(name, ")") {
		if stringEnums[name[:open]] {
			dst = append(dst, '"')
			dst = strconv.AppendInt(dst, int64(v.EnumNumber()), 10)
			return append(dst, '"')
		}
		return strconv.AppendInt(dst, int64(v.EnumNumber()), 10)
	}
	return appendGoJSONString(dst, name)
}

// sortedTires are the tire positions in the order of their names, the
// order encoding/json writes map keys in.
var sortedTires = func() []int {
	idx := make([]int, len(telemetry.TireNames))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(telemetry.TireNames[a], telemetry.TireNames[b]) })
	return idx
}()

// appendCompatTires appends the positions that are set, as the reference
// marshals a protobuf message by reflection: only fields that are set.
func appendCompatTires(dst []byte, t telemetry.Tires) []byte {
	dst = append(dst, '{')
	n := 0
	for _, i := range sortedTires {
		if t&(1<<i) == 0 {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, '"')
		dst = append(dst, telemetry.TireNames[i]...)
		dst = append(dst, `":true`...)
	}
	return append(dst, '}')
}

// appendCompatAlert appends {"Audiences":[…],"EndedAt":…,"StartedAt":…}
// with absent times left out and no audiences as null.
func appendCompatAlert(dst []byte, a *telemetry.Alert) []byte {
	dst = append(dst, `{"Audiences":`...)
	if len(a.Audiences) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, au := range a.Audiences {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, au.String()...)
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	}
	if !a.EndedAt.IsZero() {
		dst = append(dst, `,"EndedAt":`...)
		dst = appendCompatTime(dst, a.EndedAt)
	}
	if !a.StartedAt.IsZero() {
		dst = append(dst, `,"StartedAt":`...)
		dst = appendCompatTime(dst, a.StartedAt)
	}
	return append(dst, '}')
}

// appendCompatError appends {"Body":…,"CreatedAt":…,"Tags":…}: no tags
// marshal as null, an absent time is left out.
func appendCompatError(dst []byte, e *telemetry.VehicleError, keys *[]string) []byte {
	dst = append(dst, `{"Body":`...)
	dst = appendGoJSONString(dst, e.Body)
	if !e.CreatedAt.IsZero() {
		dst = append(dst, `,"CreatedAt":`...)
		dst = appendCompatTime(dst, e.CreatedAt)
	}
	dst = append(dst, `,"Tags":`...)
	if len(e.Tags) == 0 {
		return append(dst, "null}"...)
	}
	dst = append(dst, '{')
	for i, k := range sortedKeys(e.Tags, keys) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendGoJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendGoJSONString(dst, e.Tags[k])
	}
	return append(dst, "}}"...)
}

// appendCompatConnectivity appends
// {"ConnectionId":…,"CreatedAt":…,"Status":…}; an absent time reads as the
// Unix epoch, as the reference converts a missing timestamp.
func appendCompatConnectivity(dst []byte, c *telemetry.Connectivity) []byte {
	dst = append(dst, `{"ConnectionId":`...)
	dst = appendGoJSONString(dst, c.ConnectionID)
	dst = append(dst, `,"CreatedAt":`...)
	t := c.CreatedAt
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	dst = appendCompatTime(dst, t)
	dst = append(dst, `,"Status":"`...)
	dst = append(dst, c.Status.String()...)
	return append(dst, `"}`...)
}

// appendCompatTime appends t as the reference formats timestamps: RFC 3339
// in UTC, whole seconds.
func appendCompatTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339)
	return append(dst, '"')
}

// appendGoJSONString appends s as encoding/json marshals a string: HTML
// characters and the line and paragraph separators escaped, invalid UTF-8
// replaced by \ufffd.
func appendGoJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
