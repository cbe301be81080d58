package telemetry

import (
	"strconv"
	"strings"
)

// Normalize returns v as the catalog says field f should be typed. Older
// firmware sends signals numbered below 179 as strings ("79.147", "true",
// "D", "(37.412374 N, 122.145867 W)"); Normalize parses those by the field's
// kind. A string that does not parse as the kind demands stays a string, so
// nothing the car sent is lost. Values of fields the catalog does not know,
// and values already typed, are returned unchanged.
func Normalize(f Field, v Value) Value {
	if v.kind != KindStringValue {
		return v
	}
	info, ok := Lookup(f)
	if !ok {
		return v
	}
	n := normalize(info, v.s)
	if n.kind == KindStringValue {
		return v
	}
	n.flags |= fromString
	if n.kind != KindEnumValue {
		n.s = v.s
	} else if n.s != strings.TrimSpace(v.s) {
		n.flags |= rawShort
	}
	return n
}

func normalize(info FieldInfo, s string) Value {
	switch info.Kind {
	case KindDouble:
		if x, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return FloatValue(x)
		}
	case KindInt, KindLong:
		t := strings.TrimSpace(s)
		if x, err := strconv.ParseInt(t, 10, 64); err == nil {
			return IntValue(x)
		}
		if x, err := strconv.ParseFloat(t, 64); err == nil {
			if x == float64(int64(x)) {
				return IntValue(int64(x))
			}
			return FloatValue(x)
		}
	case KindBool:
		switch strings.TrimSpace(s) {
		case "true", "True", "TRUE", "1":
			return BoolValue(true)
		case "false", "False", "FALSE", "0":
			return BoolValue(false)
		}
	case KindEnum:
		if ev, ok := info.Enum.ByName(strings.TrimSpace(s)); ok {
			return EnumOf(info.Enum, ev)
		}
	case KindLocation:
		if lat, lon, ok := ParseLocation(s); ok {
			return LocationValue(lat, lon)
		}
	}
	return Value{kind: KindStringValue}
}

// ParseLocation parses the location string older firmware sends, such as
// "(37.412374 N, 122.145867 W)", into signed degrees. Plain "lat, lon" with
// signed numbers is accepted too.
func ParseLocation(s string) (latitude, longitude float64, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "(")
	s = strings.TrimSuffix(s, ")")
	a, b, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	latitude, ok = parseCoordinate(a, 'N', 'S', 90)
	if !ok {
		return 0, 0, false
	}
	longitude, ok = parseCoordinate(b, 'E', 'W', 180)
	if !ok {
		return 0, 0, false
	}
	return latitude, longitude, true
}

func parseCoordinate(s string, pos, neg byte, limit float64) (float64, bool) {
	s = strings.TrimSpace(s)
	sign := 1.0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case pos:
			s = strings.TrimSpace(s[:n-1])
		case neg:
			s = strings.TrimSpace(s[:n-1])
			sign = -1
		}
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	x *= sign
	if !(x >= -limit && x <= limit) { // also refuses NaN
		return 0, false
	}
	return x, true
}
