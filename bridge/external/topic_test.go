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

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"homeassistant/status", "homeassistant/status", true},
		{"homeassistant/status", "homeassistant/statusx", false},
		{"homeassistant/+", "homeassistant/status", true},
		{"homeassistant/+", "homeassistant/a/b", false},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"+/x", "/x", true},
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
	}
	for _, tt := range tests {
		if got := matchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
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
