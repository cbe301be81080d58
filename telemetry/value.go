package telemetry

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValueKind tells which member of a Value is set.
type ValueKind uint8

// Value kinds. The zero Value has kind KindNone.
const (
	// KindNone is a value the car sent with no member set: it carries nothing.
	KindNone ValueKind = iota
	// KindInvalid means the car has no valid value for the signal right now.
	KindInvalid
	KindStringValue
	KindIntValue
	KindFloatValue
	KindBoolValue
	KindEnumValue
	KindLocationValue
	KindDoorsValue
	KindTiresValue
	KindTimeValue
)

var valueKindNames = [...]string{
	KindNone: "none", KindInvalid: "invalid", KindStringValue: "string", KindIntValue: "int",
	KindFloatValue: "float", KindBoolValue: "bool", KindEnumValue: "enum",
	KindLocationValue: "location", KindDoorsValue: "doors", KindTiresValue: "tires", KindTimeValue: "time",
}

func (k ValueKind) String() string {
	if int(k) < len(valueKindNames) {
		return valueKindNames[k]
	}
	return "ValueKind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one typed signal value, a small struct passed by value; strings
// it holds are never modified. Compare values with Equal.
type Value struct {
	kind ValueKind
	// bits is the precision a float arrived with (32 or 64), so that it
	// prints as the car meant it: float32 65.1 prints as 65.1, not 65.09999847.
	bits uint8
	// short is the length of the enum prefix to drop for the short name.
	short uint8
	// flags records how the value arrived (see Raw).
	flags uint8
	i     int64   // int, bool (0/1), enum number, door/tire bits, time (h*3600+m*60+s)
	f     float64 // float, latitude
	g     float64 // longitude
	s     string  // string, enum full name
}

// Constructors for each kind of value.

// StringValue returns a string value.
func StringValue(s string) Value { return Value{kind: KindStringValue, s: s} }

// IntValue returns an integer value.
func IntValue(i int64) Value { return Value{kind: KindIntValue, i: i} }

// FloatValue returns a float value of double precision.
func FloatValue(f float64) Value { return Value{kind: KindFloatValue, f: f, bits: 64} }

// Float32Value returns a float value that was sent with single precision.
func Float32Value(f float32) Value { return Value{kind: KindFloatValue, f: float64(f), bits: 32} }

// BoolValue returns a boolean value.
func BoolValue(b bool) Value {
	v := Value{kind: KindBoolValue}
	if b {
		v.i = 1
	}
	return v
}

// EnumOf returns the enum value ev of type e.
func EnumOf(e *EnumType, ev EnumValue) Value {
	return Value{kind: KindEnumValue, i: int64(ev.Number), s: ev.Name, short: uint8(len(e.Prefix))}
}

// EnumNumber returns the value of enum e with number n. A number the enum
// does not know (newer firmware) keeps its number and gets the name
// "<Enum>(<n>)".
func EnumNumber(e *EnumType, n int32) Value {
	if ev, ok := e.ByNumber(n); ok {
		return EnumOf(e, ev)
	}
	return Value{kind: KindEnumValue, i: int64(n), s: e.Name + "(" + strconv.Itoa(int(n)) + ")"}
}

// LocationValue returns a position in degrees.
func LocationValue(latitude, longitude float64) Value {
	return Value{kind: KindLocationValue, f: latitude, g: longitude}
}

// DoorsValue returns the open/closed state of the doors.
func DoorsValue(d Doors) Value { return Value{kind: KindDoorsValue, i: int64(d)} }

// TiresValue returns a set of tire positions.
func TiresValue(t Tires) Value { return Value{kind: KindTiresValue, i: int64(t)} }

// TimeValue returns a time of day.
func TimeValue(hour, minute, second int32) Value {
	return Value{kind: KindTimeValue, i: int64(hour)*3600 + int64(minute)*60 + int64(second)}
}

// InvalidValue returns the value of a signal the car has no valid value for.
func InvalidValue() Value { return Value{kind: KindInvalid} }

const (
	// fromString marks a value parsed from a string the car sent; s keeps
	// that string unless the value is an enum.
	fromString uint8 = 1 << iota
	// rawShort marks an enum parsed from its short name rather than its
	// full name.
	rawShort
)

// Raw returns the string the car sent when the value was normalised from a
// string (older firmware), and false for values that arrived typed. Tools
// that reproduce Tesla's reference output need it.
func (v Value) Raw() (string, bool) {
	if v.flags&fromString == 0 {
		return "", false
	}
	if v.kind == KindEnumValue {
		if v.flags&rawShort != 0 {
			return v.EnumShort(), true
		}
		return v.s, true
	}
	return v.s, true
}

// Equal reports whether v and w carry the same typed value, however each
// arrived (typed, or parsed from a string).
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case KindStringValue:
		return v.s == w.s
	case KindFloatValue:
		return v.f == w.f
	case KindEnumValue:
		return v.i == w.i && v.s == w.s
	case KindLocationValue:
		return v.f == w.f && v.g == w.g
	case KindNone, KindInvalid:
		return true
	}
	return v.i == w.i
}

// Kind tells which member is set.
func (v Value) Kind() ValueKind { return v.kind }

// Valid reports whether the value carries something usable.
func (v Value) Valid() bool { return v.kind != KindNone && v.kind != KindInvalid }

// Str returns a string value (and the empty string for other kinds).
func (v Value) Str() string {
	if v.kind == KindStringValue {
		return v.s
	}
	return ""
}

// Int returns an integer value; floats are truncated, booleans are 0 or 1.
func (v Value) Int() int64 {
	if v.kind == KindFloatValue {
		return int64(v.f)
	}
	return v.i
}

// Float returns a numeric value as float64.
func (v Value) Float() float64 {
	switch v.kind {
	case KindFloatValue:
		return v.f
	case KindIntValue:
		return float64(v.i)
	}
	return 0
}

// Bool returns a boolean value.
func (v Value) Bool() bool { return v.kind == KindBoolValue && v.i != 0 }

// EnumName returns the full protocol name of an enum value, such as
// "ShiftStateD".
func (v Value) EnumName() string {
	if v.kind == KindEnumValue {
		return v.s
	}
	return ""
}

// EnumShort returns the name of an enum value for people, such as "D". It
// equals the catalog's EnumValue.Short.
func (v Value) EnumShort() string {
	if v.kind == KindEnumValue {
		return enumShort(v.s[v.short:])
	}
	return ""
}

// enumShort is the rule the catalog generator applies too: Home Assistant
// reads the payload None as "no valid value", so a value named None (such
// as LaneAssistLevelNone) is published as "none".
func enumShort(rest string) string {
	if rest == "None" {
		return "none"
	}
	return rest
}

// EnumNumber returns the protocol number of an enum value.
func (v Value) EnumNumber() int32 { return int32(v.i) }

// Location returns latitude and longitude in degrees.
func (v Value) Location() (latitude, longitude float64) { return v.f, v.g }

// Doors returns the door state of a doors value.
func (v Value) Doors() Doors { return Doors(v.i) }

// Tires returns the tire positions of a tires value.
func (v Value) Tires() Tires { return Tires(v.i) }

// Time returns a time of day.
func (v Value) Time() (hour, minute, second int32) {
	t := v.i
	return int32(t / 3600), int32(t / 60 % 60), int32(t % 60)
}

// Doors is a set of open doors and trunks.
type Doors uint8

// Doors bits, in the protocol's field order.
const (
	DriverFront Doors = 1 << iota
	DriverRear
	PassengerFront
	PassengerRear
	TrunkFront
	TrunkRear
)

// DoorNames are the protocol names of the Doors bits, in bit order.
var DoorNames = [...]string{"DriverFront", "DriverRear", "PassengerFront", "PassengerRear", "TrunkFront", "TrunkRear"}

// Tires is a set of tire positions (for example those with a pressure warning).
type Tires uint16

// Tire position bits, in the protocol's field order.
const (
	FrontLeft Tires = 1 << iota
	FrontRight
	RearLeft
	RearRight
	SemiMiddleAxleLeft2
	SemiMiddleAxleRight2
	SemiRearAxleLeft
	SemiRearAxleRight
	SemiRearAxleLeft2
	SemiRearAxleRight2
)

// TireNames are the protocol names of the Tires bits, in bit order.
var TireNames = [...]string{
	"front_left", "front_right", "rear_left", "rear_right",
	"semi_middle_axle_left_2", "semi_middle_axle_right_2",
	"semi_rear_axle_left", "semi_rear_axle_right",
	"semi_rear_axle_left_2", "semi_rear_axle_right_2",
}

// AppendText appends the value as a plain MQTT payload: numbers in plain
// decimal (no exponent, no trailing zeros), booleans as true/false, enums by
// short name, strings as they are, composite values as compact JSON.
// Values that carry nothing (invalid or none) append nothing; callers decide
// how to represent them.
func (v Value) AppendText(dst []byte) []byte {
	switch v.kind {
	case KindStringValue:
		return append(dst, v.s...)
	case KindEnumValue:
		return append(dst, v.EnumShort()...)
	case KindTimeValue:
		return v.appendClock(dst)
	case KindInvalid, KindNone:
		return dst
	}
	return v.AppendJSON(dst)
}

// AppendJSON appends the value as JSON: numbers as JSON numbers, booleans,
// strings and enum short names as JSON strings, a location as
// {"latitude":…,"longitude":…}, doors and tires as an object of booleans, a
// time of day as "HH:MM:SS", invalid and none as null.
// Non-finite floats, which JSON cannot carry, become null.
func (v Value) AppendJSON(dst []byte) []byte {
	switch v.kind {
	case KindStringValue:
		return AppendJSONString(dst, v.s)
	case KindIntValue:
		return strconv.AppendInt(dst, v.i, 10)
	case KindFloatValue:
		return appendFloat(dst, v.f, int(v.bits))
	case KindBoolValue:
		return strconv.AppendBool(dst, v.i != 0)
	case KindEnumValue:
		return AppendJSONString(dst, v.EnumShort())
	case KindLocationValue:
		dst = append(dst, `{"latitude":`...)
		dst = appendFloat(dst, v.f, 64)
		dst = append(dst, `,"longitude":`...)
		dst = appendFloat(dst, v.g, 64)
		return append(dst, '}')
	case KindDoorsValue:
		return appendBits(dst, uint64(v.i), DoorNames[:])
	case KindTiresValue:
		return appendBits(dst, uint64(v.i), TireNames[:])
	case KindTimeValue:
		dst = append(dst, '"')
		dst = v.appendClock(dst)
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

// String returns the value as AppendText formats it, or "<invalid>" and
// "<none>" for values that carry nothing.
func (v Value) String() string {
	switch v.kind {
	case KindInvalid:
		return "<invalid>"
	case KindNone:
		return "<none>"
	}
	return string(v.AppendText(nil))
}

// appendClock appends a time of day as HH:MM:SS.
func (v Value) appendClock(dst []byte) []byte {
	h, m, s := v.Time()
	for i, n := range [3]int32{h, m, s} {
		if i > 0 {
			dst = append(dst, ':')
		}
		if n >= 0 && n < 10 {
			dst = append(dst, '0')
		}
		dst = strconv.AppendInt(dst, int64(n), 10)
	}
	return dst
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if bits != 32 {
		bits = 64
	}
	if f == 0 {
		return append(dst, '0') // also for -0
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits)
}

func appendBits(dst []byte, bits uint64, names []string) []byte {
	dst = append(dst, '{')
	for i, name := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
		dst = strconv.AppendBool(dst, bits&(1<<i) != 0)
	}
	return append(dst, '}')
}

// AppendJSONString appends s as a JSON string, escaping what JSON requires
// and replacing invalid UTF-8 with U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// AppendJSONTime appends t as a JSON string in RFC 3339 (UTC, with
// fractional seconds when there are any), or null for the zero time.
func AppendJSONTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// Detach returns v without references to the memory of the record it came
// from, for keeping beyond the record's life: a string is copied; a value
// parsed from text the car sent keeps its typed value only. Enums hold
// catalog names and the other kinds no strings, so they are returned as
// they are.
func (v Value) Detach() Value {
	switch v.Kind() {
	case KindStringValue:
		return StringValue(strings.Clone(v.Str()))
	case KindFloatValue, KindIntValue, KindBoolValue, KindLocationValue:
		if _, ok := v.Raw(); !ok {
			return v
		}
		switch v.Kind() {
		case KindFloatValue:
			return FloatValue(v.Float())
		case KindIntValue:
			return IntValue(v.Int())
		case KindBoolValue:
			return BoolValue(v.Bool())
		default:
			return LocationValue(v.Location())
		}
	}
	return v
}
