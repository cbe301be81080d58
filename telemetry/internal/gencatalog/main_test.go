package main

import (
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/gencheck"
)

// TestCatalogIsCurrent fails when telemetry/catalog_gen.go is not what
// gencatalog makes of the tables in telemetry/spec today.
func TestCatalogIsCurrent(t *testing.T) {
	src, err := generate("../../spec")
	if err != nil {
		t.Fatal(err)
	}
	if err := gencheck.Compare("../../catalog_gen.go", src, "go generate ./telemetry/"); err != nil {
		t.Error(err)
	}
}

func TestCommonWordPrefix(t *testing.T) {
	values := func(names ...string) []enumValue {
		var v []enumValue
		for i, n := range names {
			v = append(v, enumValue{number: i, name: n})
		}
		return v
	}
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"ShiftStateUnknown", "ShiftStateP", "ShiftStateD"}, "ShiftState"},
		{[]string{"FollowDistanceUnknown", "FollowDistance1", "FollowDistance3"}, "FollowDistance"},
		// The prefix must end at a word boundary: "Charge" plus "Stat" and
		// "Start" share "ChargeSta", which would cut words in half.
		{[]string{"ChargeStateIdle", "ChargeStartup"}, "Charge"},
		{[]string{"Off", "On"}, ""},
	}
	for _, tt := range tests {
		if got := commonWordPrefix(values(tt.names...)); got != tt.want {
			t.Errorf("commonWordPrefix(%v) = %q, want %q", tt.names, got, tt.want)
		}
	}
}
