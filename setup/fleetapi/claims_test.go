package fleetapi

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

func TestCheckClaims(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour).Unix()
	ca, err := certs.NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	base := func(extra string) string {
		return fmt.Sprintf(`{"hostname":"t.example.com","ca":%q,"exp":%d,"fields":{"Soc":{"interval_seconds":60}}%s}`, ca.CertPEM, exp, extra)
	}
	tests := []struct {
		name   string
		claims string
		want   []string // nil: no problem
	}{
		{"valid", base(`,"port":443`), nil},
		{"port as string", base(`,"port":"443"`), []string{`port: "443" is a string: want an integer`}},
		{"port with a fraction", base(`,"port":443.0`), []string{"port: 443.0 is a number: want an integer"}},
		{"port out of range", base(`,"port":70000`), []string{"port: 70000 is not a TCP port"}},
		{"exp in milliseconds", strings.Replace(base(`,"port":443`), fmt.Sprint(exp), fmt.Sprint(exp*1000), 1), []string{"looks like milliseconds"}},
		{"unknown key", base(`,"port":443,"hostnme":"x"`), []string{"hostnme: not a key of the streaming config"}},
		{"iss given", base(`,"port":443,"iss":"me"`), []string{"iss: set by signing"}},
		{"unknown signal", strings.Replace(base(`,"port":443`), `"Soc"`, `"Nope"`, 1), []string{"fields.Nope: no such signal"}},
		{"interval as string", strings.Replace(base(`,"port":443`), `"interval_seconds":60`, `"interval_seconds":"60"`, 1), []string{`fields.Soc.interval_seconds: "60" is a string: want an integer`}},
		{"unknown setting", strings.Replace(base(`,"port":443`), `"interval_seconds":60`, `"interval_seconds":60,"every":5`, 1), []string{"fields.Soc.every: not a setting of a signal"}},
		{"signal not an object", strings.Replace(base(`,"port":443`), `{"interval_seconds":60}`, `60`, 1), []string{"fields.Soc: 60 is not an object"}},
		{"prefer_typed as string", base(`,"port":443,"prefer_typed":"yes"`), []string{`prefer_typed: "yes" is a string: want a boolean`}},
		{"missing port", base(``), []string{"port: missing: want an integer, usually 443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, err := CheckClaims([]byte(tt.claims), now)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("problems %q, want %d like %q", problems, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(problems[i], w) {
					t.Errorf("problem %d: %q, want it to contain %q", i, problems[i], w)
				}
			}
		})
	}
}

// TestClaimSchema keeps the schema CheckClaims reads the raw claims with
// in step with the types the claims are decoded into.
func TestClaimSchema(t *testing.T) {
	jsonType := func(k reflect.Kind) string {
		switch k {
		case reflect.String:
			return "string"
		case reflect.Int, reflect.Int64:
			return "integer"
		case reflect.Float64, reflect.Pointer: // *float64: minimum_delta
			return "number"
		case reflect.Map, reflect.Struct:
			return "object"
		case reflect.Slice:
			return "array"
		case reflect.Bool:
			return "boolean"
		}
		return k.String()
	}
	for _, s := range []struct {
		typ    reflect.Type
		schema map[string]string
		extra  []string // keys the schema has beyond the type's
	}{
		{reflect.TypeFor[TelemetryConfig](), telemetryKeys, []string{"prefer_typed"}},
		{reflect.TypeFor[FieldConfig](), fieldKeys, nil},
	} {
		seen := map[string]bool{}
		for f := range s.typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			seen[name] = true
			if got, want := s.schema[name], jsonType(f.Type.Kind()); got != want {
				t.Errorf("%s.%s: schema says %q, the type is %q", s.typ.Name(), name, got, want)
			}
		}
		for k := range s.schema {
			if !seen[k] && !slices.Contains(s.extra, k) {
				t.Errorf("%s: schema key %q is not in the type", s.typ.Name(), k)
			}
		}
	}
}
