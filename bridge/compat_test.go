package bridge

import (
	"encoding/json"
	"math"
	"regexp"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestGoJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", "Golden Test Car", `quote " and \ backslash`, "<b>&amp;</b>",
		"tab\tnew\nline\rcr\bbs\fff", "\x00\x01\x1f\x7f", "é ü 漢字 😀",
		"\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
	} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendGoJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func FuzzGoJSONString(f *testing.F) {
	f.Add("<&>\u2028\xff\x01")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendGoJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

// checkFloat compares the compatibility form of f, sent as float64 and as
// float32, with encoding/json's.
func checkFloat(t *testing.T, f float64) {
	t.Helper()
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return
	}
	want, _ := json.Marshal(f)
	if got := appendCompatFloat(nil, telemetry.FloatValue(f)); string(got) != string(want) {
		t.Errorf("float64 %v: got %s, want %s", f, got, want)
	}
	f32 := float32(f)
	if math.IsInf(float64(f32), 0) {
		return
	}
	want, _ = json.Marshal(f32)
	if got := appendCompatFloat(nil, telemetry.Float32Value(f32)); string(got) != string(want) {
		t.Errorf("float32 %v: got %s, want %s", f32, got, want)
	}
}

func TestCompatFloat(t *testing.T) {
	for _, f := range []float64{
		0, math.Copysign(0, -1), 1, -1, 65.5, 65.1, 0.1, 12345.678, 9876543210,
		1e-6, 9.99999e-7, 1e-7, 1.5e-300, 2e-6, 1.9e-6, float64(float32(1e-6)),
		1e20, 1e21, 9.99e20, 5e20, 1.23456789e23, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.MaxFloat32, math.SmallestNonzeroFloat32, float64(float32(1e21)),
	} {
		checkFloat(t, f)
		checkFloat(t, -f)
	}
	// What JSON cannot carry, the bridge writes as null.
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := appendCompatFloat(nil, telemetry.FloatValue(f)); string(got) != "null" {
			t.Errorf("%v: got %s, want null", f, got)
		}
	}
}

func FuzzCompatFloat(f *testing.F) {
	for _, x := range []float64{1e-7, 1e21, 65.1, 2e-6} {
		f.Add(math.Float64bits(x))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		checkFloat(t, x)
		checkFloat(t, float64(math.Float32frombits(uint32(bits))))
	})
}

var scientificRE = regexp.MustCompile(`^[+-]?(\d*\.\d+|\d+\.\d*)([eE][+-]?\d+)$`)

func TestScientific(t *testing.T) {
	for _, s := range []string{
		"1.5e-3", "+1.5E3", "-.5e1", "5.e2", "1e3", ".e3", "1.5", "1.5e", "1.5e+", "1.5e-3x",
		"", "e3", "1..5e3", "٣.5e3", "1.5e3 ", " 1.5e3", "12.34E+056",
	} {
		if got, want := scientific(s), scientificRE.MatchString(s); got != want {
			t.Errorf("%q: got %t, want %t", s, got, want)
		}
	}
}

func FuzzScientific(f *testing.F) {
	f.Add("1.5e-3")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := scientific(s), scientificRE.MatchString(s); got != want {
			t.Errorf("%q: got %t, want %t", s, got, want)
		}
	})
}

func TestCompatValue(t *testing.T) {
	legacy := func(f telemetry.Field, s string) telemetry.Value {
		return telemetry.Normalize(f, telemetry.StringValue(s))
	}
	tests := []struct {
		name     string
		v        telemetry.Value
		location bool // the record's first Location datum
		want     string
	}{
		{"none", telemetry.Value{}, false, `{}`},
		{"invalid", telemetry.InvalidValue(), false, `null`},
		{"int", telemetry.IntValue(-80), false, `-80`},
		{"bool", telemetry.BoolValue(false), false, `false`},
		{"string html", telemetry.StringValue("a<b>&c"), false, `"a\u003cb\u003e\u0026c"`},
		{"enum full name", telemetry.EnumNumber(telemetry.EnumShiftState, 5), false, `"ShiftStateD"`},
		{"unknown enum by String", telemetry.EnumNumber(telemetry.EnumShiftState, 42), false, `"42"`},
		{"unknown enum by reflection", telemetry.EnumNumber(telemetry.EnumChargingState, 42), false, `42`},
		{"tires sorted, set only", telemetry.TiresValue(telemetry.SemiRearAxleRight | telemetry.SemiRearAxleLeft2 | telemetry.FrontLeft), false,
			`{"front_left":true,"semi_rear_axle_left_2":true,"semi_rear_axle_right":true}`},
		{"no tires", telemetry.TiresValue(0), false, `{}`},
		{"doors", telemetry.DoorsValue(telemetry.TrunkFront), false,
			`{"DriverFront":false,"DriverRear":false,"PassengerFront":false,"PassengerRear":false,"TrunkFront":true,"TrunkRear":false}`},
		{"time", telemetry.TimeValue(7, 5, 0), false, `"07:05:00"`},
		{"location", telemetry.LocationValue(1e-7, 180), false, `{"latitude":1e-7,"longitude":180}`},
		{"legacy number stays a string", legacy(telemetry.FieldSoc, "79.147"), false, `"79.147"`},
		{"legacy scientific", legacy(telemetry.FieldPackCurrent, "1.5e-3"), false, `"0.00150"`},
		{"scientific without point stays", telemetry.StringValue("1e5"), false, `"1e5"`},
		{"typed string in scientific notation", telemetry.StringValue("-2.5E+2"), false, `"-250.00000"`},
		{"scientific out of float32 range stays", telemetry.StringValue("1.0e50"), false, `"1.0e50"`},
		{"legacy enum keeps what was sent", legacy(telemetry.FieldGear, "D"), false, `"D"`},
		{"legacy location, first Location datum", legacy(telemetry.FieldLocation, "(37.412374 N, 122.145867 W)"), true,
			`{"latitude":37.412374,"longitude":-122.145867}`},
		{"legacy location, later datum", legacy(telemetry.FieldLocation, "(37.412374 N, 122.145867 W)"), false,
			`"(37.412374 N, 122.145867 W)"`},
		{"legacy location the reference cannot parse", legacy(telemetry.FieldLocation, "37.4, -122.1"), true,
			`"37.4, -122.1"`},
		{"south east", legacy(telemetry.FieldLocation, "(33.8688 S, 151.2093 E)"), true,
			`{"latitude":-33.8688,"longitude":151.2093}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appendCompatValue(nil, tt.v, tt.location); string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
