package fleetapitest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// These tests talk raw HTTP to the fake, to check that it refuses what
// Tesla refuses; the client's own tests show it accepts what Tesla accepts.

const callback = "https://app.example.com/callback"

func newFake(t *testing.T) *Server {
	t.Helper()
	s := New(Options{RedirectURIs: []string{callback}, Vehicles: []Vehicle{{VIN: "VIN1", Paired: true}}, Logf: t.Logf})
	t.Cleanup(s.Close)
	return s
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func (a answer) errorText() string {
	e, _ := a.body["error"].(string)
	d, _ := a.body["error_description"].(string)
	return e + " " + d
}

func do(t *testing.T, method, target, contentType, body, bearer string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func form(t *testing.T, s *Server, v url.Values) answer {
	t.Helper()
	return do(t, http.MethodPost, s.Endpoints().TokenURL, "application/x-www-form-urlencoded", v.Encode(), "")
}

func partnerTokenFor(t *testing.T, s *Server, region fleetapi.Region) string {
	t.Helper()
	a := form(t, s, url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
		"audience": {s.BaseURL(region)}, "scope": {"openid vehicle_device_data"}})
	if a.status != http.StatusOK {
		t.Fatalf("partner token: %d %v", a.status, a.body)
	}
	return a.body["access_token"].(string)
}

// ownerLogin returns a code for the given scopes.
func ownerCode(t *testing.T, s *Server, scope string) string {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {s.ClientID()}, "redirect_uri": {callback}, "scope": {scope}, "state": {"st"}, "nonce": {"n"}}
	cb, err := s.Login(context.Background(), s.Endpoints().AuthorizeURL+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if cb.Query().Get("state") != "st" || cb.Query().Get("code") == "" {
		t.Fatalf("callback %s", cb)
	}
	return cb.Query().Get("code")
}

func exchangeForm(s *Server, code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
		"code": {code}, "audience": {s.BaseURL(fleetapi.RegionNA)}, "redirect_uri": {callback}}
}

func ownerTokens(t *testing.T, s *Server, scope string) (access, refresh string) {
	t.Helper()
	a := form(t, s, exchangeForm(s, ownerCode(t, s, scope)))
	if a.status != http.StatusOK {
		t.Fatalf("exchange: %d %v", a.status, a.body)
	}
	access, _ = a.body["access_token"].(string)
	refresh, _ = a.body["refresh_token"].(string)
	return access, refresh
}

func TestTokenEndpointStrict(t *testing.T) {
	s := newFake(t)
	code := ownerCode(t, s, "openid offline_access vehicle_device_data")
	with := func(v url.Values, k, val string) url.Values {
		c := url.Values{}
		for kk, vv := range v {
			c[kk] = vv
		}
		if val == "" {
			c.Del(k)
		} else {
			c.Set(k, val)
		}
		return c
	}
	good := exchangeForm(s, code)
	cases := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"unknown grant", with(good, "grant_type", "password"), 400, "unsupported_grant_type"},
		{"no audience", with(good, "audience", ""), 400, "missing audience"},
		{"foreign audience", with(good, "audience", "https://example.com"), 400, "audience"},
		{"no redirect_uri", with(good, "redirect_uri", ""), 400, "missing redirect_uri"},
		{"extra field", with(good, "code_verifier", "x"), 400, "unexpected parameter code_verifier"},
		{"wrong secret", with(good, "client_secret", "nope"), 401, "invalid_client"},
		{"wrong client", with(good, "client_id", "nope"), 401, "invalid_client"},
		{"other redirect_uri", with(good, "redirect_uri", "https://app.example.com/other"), 400, "redirect_uri"},
		{"unknown code", with(good, "code", "nope"), 400, "invalid_grant"},
	}
	for _, tc := range cases {
		a := form(t, s, tc.form)
		if a.status != tc.status || !strings.Contains(a.errorText(), tc.want) {
			t.Errorf("%s: %d %v, want %d %q", tc.name, a.status, a.body, tc.status, tc.want)
		}
	}
	// The failures above did not spend the code; the good form works once.
	if a := form(t, s, good); a.status != http.StatusOK || a.body["id_token"] == nil || a.body["refresh_token"] == nil || a.body["expires_in"] != float64(28800) {
		t.Fatalf("good exchange: %d %v", a.status, a.body)
	}
	if a := form(t, s, good); a.status != 400 || !strings.Contains(a.errorText(), "already used") {
		t.Fatalf("code reuse: %d %v", a.status, a.body)
	}
	// Not form encoded, or in the query.
	if a := do(t, http.MethodPost, s.Endpoints().TokenURL, "application/json", `{"grant_type":"client_credentials"}`, ""); a.status != 400 {
		t.Errorf("json token request: %d", a.status)
	}
	if a := do(t, http.MethodPost, s.Endpoints().TokenURL+"?grant_type=client_credentials", "application/x-www-form-urlencoded", "", ""); a.status != 400 {
		t.Errorf("query token request: %d", a.status)
	}
	if a := do(t, http.MethodGet, s.Endpoints().TokenURL, "", "", ""); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET token: %d", a.status)
	}
}

func TestRefreshRotation(t *testing.T) {
	s := newFake(t)
	_, refresh := ownerTokens(t, s, "openid offline_access vehicle_device_data")
	rf := url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "refresh_token": {refresh}}

	withSecret := url.Values{"client_secret": {s.ClientSecret()}}
	for k, v := range rf {
		withSecret[k] = v
	}
	if a := form(t, s, withSecret); a.status != 400 || !strings.Contains(a.errorText(), "no client_secret") {
		t.Fatalf("refresh with secret: %d %v", a.status, a.body)
	}
	a := form(t, s, rf)
	if a.status != http.StatusOK || a.body["refresh_token"] == refresh || a.body["refresh_token"] == nil {
		t.Fatalf("refresh: %d %v", a.status, a.body)
	}
	if a := form(t, s, rf); a.status != 401 || a.body["error"] != "login_required" {
		t.Fatalf("refresh reuse: %d %v", a.status, a.body)
	}
	next := url.Values{"grant_type": {"refresh_token"}, "client_id": {s.ClientID()}, "refresh_token": {a.body["refresh_token"].(string)}}
	s.RevokeGrant()
	if a := form(t, s, next); a.status != 401 || a.body["error"] != "login_required" {
		t.Fatalf("refresh after revoke: %d %v", a.status, a.body)
	}

	// No offline_access, no refresh token.
	if _, refresh := ownerTokens(t, s, "openid vehicle_device_data"); refresh != "" {
		t.Fatal("refresh token without offline_access")
	}
}

func TestAuthorizeStrict(t *testing.T) {
	s := newFake(t)
	base := url.Values{"response_type": {"code"}, "client_id": {s.ClientID()}, "redirect_uri": {callback}, "scope": {"openid"}, "state": {"st"}}
	with := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range base {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return s.Endpoints().AuthorizeURL + "?" + q.Encode()
	}
	// Refused on the page itself (no safe place to send the browser).
	for name, u := range map[string]string{
		"unknown client":   with("client_id", "x"),
		"unknown redirect": with("redirect_uri", "https://evil.example/cb"),
		"unknown param":    with("access_type", "offline"),
	} {
		if _, err := s.Login(context.Background(), u); err == nil {
			t.Errorf("%s: redirected", name)
		}
	}
	// Sent back with an error.
	for name, tc := range map[string]struct{ url, want string }{
		"no state":      {with("state", ""), "invalid_request"},
		"bad scope":     {with("scope", "openid everything"), "invalid_scope"},
		"token flow":    {with("response_type", "token"), "unsupported_response_type"},
		"bad flag":      {with("show_keypair_step", "yes"), "invalid_request"},
		"missing scope": {with("scope", ""), "invalid_scope"},
	} {
		cb, err := s.Login(context.Background(), tc.url)
		if err != nil || cb.Query().Get("error") != tc.want || cb.Query().Get("code") != "" {
			t.Errorf("%s: %v %v", name, cb, err)
		}
	}
	s.DenyLogin(true)
	if cb, err := s.Login(context.Background(), with("", "")); err != nil || cb.Query().Get("error") != "access_denied" {
		t.Errorf("denied: %v %v", cb, err)
	}
}

func TestBearerChecks(t *testing.T) {
	s := newFake(t)
	key, _ := fleetapi.GenerateKey()
	s.Register(fleetapi.RegionNA, "app.example.com", &key.PublicKey)
	partnerNA := partnerTokenFor(t, s, fleetapi.RegionNA)
	partnerCN := partnerTokenFor(t, s, fleetapi.RegionCN)
	owner, _ := ownerTokens(t, s, "openid offline_access vehicle_device_data")
	ownerNoData, _ := ownerTokens(t, s, "openid offline_access")
	na := s.BaseURL(fleetapi.RegionNA)

	cases := []struct {
		name, method, path, bearer string
		status                     int
	}{
		{"no token", "GET", "/api/1/vehicles", "", 401},
		{"unknown token", "GET", "/api/1/vehicles", "x.y.z", 401},
		{"partner on owner endpoint", "GET", "/api/1/vehicles", partnerNA, 401},
		{"owner on partner endpoint", "GET", "/api/1/partner_accounts/fleet_telemetry_errors", owner, 401},
		{"cn partner token in na", "GET", "/api/1/partner_accounts/fleet_telemetry_errors", partnerCN, 401},
		{"missing scope", "GET", "/api/1/vehicles", ownerNoData, 403},
		{"owner ok", "GET", "/api/1/vehicles", owner, 200},
		{"partner ok", "GET", "/api/1/partner_accounts/fleet_telemetry_errors", partnerNA, 200},
		{"unsigned config", "POST", "/api/1/vehicles/fleet_telemetry_config", owner, 412},
		{"wrong method", "PUT", "/api/1/vehicles", owner, 405},
		{"unknown path", "GET", "/api/1/nothing", owner, 404},
		{"unknown query", "GET", "/api/1/vehicles?color=red", owner, 400},
		{"bad page", "GET", "/api/1/vehicles?page=0", owner, 400},
	}
	for _, tc := range cases {
		if a := do(t, tc.method, na+tc.path, "", "", tc.bearer); a.status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.name, a.status, a.body, tc.status)
		}
	}
	s.ExpireAccessTokens()
	if a := do(t, "GET", na+"/api/1/vehicles", "", "", owner); a.status != 401 || !strings.Contains(a.errorText(), "expired") {
		t.Errorf("expired: %d %v", a.status, a.body)
	}
}

func TestJSONBodiesStrict(t *testing.T) {
	s := newFake(t)
	key, _ := fleetapi.GenerateKey()
	s.Register(fleetapi.RegionNA, "app.example.com", &key.PublicKey)
	owner, _ := ownerTokens(t, s, "openid vehicle_device_data")
	partner := partnerTokenFor(t, s, fleetapi.RegionNA)
	na := s.BaseURL(fleetapi.RegionNA)
	cases := []struct {
		name, path, ct, body, bearer string
		status                       int
	}{
		{"ok", "/api/1/vehicles/fleet_status", "application/json", `{"vins":["VIN1"]}`, owner, 200},
		{"charset ok", "/api/1/vehicles/fleet_status", "application/json; charset=utf-8", `{"vins":["VIN1"]}`, owner, 200},
		{"no content type", "/api/1/vehicles/fleet_status", "", `{"vins":["VIN1"]}`, owner, 400},
		{"form", "/api/1/vehicles/fleet_status", "application/x-www-form-urlencoded", `vins=VIN1`, owner, 400},
		{"unknown field", "/api/1/vehicles/fleet_status", "application/json", `{"vins":["VIN1"],"all":true}`, owner, 400},
		{"trailing data", "/api/1/vehicles/fleet_status", "application/json", `{"vins":["VIN1"]}{}`, owner, 400},
		{"wrong type", "/api/1/vehicles/fleet_status", "application/json", `{"vins":"VIN1"}`, owner, 400},
		{"no vins", "/api/1/vehicles/fleet_status", "application/json", `{"vins":[]}`, owner, 400},
		{"push without token", "/api/1/vehicles/fleet_telemetry_config_jws", "application/json", `{"vins":["VIN1"]}`, owner, 400},
		{"push with config", "/api/1/vehicles/fleet_telemetry_config_jws", "application/json", `{"vins":["VIN1"],"token":"a.b.c","config":{}}`, owner, 400},
		{"push garbage token", "/api/1/vehicles/fleet_telemetry_config_jws", "application/json", `{"vins":["VIN1"],"token":"a.b.c"}`, owner, 400},
		{"register extra", "/api/1/partner_accounts", "application/json", `{"domain":"app.example.com","name":"x"}`, partner, 400},
		{"register url", "/api/1/partner_accounts", "application/json", `{"domain":"https://app.example.com"}`, partner, 400},
	}
	for _, tc := range cases {
		if a := do(t, "POST", na+tc.path, tc.ct, tc.body, tc.bearer); a.status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.name, a.status, a.body, tc.status)
		}
	}
}

func TestRegisterKeyChecks(t *testing.T) {
	keySrv := map[string]string{}
	srv := newKeyServer(t, keySrv)
	s := New(Options{PublicKeyURL: func(d string) string { return srv + "/" + d }})
	t.Cleanup(s.Close)
	partner := partnerTokenFor(t, s, fleetapi.RegionEU)
	eu := s.BaseURL(fleetapi.RegionEU)
	register := func(domain string) answer {
		return do(t, "POST", eu+"/api/1/partner_accounts", "application/json", `{"domain":"`+domain+`"}`, partner)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	keySrv["rsa.example.com"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}))
	if a := register("rsa.example.com"); a.status != http.StatusFailedDependency {
		t.Errorf("rsa key: %d %v", a.status, a.body)
	}
	if a := register("missing.example.com"); a.status != http.StatusFailedDependency || !strings.Contains(a.errorText(), "Public key download failed") {
		t.Errorf("missing key: %d %v", a.status, a.body)
	}
	key, _ := fleetapi.GenerateKey()
	pemKey, _ := fleetapi.MarshalPublicKeyPEM(&key.PublicKey)
	keySrv["good.example.com"] = string(pemKey)
	if a := register("good.example.com"); a.status != http.StatusOK {
		t.Fatalf("good key: %d %v", a.status, a.body)
	}
	if s.Registered(fleetapi.RegionEU) != "good.example.com" || s.Registered(fleetapi.RegionNA) != "" {
		t.Fatal("registration not per region")
	}
	// An injected key needs no download.
	other, _ := fleetapi.GenerateKey()
	s.SetPublicKey("injected.example.com", &other.PublicKey)
	if a := register("injected.example.com"); a.status != http.StatusOK {
		t.Fatalf("injected key: %d %v", a.status, a.body)
	}
	hexKey, _ := fleetapi.PublicKeyHex(&other.PublicKey)
	a := do(t, "GET", eu+"/api/1/partner_accounts/public_key?domain=injected.example.com", "", "", partner)
	if a.status != 200 || a.body["response"].(map[string]any)["public_key"] != hexKey {
		t.Fatalf("public key: %d %v", a.status, a.body)
	}
}

func newKeyServer(t *testing.T, keys map[string]string) string {
	t.Helper()
	srv := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := keys[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, k)
	}))
	return srv
}

func TestFailures(t *testing.T) {
	s := newFake(t)
	na := s.BaseURL(fleetapi.RegionNA)
	s.Fail(Failure{Method: "GET", Path: "/api/1/users/region", Status: 503, Times: 2})
	s.Fail(Failure{Path: "/api/1/vehicles", Region: fleetapi.RegionEU, Status: 500, Times: -1})
	s.Fail(Failure{Path: "/api/1/partner_accounts/public_key", Status: 429})
	for range 2 {
		if a := do(t, "GET", na+"/api/1/users/region", "", "", ""); a.status != 503 || a.body["error"] != "service_unavailable" {
			t.Fatalf("injected 503: %d %v", a.status, a.body)
		}
	}
	if a := do(t, "GET", na+"/api/1/users/region", "", "", ""); a.status != 401 {
		t.Fatalf("after two failures: %d", a.status)
	}
	for range 3 {
		if a := do(t, "GET", s.BaseURL(fleetapi.RegionEU)+"/api/1/vehicles", "", "", ""); a.status != 500 {
			t.Fatalf("permanent failure: %d", a.status)
		}
	}
	if a := do(t, "GET", na+"/api/1/vehicles", "", "", ""); a.status != 401 {
		t.Fatalf("failure leaked to another region: %d", a.status)
	}
	a := do(t, "GET", na+"/api/1/partner_accounts/public_key", "", "", "")
	if a.status != 429 || a.header.Get("Retry-After") != "30" || a.header.Get("RateLimit-Limit") != "60" {
		t.Fatalf("429: %d %v", a.status, a.header)
	}
	reqs := s.Requests()
	if len(reqs) != 8 || reqs[0].Status != 503 || reqs[0].Region != fleetapi.RegionNA {
		t.Fatalf("request log %+v", reqs)
	}
}

func httpServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestKnobs(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	// Redirect URIs can be set after start.
	q := url.Values{"response_type": {"code"}, "client_id": {s.ClientID()}, "redirect_uri": {"https://late.example.com/cb"}, "scope": {"openid vehicle_device_data"}, "state": {"s"}}
	if _, err := s.Login(context.Background(), s.Endpoints().AuthorizeURL+"?"+q.Encode()); err == nil {
		t.Fatal("unregistered redirect accepted")
	}
	s.SetRedirectURIs("https://late.example.com/cb")
	cb, err := s.Login(context.Background(), s.Endpoints().AuthorizeURL+"?"+q.Encode())
	if err != nil || cb.Host != "late.example.com" {
		t.Fatalf("login after SetRedirectURIs: %v %v", cb, err)
	}

	// Cars can be added and changed.
	s.AddVehicle(Vehicle{VIN: "VIN9"})
	if !s.UpdateVehicle("VIN9", func(v *Vehicle) { v.PairAfterPolls = 1; v.DisplayName = "Blue" }) {
		t.Fatal("UpdateVehicle did not find the car")
	}
	if s.UpdateVehicle("NONE", func(*Vehicle) {}) {
		t.Fatal("UpdateVehicle found a car that does not exist")
	}
	key, _ := fleetapi.GenerateKey()
	s.Register(fleetapi.RegionNA, "app.example.com", &key.PublicKey)
	a := form(t, s, url.Values{"grant_type": {"authorization_code"}, "client_id": {s.ClientID()}, "client_secret": {s.ClientSecret()},
		"code": {cb.Query().Get("code")}, "audience": {s.BaseURL(fleetapi.RegionNA)}, "redirect_uri": {"https://late.example.com/cb"}})
	owner, _ := a.body["access_token"].(string)
	na := s.BaseURL(fleetapi.RegionNA)
	var states []any
	for range 2 {
		a := do(t, "POST", na+"/api/1/vehicles/fleet_status", "application/json", `{"vins":["VIN9"]}`, owner)
		states = append(states, a.body["response"].(map[string]any)["key_paired_vins"])
	}
	if fmt.Sprint(states) != "[[] [VIN9]]" {
		t.Fatalf("pairing over polls %v", states)
	}
	a = do(t, "GET", na+"/api/1/vehicles", "", "", owner)
	list := a.body["response"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["display_name"] != "Blue" || a.body["count"] != float64(1) {
		t.Fatalf("vehicles %v", a.body)
	}
}
