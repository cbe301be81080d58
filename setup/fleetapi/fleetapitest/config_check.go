package fleetapitest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// fieldKeys are the settings one field of a config may carry.
var fieldKeys = []string{"interval_seconds", "minimum_delta", "resend_interval_seconds"}

// checkFieldClaims checks the "fields" claim: a non-empty object of known
// signals, each with an integer interval_seconds of at least 1, an optional
// integer resend_interval_seconds, and a minimum_delta only on numeric
// signals and Location.
func checkFieldClaims(raw json.RawMessage) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var fields map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return []string{"fields must be an object of objects"}
	}
	if len(fields) == 0 {
		return []string{"fields must not be empty"}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		settings := fields[name]
		f, ok := telemetry.FieldByName(name)
		if !ok {
			bad("fields.%s: unknown field", name)
			continue
		}
		info, _ := telemetry.Lookup(f)
		for k := range settings {
			if !slices.Contains(fieldKeys, k) {
				bad("fields.%s: unknown setting %q", name, k)
			}
		}
		if v, ok := settings["interval_seconds"]; !ok {
			bad("fields.%s: interval_seconds is required", name)
		} else if n, ok := jsonInteger(v); !ok || n < 1 {
			bad("fields.%s.interval_seconds must be an integer of at least 1, not %s", name, v)
		}
		if v, ok := settings["resend_interval_seconds"]; ok {
			if n, ok := jsonInteger(v); !ok || n < 0 {
				bad("fields.%s.resend_interval_seconds must be a non-negative integer, not %s", name, v)
			}
		}
		if v, ok := settings["minimum_delta"]; ok {
			d, err := strconv.ParseFloat(string(v), 64)
			switch {
			case !info.Kind.Numeric() && info.Kind != telemetry.KindLocation:
				bad("fields.%s.minimum_delta: only numeric fields and Location take a minimum delta (%s is %s)", name, name, info.Kind)
			case err != nil || d < 0:
				bad("fields.%s.minimum_delta must be a non-negative number, not %s", name, v)
			}
		}
	}
	return problems
}

// checkCA checks that ca holds PEM certificates and nothing else.
func checkCA(ca string) error {
	rest := []byte(ca)
	n := 0
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %q is not a CERTIFICATE", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("text after the last certificate")
	}
	return nil
}

func stdBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
