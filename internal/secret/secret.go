// Package secret has the string type of passwords and other secrets in the
// configuration: it does not show itself in logs, in printed configuration
// or in encoded output.
package secret

import (
	"log/slog"
	"strconv"
)

// Secret is a string that does not show itself: formatted, logged or
// encoded, a set secret reads [redacted] and an empty one "".
type Secret string

// Redacted stands for a secret that is set.
const Redacted = "[redacted]"

// String returns Redacted for a set secret and "" for an empty one.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML, text) from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the secret as written.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// Reveal returns the secret itself, for the places that must use it.
func (s Secret) Reveal() string { return string(s) }
