package fleetapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

const (
	vinSync     = "5YJ3E1EA7KF000010"
	vinUnpaired = "5YJ3E1EA7KF000011"
	vinOldFW    = "5YJ3E1EA7KF000012"
	vinFull     = "5YJ3E1EA7KF000013"
	vinReject   = "5YJ3E1EA7KF000014"
	vinHardware = "5YJ3E1EA7KF000015"
)

func pushFixture(t *testing.T) (*fixture, *fleetapi.Owner) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{
		{VIN: vinSync, Paired: true, SyncAfterPolls: 2, Errors: []fleetapitest.StreamError{{Name: "dial", Error: "dial tcp: i/o timeout", VIN: vinSync}}},
		{VIN: vinUnpaired},
		{VIN: vinOldFW, Paired: true, Skip: "unsupported_firmware"},
		{VIN: vinFull, Paired: true, Skip: "max_configs"},
		{VIN: vinReject, Paired: true, RejectConfig: true},
		{VIN: vinHardware, Paired: true, Skip: "unsupported_hardware"},
	}})
	f.register(t)
	return f, f.login(t, &memStore{})
}

// TestPushVerifiedByFake pushes a signed config that the fake verifies
// with the key it downloaded at registration, then follows the car
// through pending to active.
func TestPushVerifiedByFake(t *testing.T) {
	f, owner := pushFixture(t)
	ctx := context.Background()
	cfg := validConfig(t)

	res, err := owner.ConfigureTelemetry(ctx, f.key, cfg, vinSync, vinUnpaired, vinOldFW, vinFull, vinReject, vinHardware)
	if err != nil {
		t.Fatal(err)
	}
	wantSkipped := map[string]fleetapi.SkipReason{
		vinUnpaired: fleetapi.SkipMissingKey,
		vinOldFW:    fleetapi.SkipUnsupportedFirmware,
		vinFull:     fleetapi.SkipMaxConfigs,
		vinHardware: fleetapi.SkipUnsupportedHardware,
	}
	if res.UpdatedVehicles != 2 || !reflect.DeepEqual(res.Skipped, wantSkipped) {
		t.Fatalf("push result %+v", res)
	}
	for vin, reason := range res.Skipped {
		if ex := reason.Explain(); ex == "" || strings.HasPrefix(ex, "Tesla skipped") {
			t.Errorf("%s: no plain explanation for %s", vin, reason)
		}
	}

	// What the car got is the config, plus iss and aud.
	var pushed map[string]any
	if err := json.Unmarshal(f.fake.PushedConfig(vinSync), &pushed); err != nil {
		t.Fatal(err)
	}
	if pushed["aud"] != fleetapi.TelemetryAudience || pushed["hostname"] != cfg.Hostname || pushed["port"] != float64(443) || pushed["ca"] != cfg.CA {
		t.Fatalf("pushed claims %v", pushed)
	}

	// synced:false twice, then the car has it.
	var states []fleetapi.ConfigState
	var last *fleetapi.VehicleConfig
	for range 3 {
		vc, err := owner.TelemetryConfig(ctx, vinSync)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, vc.State)
		last = vc
	}
	want := []fleetapi.ConfigState{fleetapi.ConfigPending, fleetapi.ConfigPending, fleetapi.ConfigActive}
	if !reflect.DeepEqual(states, want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	if !last.KeyPaired || last.Config == nil || !reflect.DeepEqual(*last.Config, cfg) {
		t.Fatalf("active config %+v", last)
	}
	if !strings.Contains(last.Explain(), "streams") {
		t.Errorf("explain: %s", last.Explain())
	}

	// The car that rejects it: synced, but no config.
	vc, err := owner.TelemetryConfig(ctx, vinReject)
	if err != nil {
		t.Fatal(err)
	}
	if vc.State != fleetapi.ConfigRejected || vc.Config != nil || !vc.LimitReached || vc.State.String() != "rejected" {
		t.Fatalf("rejecting car %+v", vc)
	}
	if !strings.Contains(vc.Explain(), "rejected") {
		t.Errorf("explain: %s", vc.Explain())
	}

	// The car's streaming errors.
	errs, err := owner.TelemetryErrors(ctx, vinSync)
	if err != nil || len(errs) != 1 || !strings.Contains(errs[0].Explain(), "could not reach") {
		t.Fatalf("errors %+v, %v", errs, err)
	}

	// Remove it.
	if err := owner.DeleteTelemetryConfig(ctx, vinSync); err != nil {
		t.Fatal(err)
	}
	if f.fake.PushedConfig(vinSync) != nil {
		t.Fatal("config still on the car after delete")
	}
	vc, err = owner.TelemetryConfig(ctx, vinSync)
	if err != nil || vc.Config != nil {
		t.Fatalf("after delete %+v, %v", vc, err)
	}

	// Some answers to a delete carry no body at all.
	f.fake.Fail(fleetapitest.Failure{Method: http.MethodDelete, Status: http.StatusOK, Body: " ", ContentType: "application/json"})
	if err := owner.DeleteTelemetryConfig(ctx, vinSync); err != nil {
		t.Fatalf("delete with empty answer: %v", err)
	}

	// Unknown car.
	if _, err := owner.TelemetryConfig(ctx, "NOTACAR"); !errors.Is(err, fleetapi.ErrNotFound) {
		t.Fatalf("unknown car: %v", err)
	}
}

// TestPushRefusedByFake pushes tokens that Tesla would refuse, signed
// correctly but with bad claims, or signed with the wrong key.
func TestPushRefusedByFake(t *testing.T) {
	f, owner := pushFixture(t)
	ctx := context.Background()
	ca, _ := json.Marshal(testCA(t))
	future := time.Now().Add(time.Hour).Unix()
	claims := func(port, exp, fields string) string {
		return `{"hostname":"t.example.com","port":` + port + `,"ca":` + string(ca) + `,"exp":` + exp + `,"fields":` + fields + `}`
	}
	soc := `{"Soc":{"interval_seconds":60}}`
	futureS := jsonInt(future)
	other, _ := fleetapi.GenerateKey()

	cases := []struct {
		name   string
		key    bool // sign with another key than the registered one
		claims string
		status int
		want   string
	}{
		{"port as string", false, claims(`"443"`, futureS, soc), http.StatusUnprocessableEntity, "port must be an integer"},
		{"port as float", false, claims(`443.0`, futureS, soc), http.StatusUnprocessableEntity, "port must be an integer"},
		{"port out of range", false, claims(`70000`, futureS, soc), http.StatusUnprocessableEntity, "out of range"},
		{"expired", false, claims(`443`, "1000", soc), http.StatusUnprocessableEntity, "not in the future"},
		{"unknown field", false, claims(`443`, futureS, `{"NoSuchSignal":{"interval_seconds":1}}`), http.StatusUnprocessableEntity, "unknown field"},
		{"delta on enum", false, claims(`443`, futureS, `{"Gear":{"interval_seconds":1,"minimum_delta":1}}`), http.StatusUnprocessableEntity, "minimum delta"},
		{"no interval", false, claims(`443`, futureS, `{"Soc":{}}`), http.StatusUnprocessableEntity, "interval_seconds is required"},
		{"unknown claim", false, `{"hostname":"t.example.com","port":443,"ca":` + string(ca) + `,"exp":` + futureS + `,"fields":` + soc + `,"colour":"red"}`, http.StatusUnprocessableEntity, "unknown claim"},
		{"wrong key", true, claims(`443`, futureS, soc), http.StatusBadRequest, "does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := f.key
			if tc.key {
				key = other
			}
			token, err := fleetapi.SignTelemetryClaims(key, []byte(tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			_, err = owner.PushTelemetryConfig(ctx, token, vinSync)
			e := apiError(t, err)
			if e.Status != tc.status || !strings.Contains(e.Code+" "+e.Message, tc.want) {
				t.Fatalf("got %v, want %d containing %q", err, tc.status, tc.want)
			}
			if fleetapi.Explain(err) == "" {
				t.Error("no explanation")
			}
		})
	}
	if f.fake.PushedConfig(vinSync) != nil {
		t.Fatal("a refused config reached the car")
	}

	// A tampered token (payload changed after signing) is refused too.
	good, _ := fleetapi.SignTelemetryClaims(f.key, []byte(claims(`443`, futureS, soc)))
	parts := strings.Split(good, ".")
	tampered, _ := fleetapi.SignTelemetryClaims(f.key, []byte(claims(`444`, futureS, soc)))
	forged := parts[0] + "." + strings.Split(tampered, ".")[1] + "." + parts[2]
	if _, err := owner.PushTelemetryConfig(ctx, forged, vinSync); apiError(t, err).Status != http.StatusBadRequest {
		t.Fatalf("forged token: %v", err)
	}
	// The same claims, signed right, are accepted.
	if _, err := owner.PushTelemetryConfig(ctx, good, vinSync); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestConfigureTelemetryValidates(t *testing.T) {
	f, owner := pushFixture(t)
	cfg := validConfig(t)
	cfg.Port = 0
	before := len(f.fake.Requests())
	_, err := owner.ConfigureTelemetry(context.Background(), f.key, cfg, vinSync)
	if !errors.Is(err, fleetapi.ErrInvalidConfig) {
		t.Fatalf("invalid config: %v", err)
	}
	if len(f.fake.Requests()) != before {
		t.Fatal("an invalid config was sent")
	}
}

func TestValidate(t *testing.T) {
	now := time.Now()
	delta := 0.5
	negative := -1.0
	nan := math.NaN()
	ca := testCA(t)
	cases := []struct {
		name   string
		modify func(*fleetapi.TelemetryConfig)
		keys   []string // config keys expected in the errors
	}{
		{"valid", func(*fleetapi.TelemetryConfig) {}, nil},
		{"no delivery policy or alerts", func(c *fleetapi.TelemetryConfig) { c.DeliveryPolicy = ""; c.AlertTypes = nil }, nil},
		{"empty hostname", func(c *fleetapi.TelemetryConfig) { c.Hostname = "" }, []string{"hostname"}},
		{"scheme", func(c *fleetapi.TelemetryConfig) { c.Hostname = "https://t.example.com" }, []string{"hostname"}},
		{"host with port", func(c *fleetapi.TelemetryConfig) { c.Hostname = "t.example.com:443" }, []string{"hostname"}},
		{"host with path", func(c *fleetapi.TelemetryConfig) { c.Hostname = "t.example.com/ws" }, []string{"hostname"}},
		{"ip", func(c *fleetapi.TelemetryConfig) { c.Hostname = "192.0.2.1" }, []string{"hostname"}},
		{"port 0", func(c *fleetapi.TelemetryConfig) { c.Port = 0 }, []string{"port"}},
		{"port too big", func(c *fleetapi.TelemetryConfig) { c.Port = 65536 }, []string{"port"}},
		{"no ca", func(c *fleetapi.TelemetryConfig) { c.CA = "" }, []string{"ca"}},
		{"ca escaped newlines", func(c *fleetapi.TelemetryConfig) { c.CA = strings.ReplaceAll(ca, "\n", `\n`) }, []string{"ca"}},
		{"ca not a certificate", func(c *fleetapi.TelemetryConfig) {
			c.CA = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		}, []string{"ca"}},
		{"ca garbage after", func(c *fleetapi.TelemetryConfig) { c.CA = ca + "junk" }, []string{"ca"}},
		{"exp past", func(c *fleetapi.TelemetryConfig) { c.Exp = now.Add(-time.Second).Unix() }, []string{"exp"}},
		{"exp millis", func(c *fleetapi.TelemetryConfig) { c.Exp = now.Add(time.Hour).UnixMilli() }, []string{"exp"}},
		{"no fields", func(c *fleetapi.TelemetryConfig) { c.Fields = nil }, []string{"fields"}},
		{"unknown field", func(c *fleetapi.TelemetryConfig) { c.Fields["Nope"] = fleetapi.FieldConfig{IntervalSeconds: 1} }, []string{"fields.Nope"}},
		{"zero interval", func(c *fleetapi.TelemetryConfig) { c.Fields["Odometer"] = fleetapi.FieldConfig{} }, []string{"fields.Odometer.interval_seconds"}},
		{"negative resend", func(c *fleetapi.TelemetryConfig) {
			c.Fields["Odometer"] = fleetapi.FieldConfig{IntervalSeconds: 1, ResendIntervalSeconds: -1}
		}, []string{"fields.Odometer.resend_interval_seconds"}},
		{"delta on enum", func(c *fleetapi.TelemetryConfig) {
			c.Fields["Gear"] = fleetapi.FieldConfig{IntervalSeconds: 1, MinimumDelta: &delta}
		}, []string{"fields.Gear.minimum_delta"}},
		{"delta on location", func(c *fleetapi.TelemetryConfig) {
			c.Fields["Location"] = fleetapi.FieldConfig{IntervalSeconds: 1, MinimumDelta: &delta}
		}, nil},
		{"negative delta", func(c *fleetapi.TelemetryConfig) {
			c.Fields["Soc"] = fleetapi.FieldConfig{IntervalSeconds: 1, MinimumDelta: &negative}
		}, []string{"fields.Soc.minimum_delta"}},
		{"NaN delta", func(c *fleetapi.TelemetryConfig) {
			c.Fields["Soc"] = fleetapi.FieldConfig{IntervalSeconds: 1, MinimumDelta: &nan}
		}, []string{"fields.Soc.minimum_delta"}},
		{"alert twice", func(c *fleetapi.TelemetryConfig) { c.AlertTypes = []string{"service", "service"} }, []string{"alert_types[1]"}},
		{"empty alert", func(c *fleetapi.TelemetryConfig) { c.AlertTypes = []string{" "} }, []string{"alert_types[0]"}},
		{"policy", func(c *fleetapi.TelemetryConfig) { c.DeliveryPolicy = "oldest" }, []string{"delivery_policy"}},
		{"several", func(c *fleetapi.TelemetryConfig) { c.Port = -1; c.Hostname = "" }, []string{"hostname", "port"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			tc.modify(&cfg)
			err := cfg.Validate(now)
			if len(tc.keys) == 0 {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if !errors.Is(err, fleetapi.ErrInvalidConfig) {
				t.Fatalf("error %v does not match ErrInvalidConfig", err)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *fleetapi.ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *ConfigError", e)
				}
				got = append(got, ce.Key)
			}
			if !reflect.DeepEqual(got, tc.keys) {
				t.Fatalf("problems at %v, want %v (%v)", got, tc.keys, err)
			}
			if ex := fleetapi.Explain(err); !strings.Contains(ex, tc.keys[0]) {
				t.Errorf("explain %q does not name %s", ex, tc.keys[0])
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	delta := 1.0
	cfg := fleetapi.TelemetryConfig{
		Hostname: "t.example.com", Port: 443, Exp: 1,
		Fields: map[string]fleetapi.FieldConfig{"Soc": {IntervalSeconds: 60, MinimumDelta: &delta}, "Gear": {IntervalSeconds: 1}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hostname":"t.example.com","port":443,"exp":1,"fields":{"Gear":{"interval_seconds":1},"Soc":{"interval_seconds":60,"minimum_delta":1}}}`
	if string(b) != want {
		t.Fatalf("json\n got %s\nwant %s", b, want)
	}
}

func TestEstimateMonthlySignals(t *testing.T) {
	cases := []struct {
		name    string
		fields  map[string]fleetapi.FieldConfig
		signals int64
	}{
		{"none", nil, 0},
		{"one per minute", map[string]fleetapi.FieldConfig{"Soc": {IntervalSeconds: 60}}, 1440 * 30},
		{"one per second", map[string]fleetapi.FieldConfig{"Gear": {IntervalSeconds: 1}}, 86400 * 30},
		{"zero counts as one second", map[string]fleetapi.FieldConfig{"Gear": {}}, 86400 * 30},
		{"rounded up", map[string]fleetapi.FieldConfig{"Soc": {IntervalSeconds: 7}}, 12343 * 30},
		{"sum", map[string]fleetapi.FieldConfig{"Soc": {IntervalSeconds: 60}, "Gear": {IntervalSeconds: 3600, ResendIntervalSeconds: 60}}, (1440 + 24) * 30},
	}
	for _, tc := range cases {
		signals, dollars := fleetapi.EstimateMonthlySignals(tc.fields)
		if signals != tc.signals {
			t.Errorf("%s: %d signals, want %d", tc.name, signals, tc.signals)
		}
		if want := float64(tc.signals) / fleetapi.SignalsPerDollar; math.Abs(dollars-want) > 1e-9 {
			t.Errorf("%s: $%v, want $%v", tc.name, dollars, want)
		}
	}
	// One field every second costs $17.28 a month: above the credit.
	_, d := fleetapi.EstimateMonthlySignals(map[string]fleetapi.FieldConfig{"Gear": {IntervalSeconds: 1}})
	if d != 17.28 || d <= fleetapi.MonthlyCreditDollars {
		t.Errorf("one field per second: $%v", d)
	}
}

func TestHelpers(t *testing.T) {
	if got := fleetapi.PairingURL("example.com", "5YJ 3"); got != "https://tesla.com/_ak/example.com?vin=5YJ+3" {
		t.Errorf("pairing url %s", got)
	}
	if got := fleetapi.PairingURL("example.com", ""); got != "https://tesla.com/_ak/example.com" {
		t.Errorf("pairing url %s", got)
	}
	now := time.Unix(1_700_000_000, 0)
	if fleetapi.NeedsRepush(now.Add(fleetapi.ConfigLifetime).Unix(), now) {
		t.Error("fresh config needs a repush")
	}
	if !fleetapi.NeedsRepush(now.Add(fleetapi.RepushMargin-time.Hour).Unix(), now) {
		t.Error("config expiring within the margin does not need a repush")
	}
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"2024.44.32", "2024.44.32", true},
		{"2024.44.32.1 abcdef", "2024.44.32", true},
		{"2024.44.25.3", "2024.44.32", false},
		{"2025.2.6", "2024.44.32", true},
		{"2024.45", "2024.44.32", true},
		{"", "2024.44.32", false},
		{"develop", "2024.44.32", false},
	} {
		if got := fleetapi.FirmwareAtLeast(tc.v, tc.min); got != tc.want {
			t.Errorf("FirmwareAtLeast(%q, %q) = %v", tc.v, tc.min, got)
		}
	}
	for _, r := range []string{"na", "EU", " cn "} {
		if _, err := fleetapi.ParseRegion(r); err != nil {
			t.Errorf("ParseRegion(%q): %v", r, err)
		}
	}
	if _, err := fleetapi.ParseRegion("us"); err == nil {
		t.Error("ParseRegion(us) accepted")
	}
}
