package deviceid

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"5YJ3E1EA0SF000001", true},
		{"5YJ3TESTVIN000001", true}, // a test name, not a VIN
		{"1232100-00-E--TG1234", true},
		{"device_abc", true},
		{"a", true},
		{"0", true},
		{strings.Repeat("A", MaxLen), true},

		{"", false},
		{strings.Repeat("A", MaxLen+1), false},
		{"-5YJ3E1EA0SF000001", false},
		{"_x", false},
		{"my car", false},
		{"5YJ3E1EA0SF.000001", false}, // FromCommonName maps dots first
		{"tesla/5YJ3E1EA0SF000001", false},
		{"5YJ3E1EA0SF00000+", false},
		{"5YJ3E1EA0SF00000#", false},
		{"$SYS", false},
		{"5YJ3E1EA0SF000001\x00", false},
		{"5YJ3E1EA0SF\n000001", false},
		{"5YJ3E1EA0SFÄ00001", false},
		{"5YJ3E1EA0SF\xff00001", false},
		{`5YJ3E1EA0SF\000001`, false},
		{"5YJ3E1EA0SF:000001", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.id); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestFromCommonName(t *testing.T) {
	tests := []struct{ cn, want string }{
		{"5YJ3E1EA0SF000001", "5YJ3E1EA0SF000001"},
		{"board.42", "board-42"},
		{"a..b.", "a--b-"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := FromCommonName(tt.cn); got != tt.want {
			t.Errorf("FromCommonName(%q) = %q, want %q", tt.cn, got, tt.want)
		}
	}
}
