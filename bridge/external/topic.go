package external

import (
	"strings"
	"unicode/utf8"
)

// validTopic reports whether topic may be published to: 1 to 65535 bytes of
// UTF-8 without NUL and without the wildcards + and #. A broker disconnects
// a client that publishes to anything else.
func validTopic(topic string) bool {
	if topic == "" || len(topic) > 65535 {
		return false
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case c == '+' || c == '#' || c == 0:
			return false
		case c >= utf8.RuneSelf:
			return utf8.ValidString(topic[i:]) && !strings.ContainsAny(topic[i:], "+#\x00")
		}
	}
	return true
}

// validFilter reports whether filter is a well-formed subscription filter:
// + alone in its level, # alone in the last level.
func validFilter(filter string) bool {
	if filter == "" || len(filter) > 65535 || strings.ContainsRune(filter, 0) || !utf8.ValidString(filter) {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}
