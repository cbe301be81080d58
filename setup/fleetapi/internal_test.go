package fleetapi

import (
	"net/http"
	"testing"
	"time"
)

func TestRegionURLFrom(t *testing.T) {
	cases := []struct {
		text   string
		altSvc []string
		want   string
	}{
		{"user out of region, use base URL: https://fleet-api.prd.eu.vn.cloud.tesla.com", nil, BaseURLEU},
		{`{"error":"use base URL: https://fleet-api.prd.eu.vn.cloud.tesla.com/"}`, nil, BaseURLEU},
		{"misdirected", []string{"h2=https://fleet-api.prd.eu.vn.cloud.tesla.com"}, BaseURLEU},
		{"misdirected", []string{`h2="fleet-api.prd.eu.vn.cloud.tesla.com:443"; ma=60`}, BaseURLEU},
		{"misdirected", []string{`h3=":443", h2="fleet-api.prd.eu.vn.cloud.tesla.com"`}, BaseURLEU},
		{"misdirected", []string{`h2=":443"`}, ""},
		{"misdirected", nil, ""},
	}
	for _, tc := range cases {
		h := http.Header{}
		for _, v := range tc.altSvc {
			h.Add("Alt-Svc", v)
		}
		if got := regionURLFrom(tc.text, h); got != tc.want {
			t.Errorf("regionURLFrom(%q, %v) = %q, want %q", tc.text, tc.altSvc, got, tc.want)
		}
	}
	ep := DefaultEndpoints()
	if r, ok := ep.RegionOf(BaseURLEU + "/"); !ok || r != RegionEU {
		t.Errorf("RegionOf eu: %v %v", r, ok)
	}
	if _, ok := ep.RegionOf("https://evil.example.com"); ok {
		t.Error("RegionOf accepted an unknown host")
	}
	if _, ok := ep.RegionOf("http://" + BaseURLEU[len("https://"):]); ok {
		t.Error("RegionOf ignores the scheme")
	}
}

func TestParseRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{}
	if parseRateLimit(h, now) != nil {
		t.Fatal("rate limit without headers")
	}
	h.Set("RateLimit-Limit", "60")
	h.Set("RateLimit-Remaining", "0")
	h.Set("RateLimit-Reset", "42")
	rl := parseRateLimit(h, now)
	if rl.Limit != 60 || rl.Remaining != 0 || rl.Reset != 42*time.Second || rl.RetryAfter != 0 || rl.Wait() != 42*time.Second {
		t.Fatalf("%+v", rl)
	}
	h = http.Header{}
	h.Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
	rl = parseRateLimit(h, now)
	if rl.Limit != -1 || rl.RetryAfter != 90*time.Second {
		t.Fatalf("http-date retry-after: %+v", rl)
	}
	h.Set("Retry-After", "soon")
	h.Set("RateLimit-Limit", "30;w=60")
	rl = parseRateLimit(h, now)
	if rl.Limit != 30 || rl.RetryAfter != 0 {
		t.Fatalf("structured limit: %+v", rl)
	}
	var nilRL *RateLimit
	if nilRL.Wait() != 0 {
		t.Fatal("nil rate limit waits")
	}
}

func TestAPIErrorMessage(t *testing.T) {
	e := &APIError{Status: 412, Code: "Account must be registered in the current region", Endpoint: "GET /api/1/vehicles", Region: RegionEU}
	want := "tesla: GET /api/1/vehicles: 412 Precondition Failed: Account must be registered in the current region"
	if e.Error() != want {
		t.Fatalf("%q", e.Error())
	}
	if got := e.Explain(); got != "Your application is not registered with Tesla in this region (Europe, Middle East and Africa). Run the partner registration step again for it." {
		t.Fatalf("explain %q", got)
	}
}

func TestCheckNonce(t *testing.T) {
	for _, tok := range []string{"", "a.b", "a.!!.c", "a.bm90IGpzb24.c", "a.eyJub25jZSI6Im90aGVyIn0.c"} {
		if err := checkNonce(tok, "want"); err == nil {
			t.Errorf("checkNonce(%q) accepted", tok)
		}
	}
	if err := checkNonce("a.eyJub25jZSI6IndhbnQifQ.c", "want"); err != nil {
		t.Fatal(err)
	}
}
