package topic

import "strings"

// Match reports whether topic matches the subscription filter (MQTT 3.1.1
// and 5, section 4.7): '+' matches exactly one level, a trailing '#' any
// number of levels including none ("a/#" matches "a"), and a filter that
// starts with a wildcard does not match a topic that starts with '$'.
// filter is assumed well formed.
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		if filter == "#" {
			return true
		}
		fl, frest, fmore := strings.Cut(filter, "/")
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}
