// Package deviceid is the one definition of the device ids fleet2mqtt
// accepts: the name a client certificate gives a car (its VIN) or another
// Tesla device. The vehicle listener (ingest) refuses a connection whose
// certificate breaks the rule, and the development PKI (certs) refuses to
// issue such a certificate, so that a simulated car is never turned away
// for its name.
package deviceid

import "strings"

// MaxLen is the longest device id, the upper bound X.509 sets for a
// common name.
const MaxLen = 64

// Rule says in words what Valid accepts, for error messages.
const Rule = "1 to 64 ASCII letters, digits, '-' and '_', starting with a letter or a digit"

// FromCommonName returns the device id that a certificate's subject common
// name stands for: the name with every '.' replaced by '-', as in Tesla's
// reference server. The result still has to pass Valid.
func FromCommonName(cn string) string {
	// ReplaceAll returns cn itself when there is no dot: a VIN costs no
	// copy.
	return strings.ReplaceAll(cn, ".", "-")
}

// Valid reports whether id is a plausible device id: 1 to MaxLen ASCII
// letters, digits, '-' and '_', starting with a letter or a digit.
//
// A car's id is its VIN (17 capital letters and digits), other Tesla
// devices use part numbers and serials such as "1232100-00-E--TG1234". The
// rule does not insist on the VIN alphabet (no I, O or Q) or its length:
// development and test certificates use names such as 5YJ3TESTVIN000001,
// and what matters is that the id is safe wherever it goes, as one MQTT
// topic level (no '/', '+', '#', leading '$' or NUL), in Home Assistant
// unique ids, in file names and in log lines.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}
