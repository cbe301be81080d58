// Package topic checks the MQTT topics and topic prefixes of the
// configuration, and matches topics against subscription filters as
// brokers do.
package topic

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Check reports whether t, the value of the configuration key key, is one
// or more topic levels a client can publish to and subscribe under: no
// wildcard, no empty level, not a broker's own ($) topic. example is a
// topic to suggest in the error, such as "tesla".
func Check(key, t, example string) error {
	rule := fmt.Sprintf("use one or more topic levels without wildcards, such as %q", example)
	switch {
	case t == "":
		return fmt.Errorf("%s: must be set: %s", key, rule)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("%s: %q holds an MQTT wildcard (+ or #): %s", key, t, rule)
	case strings.HasPrefix(t, "/") || strings.HasSuffix(t, "/"):
		return fmt.Errorf("%s: %q starts or ends with '/': %s", key, t, rule)
	case strings.HasPrefix(t, "$"):
		return fmt.Errorf("%s: %q starts with '$', which brokers reserve for themselves: %s", key, t, rule)
	case strings.Contains(t, "//"):
		return fmt.Errorf("%s: %q has an empty topic level: %s", key, t, rule)
	case strings.IndexByte(t, 0) >= 0 || !utf8.ValidString(t):
		return fmt.Errorf("%s: %q is not valid UTF-8 text without NUL: %s", key, t, rule)
	}
	return nil
}
