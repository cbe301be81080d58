package telemetry

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCatalog(t *testing.T) {
	if got := len(Catalog()); got != 260 {
		t.Fatalf("catalog has %d fields, want 260", got)
	}
	for i, info := range Catalog() {
		if int(info.Field) != i {
			t.Errorf("catalog[%d] is field %d", i, info.Field)
		}
		if f, ok := FieldByName(info.Name); !ok || f != info.Field {
			t.Errorf("FieldByName(%q) = %d, %v", info.Name, f, ok)
		}
		if (info.Kind == KindEnum) != (info.Enum != nil) {
			t.Errorf("%s: kind %s with enum %v", info.Name, info.Kind, info.Enum)
		}
		if info.Field.String() != info.Name {
			t.Errorf("Field(%d).String() = %q, want %q", i, info.Field.String(), info.Name)
		}
	}
	if FieldSoc.String() != "Soc" || FieldGear != 10 {
		t.Errorf("named constants: Soc=%v Gear=%d", FieldSoc, FieldGear)
	}
	if got := Field(300).String(); got != "Field(300)" {
		t.Errorf("unknown field prints %q", got)
	}
	if info, ok := Lookup(FieldSoc); !ok || info.Unit != "%" || info.DeviceClass != "battery" || info.Kind != KindDouble {
		t.Errorf("Lookup(Soc) = %+v", info)
	}
}

func TestEnumShortNamesAreUnique(t *testing.T) {
	for _, e := range Enums() {
		seen := map[string]bool{}
		for _, v := range e.Values {
			if v.Short == "" || seen[v.Short] {
				t.Errorf("%s: short name %q of %s empty or repeated", e.Name, v.Short, v.Name)
			}
			seen[v.Short] = true
			if !strings.EqualFold(e.Prefix+v.Short, v.Name) {
				t.Errorf("%s: %q + %q != %q", e.Name, e.Prefix, v.Short, v.Name)
			}
			if v.Short == "None" {
				t.Errorf("%s: short name None reads as \"no valid value\" in Home Assistant", v.Name)
			}
			if got := EnumOf(e, v).EnumShort(); got != v.Short {
				t.Errorf("EnumOf(%s).EnumShort() = %q, want the catalog's %q", v.Name, got, v.Short)
			}
		}
	}
	for name, want := range map[string]string{"ShiftStateD": "D", "DetailedChargeStateCharging": "Charging", "FollowDistance3": "3"} {
		found := false
		for _, e := range Enums() {
			if v, ok := e.ByName(name); ok {
				found = true
				if v.Short != want {
					t.Errorf("short name of %s = %q, want %q", name, v.Short, want)
				}
			}
		}
		if !found {
			t.Errorf("no enum has %s", name)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		field Field
		in    Value
		want  Value
		raw   string
	}{
		{FieldSoc, StringValue("79.147"), FloatValue(79.147), "79.147"},
		{FieldPackCurrent, StringValue("1.5e-3"), FloatValue(0.0015), "1.5e-3"},
		{FieldChargeLimitSoc, StringValue("80"), IntValue(80), "80"},
		{FieldChargeLimitSoc, StringValue("80.0"), IntValue(80), "80.0"},
		{FieldDriveRail, StringValue("true"), BoolValue(true), "true"},
		{FieldDriveRail, StringValue("false"), BoolValue(false), "false"},
		{FieldGear, StringValue("D"), EnumNumber(EnumShiftState, 5), "D"},
		{FieldGear, StringValue("ShiftStateR"), EnumNumber(EnumShiftState, 3), "ShiftStateR"},
		{FieldLocation, StringValue("(37.412374 N, 122.145867 W)"), LocationValue(37.412374, -122.145867), "(37.412374 N, 122.145867 W)"},
		{FieldLocation, StringValue("(33.8688 S, 151.2093 E)"), LocationValue(-33.8688, 151.2093), "(33.8688 S, 151.2093 E)"},
		// Strings that do not parse stay strings: nothing is lost.
		{FieldSoc, StringValue("n/a"), StringValue("n/a"), ""},
		{FieldGear, StringValue("Hover"), StringValue("Hover"), ""},
		{FieldLocation, StringValue("(95 N, 10 E)"), StringValue("(95 N, 10 E)"), ""},
		// String fields and typed values are left alone.
		{FieldChargeState, StringValue("Charging"), StringValue("Charging"), ""},
		{FieldSoc, FloatValue(12.5), FloatValue(12.5), ""},
		{FieldSoc, InvalidValue(), InvalidValue(), ""},
		{Field(999), StringValue("1"), StringValue("1"), ""},
	} {
		got := Normalize(tc.field, tc.in)
		if !got.Equal(tc.want) {
			t.Errorf("Normalize(%s, %v) = %v (%s), want %v (%s)", tc.field, tc.in, got, got.Kind(), tc.want, tc.want.Kind())
		}
		raw, ok := got.Raw()
		if ok != (tc.raw != "") || raw != tc.raw {
			t.Errorf("Normalize(%s, %v).Raw() = %q, %v; want %q", tc.field, tc.in, raw, ok, tc.raw)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		v          Value
		text, json string
	}{
		{IntValue(80), "80", "80"},
		{IntValue(-3), "-3", "-3"},
		{FloatValue(79.125), "79.125", "79.125"},
		{FloatValue(1e21), "1000000000000000000000", "1000000000000000000000"},
		{FloatValue(0.0000015), "0.0000015", "0.0000015"},
		{FloatValue(55), "55", "55"},
		{FloatValue(math.Copysign(0, -1)), "0", "0"},
		{FloatValue(math.NaN()), "null", "null"},
		{Float32Value(65.1), "65.1", "65.1"},
		{Float32Value(-3.25), "-3.25", "-3.25"},
		{BoolValue(true), "true", "true"},
		{BoolValue(false), "false", "false"},
		{StringValue(`Car "one"`), `Car "one"`, `"Car \"one\""`},
		{StringValue(""), "", `""`},
		{EnumNumber(EnumShiftState, 5), "D", `"D"`},
		{EnumNumber(EnumDetailedChargeStateValue, 4), "Charging", `"Charging"`},
		{EnumNumber(EnumShiftState, 99), "ShiftState(99)", `"ShiftState(99)"`},
		{LocationValue(37.412374, -122.145867), `{"latitude":37.412374,"longitude":-122.145867}`, `{"latitude":37.412374,"longitude":-122.145867}`},
		{DoorsValue(DriverFront | TrunkRear), `{"DriverFront":true,"DriverRear":false,"PassengerFront":false,"PassengerRear":false,"TrunkFront":false,"TrunkRear":true}`, ""},
		{TimeValue(23, 30, 5), "23:30:05", `"23:30:05"`},
		{TimeValue(7, 0, 0), "07:00:00", `"07:00:00"`},
		{InvalidValue(), "", "null"},
		{Value{}, "", "null"},
	} {
		if got := string(tc.v.AppendText(nil)); got != tc.text {
			t.Errorf("AppendText(%s) = %s, want %s", tc.v.Kind(), got, tc.text)
		}
		want := tc.json
		if want == "" {
			want = tc.text
		}
		got := tc.v.AppendJSON(nil)
		if string(got) != want {
			t.Errorf("AppendJSON(%s) = %s, want %s", tc.v.Kind(), got, want)
		}
		if !json.Valid(got) {
			t.Errorf("AppendJSON(%s) = %s is not valid JSON", tc.v.Kind(), got)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" backslash\\ slash/", "\x00\x01\x1f\n\r\t", "üñí€😀", "bad\xffutf8", "\u2028"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("AppendJSONString(%q) = %s: %v", s, got, err)
			continue
		}
		want := s
		if !utf8.ValidString(s) {
			want = string([]rune(s)) // invalid bytes become U+FFFD
		}
		if back != want {
			t.Errorf("AppendJSONString(%q) round-trips to %q, want %q", s, back, want)
		}
	}
}

func TestParseLocation(t *testing.T) {
	for _, tc := range []struct {
		in       string
		lat, lon float64
		ok       bool
	}{
		{"(37.412374 N, 122.145867 W)", 37.412374, -122.145867, true},
		{"(0 N, 0 E)", 0, 0, true},
		{"52.52, 13.405", 52.52, 13.405, true},
		{"(37.4 N 122.1 W)", 0, 0, false},
		{"(north, south)", 0, 0, false},
		{"", 0, 0, false},
	} {
		lat, lon, ok := ParseLocation(tc.in)
		if ok != tc.ok || lat != tc.lat || lon != tc.lon {
			t.Errorf("ParseLocation(%q) = %v, %v, %v; want %v, %v, %v", tc.in, lat, lon, ok, tc.lat, tc.lon, tc.ok)
		}
	}
}

func BenchmarkAppendText(b *testing.B) {
	values := []Value{FloatValue(79.125), IntValue(80), BoolValue(true), EnumNumber(EnumShiftState, 5), LocationValue(37.412374, -122.145867)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, v := range values {
			buf = v.AppendText(buf)
		}
	}
}
