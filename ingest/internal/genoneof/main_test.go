package main

import (
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/gencheck"
	"github.com/fleet2mqtt/fleet2mqtt/internal/telemetryspec"
)

// TestOneofTableIsCurrent fails when ingest/oneof_gen.go is not what
// genoneof makes of the tables in telemetry/spec today.
func TestOneofTableIsCurrent(t *testing.T) {
	src, err := generate("../../../telemetry/spec")
	if err != nil {
		t.Fatal(err)
	}
	if err := gencheck.Compare("../../oneof_gen.go", src, "go generate ./ingest/"); err != nil {
		t.Error(err)
	}
}

func TestDecoderMembers(t *testing.T) {
	spec := func(members ...telemetryspec.Member) *telemetryspec.Spec {
		return &telemetryspec.Spec{
			Members: members,
			Enums:   []*telemetryspec.Enum{{Name: "ShiftState", Values: []telemetryspec.EnumValue{{Number: 0, Name: "ShiftStateUnknown"}}}},
		}
	}
	got, err := decoderMembers(spec(
		telemetryspec.Member{Number: 3, Name: "shift_state_value", Type: "ShiftState"},
		telemetryspec.Member{Number: 1, Name: "string_value", Type: "string"},
		telemetryspec.Member{Number: 2, Name: "invalid", Type: "bool"},
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []member{
		{number: 1, name: "string_value", kind: "memberString"},
		{number: 2, name: "invalid", kind: "memberInvalid"},
		{number: 3, name: "shift_state_value", kind: "memberEnum", enum: "ShiftState"},
	}
	if len(got) != len(want) {
		t.Fatalf("members = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	for _, tt := range []struct {
		member telemetryspec.Member
		wantIn string
	}{
		{telemetryspec.Member{Number: 256, Name: "far_value", Type: "string"}, "ends at 255"},
		{telemetryspec.Member{Number: 1, Name: "invalid", Type: "string"}, "want bool"},
		{telemetryspec.Member{Number: 1, Name: "gear_value", Type: "Gear"}, `"Gear"`},
	} {
		if _, err := decoderMembers(spec(tt.member)); err == nil || !strings.Contains(err.Error(), tt.wantIn) {
			t.Errorf("%+v: err = %v, want it to mention %q", tt.member, err, tt.wantIn)
		}
	}
}
