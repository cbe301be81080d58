package external

import (
	"strings"
	"testing"
)

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  bool
	}{
		{"tesla/VIN/Soc", true},
		{"/leading/slash", true},
		{"ünïcode/ß", true},
		{"", false},
		{"a/+/b", false},
		{"a/#", false},
		{"ü/#", false},
		{"nul\x00", false},
		{"bad\xff", false},
		{strings.Repeat("a", 65536), false},
	}
	for _, tt := range tests {
		if got := validTopic(tt.topic); got != tt.want {
			t.Errorf("validTopic(%.20q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for filter, want := range map[string]bool{
		"a/b": true, "a/+/c": true, "#": true, "a/#": true, "+": true,
		"": false, "a/#/b": false, "a+/b": false, "a/b#": false, "nul\x00": false,
	} {
		if got := validFilter(filter); got != want {
			t.Errorf("validFilter(%q) = %v, want %v", filter, got, want)
		}
	}
}
