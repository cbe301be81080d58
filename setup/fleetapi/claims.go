package fleetapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// telemetryKeys are the keys of a streaming config, with the JSON type
// each takes: the schema of TelemetryConfig's JSON form (a test keeps the
// two in step), plus prefer_typed, which the car takes but fleet2mqtt
// never sets.
var telemetryKeys = map[string]string{
	"hostname":        "string",
	"port":            "integer",
	"ca":              "string",
	"exp":             "integer",
	"fields":          "object",
	"alert_types":     "array",
	"delivery_policy": "string",
	"prefer_typed":    "boolean",
}

// requiredExamples show the keys every streaming config needs.
var requiredExamples = map[string]string{
	"hostname": `the name cars connect to, e.g. "telemetry.example.com"`,
	"port":     "an integer, usually 443",
	"exp":      "the expiry in Unix seconds, about a year ahead",
	"fields":   `the signals, e.g. {"Soc": {"interval_seconds": 60}}`,
}

// fieldKeys are the keys of one signal's settings and their types: the
// schema of FieldConfig's JSON form.
var fieldKeys = map[string]string{
	"interval_seconds":        "integer",
	"minimum_delta":           "number",
	"resend_interval_seconds": "integer",
}

// CheckClaims lists, in plain words, what Tesla or the car would refuse
// in the raw claims of a streaming config, as a person wrote them: unknown
// keys, values of the wrong JSON type (such as a port written as a
// string) and everything TelemetryConfig.Validate finds. err means the
// input is not a JSON object at all.
func CheckClaims(claims []byte, now time.Time) (problems []string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(claims, &top); err != nil || top == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, fmt.Errorf("config is not a JSON object: %w", err)
	}
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	known := make([]string, 0, len(telemetryKeys))
	for k := range telemetryKeys {
		known = append(known, k)
	}
	slices.Sort(known)
	typesOK := true
	for _, k := range keys {
		want, ok := telemetryKeys[k]
		switch {
		case k == "iss" || k == "aud":
			add("%s: set by signing; the value in the config is replaced", k)
		case !ok:
			add("%s: not a key of the streaming config (known: %s)", k, strings.Join(known, ", "))
		case !jsonTypeIs(top[k], want):
			typesOK = false
			add("%s: %s is %s: want %s %s", k, shorten(top[k]), jsonTypeName(top[k]), article(want), want)
		}
	}
	for _, k := range []string{"hostname", "port", "exp", "fields"} {
		if _, ok := top[k]; !ok {
			typesOK = false
			add("%s: missing: want %s", k, requiredExamples[k])
		}
	}
	if raw, ok := top["fields"]; ok && jsonTypeIs(raw, "object") {
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			var settings map[string]json.RawMessage
			if err := json.Unmarshal(fields[n], &settings); err != nil || settings == nil {
				typesOK = false
				add("fields.%s: %s is not an object: want {\"interval_seconds\": 60}", n, shorten(fields[n]))
				continue
			}
			sk := make([]string, 0, len(settings))
			for k := range settings {
				sk = append(sk, k)
			}
			slices.Sort(sk)
			for _, k := range sk {
				want, ok := fieldKeys[k]
				switch {
				case !ok:
					add("fields.%s.%s: not a setting of a signal (known: interval_seconds, minimum_delta, resend_interval_seconds)", n, k)
				case !jsonTypeIs(settings[k], want):
					typesOK = false
					add("fields.%s.%s: %s is %s: want %s %s", n, k, shorten(settings[k]), jsonTypeName(settings[k]), article(want), want)
				}
			}
		}
	}
	if !typesOK {
		// The typed checks below would only repeat these.
		return problems, nil
	}
	var cfg TelemetryConfig
	if err := json.Unmarshal(claims, &cfg); err != nil {
		add("%v", err)
		return problems, nil
	}
	if err := cfg.Validate(now); err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				add("%v", e)
			}
		} else {
			add("%v", err)
		}
	}
	return problems, nil
}

// jsonTypeIs reports whether raw is a JSON value of type want: string,
// integer, number, object, array or boolean.
func jsonTypeIs(raw json.RawMessage, want string) bool {
	got := jsonTypeName(raw)
	if want == "number" {
		return got == "an integer" || got == "a number"
	}
	return got == article(want)+" "+want
}

// jsonTypeName names the type of a JSON value, with its article.
func jsonTypeName(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return "an integer"
	}
	return "a number"
}

func article(typ string) string {
	if typ == "integer" || typ == "object" || typ == "array" {
		return "an"
	}
	return "a"
}

// shorten quotes a JSON value for a message, cut if long.
func shorten(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// CheckSignedClaims lists, in plain words, what Tesla or the car would
// refuse in the claims of a signed streaming config (as VerifyJWS returns
// them): an "aud" other than TelemetryAudience, then what CheckClaims
// finds, except that signing set "iss" and "aud", as it should. err means
// the claims are not a JSON object; problems found before that are
// returned with it.
func CheckSignedClaims(claims []byte, now time.Time) (problems []string, err error) {
	var meta struct {
		Aud any `json:"aud"`
	}
	_ = json.Unmarshal(claims, &meta)
	if meta.Aud != TelemetryAudience {
		problems = append(problems, fmt.Sprintf("aud is %v, not %q: this token is not a streaming config, and cars would refuse it", meta.Aud, TelemetryAudience))
	}
	found, err := CheckClaims(claims, now)
	if err != nil {
		return problems, err
	}
	for _, p := range found {
		if !strings.HasPrefix(p, "iss:") && !strings.HasPrefix(p, "aud:") {
			problems = append(problems, p)
		}
	}
	return problems, nil
}
