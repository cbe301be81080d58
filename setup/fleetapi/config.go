package fleetapi

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TelemetryConfig is the streaming config a car receives: where to connect
// and which signals to send how often. Its JSON form is exactly the claims
// of the signed token, before "iss" and "aud" are added.
type TelemetryConfig struct {
	// Hostname is the DNS name of our vehicle listener, without scheme,
	// port or path; the server certificate must carry it as a SAN.
	Hostname string `json:"hostname"`
	// Port is the listener's TCP port (an integer; 443 usually).
	Port int `json:"port"`
	// CA is the PEM of the certificate authority chain that validates the
	// certificate our listener serves. A root keeps working across renewals.
	CA string `json:"ca,omitempty"`
	// Exp is when the config expires, in Unix seconds. Set it about a year
	// ahead (ConfigLifetime) and push again well before (NeedsRepush).
	Exp int64 `json:"exp"`
	// Fields maps signal names (as in the telemetry catalog, e.g. "Soc") to
	// how they are sent.
	Fields map[string]FieldConfig `json:"fields"`
	// AlertTypes selects alert streams, e.g. ["service"].
	AlertTypes []string `json:"alert_types,omitempty"`
	// DeliveryPolicy "latest" makes the car resend unacknowledged data.
	DeliveryPolicy string `json:"delivery_policy,omitempty"`
}

// FieldConfig says how one signal is sent. A signal is sent when it
// changes, at most once per IntervalSeconds.
type FieldConfig struct {
	// IntervalSeconds is the shortest time between two sends (required,
	// at least 1).
	IntervalSeconds int `json:"interval_seconds,omitempty"`
	// MinimumDelta suppresses changes smaller than this; only numeric
	// signals and Location take it, and only firmware from
	// MinimumDeltaFirmware on honours it. nil means every change counts.
	MinimumDelta *float64 `json:"minimum_delta,omitempty"`
	// ResendIntervalSeconds resends an unchanged value this often (0: never).
	ResendIntervalSeconds int `json:"resend_interval_seconds,omitempty"`
}

const (
	// ConfigLifetime is how far ahead to set Exp on a new config.
	ConfigLifetime = 365 * 24 * time.Hour
	// RepushMargin is how long before Exp a config should be pushed again.
	RepushMargin = 30 * 24 * time.Hour
	// MinimumDeltaFirmware is the first firmware that honours minimum_delta.
	MinimumDeltaFirmware = "2024.44.32"
	// DeliveryPolicyLatest makes the car resend data we did not acknowledge.
	DeliveryPolicyLatest = "latest"
)

// ConfigError is one problem of a TelemetryConfig. It matches
// ErrInvalidConfig with errors.Is.
type ConfigError struct {
	// Key is the config key at fault, such as "port" or
	// "fields.Gear.minimum_delta".
	Key string
	// Problem says what is wrong and what would be valid.
	Problem string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Problem }

// Is makes a ConfigError match ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Validate checks cfg as Tesla and the car would, at time now, and returns
// every problem found (joined; each one a *ConfigError), or nil.
func (c TelemetryConfig) Validate(now time.Time) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}

	if err := validateHostname(c.Hostname); err != nil {
		add("hostname", "%v", err)
	}
	if c.Port < 1 || c.Port > 65535 {
		add("port", "%d is not a TCP port: want an integer from 1 to 65535 (usually 443)", c.Port)
	}
	if err := validateCA(c.CA); err != nil {
		add("ca", "%v", err)
	}
	switch {
	case c.Exp > 1e11:
		add("exp", "%d looks like milliseconds: want Unix seconds", c.Exp)
	case c.Exp <= now.Unix():
		add("exp", "%d (%s) is not in the future", c.Exp, time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	if len(c.Fields) == 0 {
		add("fields", "no signal selected: choose at least one")
	}
	names := make([]string, 0, len(c.Fields))
	for name := range c.Fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fc := c.Fields[name]
		key := "fields." + name
		f, ok := telemetry.FieldByName(name)
		if !ok {
			add(key, "no such signal in the telemetry catalog")
			continue
		}
		info, _ := telemetry.Lookup(f)
		if fc.IntervalSeconds < 1 {
			add(key+".interval_seconds", "%d: want at least 1 second", fc.IntervalSeconds)
		}
		if fc.ResendIntervalSeconds < 0 {
			add(key+".resend_interval_seconds", "%d: want 0 (never) or a positive number of seconds", fc.ResendIntervalSeconds)
		}
		if d := fc.MinimumDelta; d != nil {
			switch {
			case !info.Kind.Numeric() && info.Kind != telemetry.KindLocation:
				add(key+".minimum_delta", "only numeric signals and Location take a minimum delta; %s is a %s signal", name, info.Kind)
			case math.IsNaN(*d) || math.IsInf(*d, 0) || *d < 0:
				add(key+".minimum_delta", "%v: want a finite number of at least 0", *d)
			}
		}
	}
	seen := make(map[string]bool, len(c.AlertTypes))
	for i, a := range c.AlertTypes {
		key := "alert_types[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(a) == "":
			add(key, "empty alert type")
		case seen[a]:
			add(key, "%q is listed twice", a)
		}
		seen[a] = true
	}
	if c.DeliveryPolicy != "" && c.DeliveryPolicy != DeliveryPolicyLatest {
		add("delivery_policy", "%q: want %q or nothing", c.DeliveryPolicy, DeliveryPolicyLatest)
	}
	return errors.Join(errs...)
}

func validateHostname(h string) error {
	switch {
	case h == "":
		return errors.New("empty: want the DNS name cars connect to, e.g. telemetry.example.com")
	case strings.Contains(h, "://"):
		return fmt.Errorf("%q has a scheme: want only the name, e.g. telemetry.example.com", h)
	case strings.ContainsAny(h, "/?#@"):
		return fmt.Errorf("%q has a path: want only the name, e.g. telemetry.example.com", h)
	case strings.Contains(h, ":"):
		return fmt.Errorf("%q has a port: put the port in \"port\" and only the name here", h)
	case strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%q contains spaces or control characters", h)
	case net.ParseIP(h) != nil:
		return fmt.Errorf("%q is an IP address: cars need a DNS name their certificate check can match", h)
	}
	return nil
}

// validateCA checks that ca is a PEM bundle of certificates and nothing
// else.
func validateCA(ca string) error {
	if strings.TrimSpace(ca) == "" {
		return errors.New("empty: want the PEM of the CA chain that validates the listener's certificate")
	}
	if !strings.Contains(ca, "\n") && strings.Contains(ca, `\n`) {
		return errors.New(`contains the two characters \n instead of line breaks (PEM copied out of JSON): paste the PEM file itself`)
	}
	rest := []byte(ca)
	n := 0
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q: want only CERTIFICATE blocks", n+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found: want -----BEGIN CERTIFICATE----- blocks")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("unexpected text after the last certificate")
	}
	return nil
}

// ValidateDomain checks that domain is a bare host name, as partner
// registration and the pairing link need: no scheme, port or path.
func ValidateDomain(domain string) error {
	if err := validateHostname(domain); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	if !strings.Contains(domain, ".") {
		return fmt.Errorf("domain: %q is not a public DNS name", domain)
	}
	return nil
}

// PairingURL is the link that opens the Tesla app to add the application's
// virtual key to a car; it must be opened on the owner's phone. vin may be
// empty.
func PairingURL(domain, vin string) string {
	u := "https://tesla.com/_ak/" + domain
	if vin != "" {
		u += "?vin=" + url.QueryEscape(vin)
	}
	return u
}

// NeedsRepush reports whether a config expiring at exp (Unix seconds)
// should be pushed again now.
func NeedsRepush(exp int64, now time.Time) bool {
	return !now.Add(RepushMargin).Before(time.Unix(exp, 0))
}

// FirmwareAtLeast reports whether a firmware version such as
// "2024.44.32.1 1f2e3d" is at least min (dotted numbers compared in order;
// a missing part counts as 0). Unreadable versions compare as too old.
func FirmwareAtLeast(version, min string) bool {
	v, ok1 := firmwareParts(version)
	m, ok2 := firmwareParts(min)
	if !ok1 || !ok2 {
		return false
	}
	for i := range max(len(v), len(m)) {
		var a, b int
		if i < len(v) {
			a = v[i]
		}
		if i < len(m) {
			b = m[i]
		}
		if a != b {
			return a > b
		}
	}
	return true
}

func firmwareParts(s string) ([]int, bool) {
	s, _, _ = strings.Cut(strings.TrimSpace(s), " ")
	if s == "" {
		return nil, false
	}
	parts := strings.Split(s, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// Money, as Tesla bills streaming since 2025: package telemetry's price
// table, which fleet2mqtt's measured estimates use too.
const (
	// SignalsPerDollar is how many streamed signals cost US$1.
	SignalsPerDollar = telemetry.SignalsPerDollar
	// CommandsPerDollar is how many vehicle command requests cost US$1
	// (each signed_command, session handshakes included, or REST command).
	CommandsPerDollar = 1_000
	// WakesPerDollar is how many wake_up requests cost US$1.
	WakesPerDollar = 50
	// MonthlyCreditDollars is Tesla's monthly credit per account, in US$.
	MonthlyCreditDollars = telemetry.MonthlyCreditDollars
)

// EstimateMonthlySignals returns an upper bound of the signals one car
// streams in a 30-day month with these fields, and what they would cost in
// US dollars before Tesla's monthly credit (MonthlyCreditDollars).
//
// The bound assumes every field changes all the time, so that the car sends
// it once per interval: ⌈86400 / interval⌉ per day (an interval below 1
// counts as 1). Real cars send far less, since a signal goes out only when
// it changes (by at least minimum_delta, where set) and a parked, sleeping
// car sends almost nothing; resend_interval_seconds adds nothing beyond the
// bound, which already counts one send per interval.
func EstimateMonthlySignals(fields map[string]FieldConfig) (signals int64, dollars float64) {
	const day, month = 86400, telemetry.BillingMonthDays
	for _, f := range fields {
		interval := int64(max(f.IntervalSeconds, 1))
		signals += (day + interval - 1) / interval * month
	}
	return signals, float64(signals) / SignalsPerDollar
}
