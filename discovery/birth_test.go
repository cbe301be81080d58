package discovery

import (
	"math/rand/v2"
	"testing"
)

func TestOnStatus(t *testing.T) {
	tests := []struct {
		payload string
		want    bool
	}{
		{"online", true},
		{" online\n", true},
		{"offline", false},
		{"Online", false},
		{"", false},
		{"online2", false},
	}
	for _, tt := range tests {
		if got := OnStatus([]byte(tt.payload)); got != tt.want {
			t.Errorf("OnStatus(%q) = %v, want %v", tt.payload, got, tt.want)
		}
	}
}

func TestRepublishDelay(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := MaxRepublishDelay, MinRepublishDelay
	for range 1000 {
		d := RepublishDelay(r)
		if d < MinRepublishDelay || d >= MaxRepublishDelay {
			t.Fatalf("RepublishDelay = %v, outside [%v, %v)", d, MinRepublishDelay, MaxRepublishDelay)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// The delays spread over the range, so that replicas do not answer
	// together.
	if hi-lo < (MaxRepublishDelay-MinRepublishDelay)*9/10 {
		t.Errorf("1000 delays span only %v to %v", lo, hi)
	}
	if d := RepublishDelay(nil); d < MinRepublishDelay || d >= MaxRepublishDelay {
		t.Errorf("RepublishDelay(nil) = %v", d)
	}
}
