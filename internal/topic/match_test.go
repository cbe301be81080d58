package topic

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/a", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/b/d", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+/+", "/a", true},
		{"+/+", "a/b", true},
		{"+/x", "/x", true},
		{"a/b", "a/b", true},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"homeassistant/status", "homeassistant/status", true},
		{"homeassistant/status", "homeassistant/statusx", false},
		{"homeassistant/+", "homeassistant/a/b", false},
		{"tesla/+/Soc", "tesla/5YJ3E7EB2NF000001/Soc", true},
	} {
		if got := Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %t, want %t", tc.filter, tc.topic, got, tc.want)
		}
	}
}
