package setup

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// TestWizardHappyPath walks every step with the handlers against the
// strict fake, checking what each page says and what reaches Tesla.
func TestWizardHappyPath(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()

	// Step 1 shows what to enter at Tesla: the redirect URI follows the
	// public hostname.
	r := h.get("/app")
	h.expectPage(r, http.StatusOK, "Authorization Code and Machine-to-Machine", "https://&lt;your hostname&gt;/oauth/callback", `name="csrf"`)
	// A later step is not open yet.
	h.expectRedirect(h.get("/push"), "app")
	h.doApp()
	h.expectPage(h.get("/app"), http.StatusOK, "https://"+testHost, testRedirect, "Tesla accepts these credentials", "stored (hidden)")

	// Step 2: the key does not exist until created; then it is served.
	h.expectPage(h.get("/key"), http.StatusOK, "Create the key pair")
	if resp, err := h.vehicle.Client().Get(h.vehicle.URL + fleetapi.PublicKeyPath); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public key before creation: %v %v", resp.StatusCode, err)
	}
	h.doKey()
	resp, err := h.vehicle.Client().Get(h.vehicle.URL + fleetapi.PublicKeyPath)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("public key: %v %v", resp, err)
	}
	resp.Body.Close()

	// Step 3: both default regions registered and verified.
	h.expectPage(h.get("/register"), http.StatusOK, "North America", "Europe")
	h.doRegister()
	for _, region := range []fleetapi.Region{fleetapi.RegionNA, fleetapi.RegionEU} {
		if got := h.fake.Registered(region); got != testHost {
			t.Errorf("registered in %s: %q", region, got)
		}
	}
	if got := h.fake.Registered(fleetapi.RegionCN); got != "" {
		t.Errorf("registered in cn without being asked: %q", got)
	}
	h.expectPage(h.get("/register"), http.StatusOK, "registered, key verified")

	// Step 4: owner login.
	h.expectPage(h.get("/owner"), http.StatusOK, "Log in with Tesla")
	h.doOwner()
	h.expectPage(h.get("/owner"), http.StatusOK, "Logged in with Tesla", "North America")

	// Steps 5 and 6: the car, then pairing with link and QR code.
	h.doVehicles()
	r = h.get("/pairing")
	h.expectPage(r, http.StatusOK, "https://tesla.com/_ak/"+testHost+"?vin="+testVIN, "<svg", "QR code of the pairing link for Red Rocket")
	h.doPairing()
	h.expectPage(h.get("/pairing"), http.StatusOK, "Paired: the car holds fleet2mqtt")

	// Step 7: presets and the estimate.
	r = h.get("/fields")
	h.expectPage(r, http.StatusOK, "Home Assistant essentials", "Charging", "Driving", "Everything", "monthly credit", `name="delta.Soc"`)
	h.doFields(nil)

	// Step 8: the signed push.
	h.expectPage(h.get("/push"), http.StatusOK, testHost+":443", "Sign and send", "valid until")
	h.doPush()
	checkPushedConfig(t, h, testVIN)

	// Step 9: the config syncs (after one pending answer), then the
	// first record shows up.
	r = h.get("/verify")
	h.expectPage(r, http.StatusOK, "Waiting for the first record")
	h.waitActive(testVIN)
	h.w.RecordSeen(testVIN, time.Now())
	r = h.getJSON("/verify-status")
	if !strings.Contains(r.body, `"done":true`) || !strings.Contains(r.body, "First record arrived at") {
		t.Fatalf("first record not reported: %s", r.body)
	}
	// Everything done: the index leads to the verification page.
	h.expectRedirect(h.get("/"), "verify")

	// Home Assistant discovery heard of the car's name and of the signals
	// it now streams.
	h.hookMu.Lock()
	if h.names[testVIN] != "Red Rocket" || !slices.Contains(h.streaming[testVIN], "Soc") || !slices.Contains(h.streaming[testVIN], "Gear") {
		t.Errorf("hooks told name %q and fields %v", h.names[testVIN], h.streaming[testVIN])
	}
	h.hookMu.Unlock()

	// The state files hold secrets: mode 0600 in a 0700 directory, and
	// the client secret never reaches the log.
	checkModes(t, filepath.Join(h.dir, "setup"))
	if strings.Contains(h.logs.String(), h.fake.ClientSecret()) {
		t.Error("the client secret reached the log")
	}
	if strings.Contains(h.get("/app").body, h.fake.ClientSecret()) {
		t.Error("the client secret is shown on the page")
	}
}

// checkPushedConfig verifies the claims the fake received (it has
// verified the signature with the registered key already).
func checkPushedConfig(t *testing.T, h *harness, vin string) {
	t.Helper()
	raw := h.fake.PushedConfig(vin)
	if raw == nil {
		t.Fatal("nothing pushed")
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if string(claims["port"]) != "443" {
		t.Errorf("port %s, want the integer 443", claims["port"])
	}
	var host, ca, policy, aud string
	json.Unmarshal(claims["hostname"], &host)
	json.Unmarshal(claims["ca"], &ca)
	json.Unmarshal(claims["delivery_policy"], &policy)
	json.Unmarshal(claims["aud"], &aud)
	if host != testHost || ca != string(h.ca) || policy != "latest" || aud != fleetapi.TelemetryAudience {
		t.Errorf("hostname %q, delivery_policy %q, aud %q, ca matches %v", host, policy, aud, ca == string(h.ca))
	}
	var exp int64
	json.Unmarshal(claims["exp"], &exp)
	if d := time.Until(time.Unix(exp, 0)); d < 360*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("exp is %v ahead, want about a year", d)
	}
	if string(claims["alert_types"]) != `["service"]` {
		t.Errorf("alert_types %s", claims["alert_types"])
	}
	var fields map[string]map[string]any
	json.Unmarshal(claims["fields"], &fields)
	if fields["Soc"]["minimum_delta"] != 1.0 || fields["Soc"]["interval_seconds"] != 60.0 || fields["Gear"] == nil || fields["Location"] == nil {
		t.Errorf("fields %v", fields)
	}
	if _, ok := fields["Gear"]["minimum_delta"]; ok {
		t.Error("Gear (an enum) got a minimum delta")
	}
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("setup directory mode %v (%v), want 0700", info.Mode().Perm(), err)
	}
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		if fi, err := d.Info(); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		return nil
	})
	if n < 3 {
		t.Errorf("only %d files in %s", n, dir)
	}
}

// TestStateSurvivesRestart: a new Wizard on the same data directory picks
// up where the last one stopped, tokens and key included.
func TestStateSurvivesRestart(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	h.doFields(nil)

	w2, err := New(Config{Password: testPassword}, h.dir, h.w.flow.deps, nil, WithTiming(h.w.flow.timing))
	if err != nil {
		t.Fatal(err)
	}
	open := w2.flow.openStep()
	if open != stepPush {
		t.Errorf("after a restart the first open step is %s, want push", steps[open].path)
	}
	// The stored owner token still works (a vehicle call through it).
	owner, err := w2.flow.owner()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Vehicles(t.Context()); err != nil {
		t.Errorf("stored owner session: %v", err)
	}
}

// TestStepFailures makes the fake fail at each step and checks that the
// page says what went wrong and what to do.
func TestStepFailures(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(h *harness) // steps before the failing one
		fail    fleetapitest.Failure
		act     func(h *harness) response
		status  int
		want    string
	}{
		{
			name:    "wrong client secret",
			prepare: func(h *harness) { h.login(); h.get("/app") },
			act: func(h *harness) response {
				return h.post("/app", url.Values{"host": {testHost},
					"client_id": {h.fake.ClientID()}, "client_secret": {"wrong"}})
			},
			status: http.StatusBadGateway,
			want:   "did not accept the client ID or client secret",
		},
		{
			name:    "token endpoint down",
			prepare: func(h *harness) { h.login(); h.get("/app") },
			fail:    fleetapitest.Failure{Path: "/oauth2/v3/token", Status: 503},
			act:     func(h *harness) response { return h.post("/app", appForm(h)) },
			status:  http.StatusBadGateway,
			want:    "Tesla&#39;s servers had a problem (503)",
		},
		{
			name:    "registration refused 412",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey() },
			fail: fleetapitest.Failure{Method: http.MethodPost, Path: "/api/1/partner_accounts", Region: fleetapi.RegionEU,
				Status: http.StatusPreconditionFailed, Description: "not registered"},
			act:    func(h *harness) response { return h.post("/register", url.Values{"region": {"na", "eu"}}) },
			status: http.StatusBadGateway,
			want:   "not registered with Tesla in this region (Europe",
		},
		{
			name:    "vehicles rate limited 429",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey(); h.doRegister(); h.doOwner() },
			fail:    fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusTooManyRequests},
			act:     func(h *harness) response { return h.get("/vehicles") },
			status:  http.StatusBadGateway,
			want:    "Tesla is limiting how often we may ask. Wait 30s",
		},
		{
			name: "fleet_status server error",
			prepare: func(h *harness) {
				h.login()
				h.doApp()
				h.doKey()
				h.doRegister()
				h.doOwner()
				h.doVehicles()
			},
			fail:   fleetapitest.Failure{Path: "/api/1/vehicles/fleet_status", Status: http.StatusInternalServerError},
			act:    func(h *harness) response { return h.get("/pairing") },
			status: http.StatusBadGateway,
			want:   "Tesla&#39;s servers had a problem (500)",
		},
		{
			name:    "malformed push answer",
			prepare: func(h *harness) { h.throughPairing(); h.doFields(nil) },
			fail:    fleetapitest.Failure{Path: "/api/1/vehicles/fleet_telemetry_config_jws", Status: http.StatusOK, Body: "<html>oops</html>"},
			act:     func(h *harness) response { return h.post("/push", nil) },
			status:  http.StatusBadGateway,
			want:    "Tesla answered with something fleet2mqtt could not read",
		},
		{
			name:    "grant gone",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey(); h.doRegister(); h.doOwner() },
			act: func(h *harness) response {
				h.fake.RevokeGrant()
				h.fake.ExpireAccessTokens()
				return h.get("/vehicles")
			},
			status: http.StatusBadGateway,
			want:   "Tesla no longer accepts this login",
		},
		{
			name:    "access denied at login",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey(); h.doRegister() },
			act:     func(h *harness) response { h.fake.DenyLogin(true); return h.ownerLogin() },
			status:  http.StatusBadRequest,
			want:    "Access was not granted on Tesla&#39;s page",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			tc.prepare(h)
			if tc.fail.Status != 0 {
				h.fake.Fail(tc.fail)
			}
			h.expectPage(tc.act(h), tc.status, tc.want, `class="problem"`)
		})
	}
}

// appForm is step 1's form as a user fills it in.
func appForm(h *harness) url.Values {
	return url.Values{"host": {testHost},
		"client_id": {h.fake.ClientID()}, "client_secret": {h.fake.ClientSecret()}}
}

// httptestCA returns a new self-signed certificate authority (PEM).
func httptestCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "Other test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestGrantGoneReopensLogin: after Tesla says the grant is gone, the
// login step opens again and a new login continues where things were.
func TestGrantGoneReopensLogin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	h.fake.RevokeGrant()
	h.fake.ExpireAccessTokens()
	h.expectPage(h.get("/fields"), http.StatusOK) // no Tesla call there
	r := h.get("/pairing")
	h.expectPage(r, http.StatusBadGateway, "Log in with Tesla again")
	h.expectRedirect(h.get("/"), "owner")
	h.expectPage(h.get("/owner"), http.StatusOK, "no longer accepts the earlier login")
	h.doOwner()
	h.expectRedirect(h.get("/"), "fields")
}

// TestOwnerInOtherRegion: an owner whose account lives in Europe is
// followed there, and told to register there when it was not chosen.
func TestOwnerInOtherRegion(t *testing.T) {
	h := newHarness(t, harnessOptions{fake: fleetapitest.Options{OwnerRegion: fleetapi.RegionEU}})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister("na")
	h.expectPage(h.ownerLogin(), http.StatusOK, "Logged in as")
	h.expectLoggedIn("register")
	r := h.get("/register")
	h.expectPage(r, http.StatusOK, "lives in Europe, Middle East and Africa, where the application is not registered yet")
	h.doRegister("na", "eu")
	h.expectRedirect(h.get("/"), "vehicles")
	h.doVehicles()
}

// TestCallbackChecks: the callback on the public hostname looks only at
// an answer whose state is a login under way. Anything else gets a plain
// error page, shows none of its text and leaves the login under way, which
// the real callback then completes once, not twice. The setup page's old
// callback address ends no login either.
func TestCallbackChecks(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	cb := h.startOwnerLogin()
	q := cb.Query()
	const stray = "belongs to no login this fleet2mqtt started"
	forged := url.Values{"code": {q.Get("code")}, "state": {"forged"}, "issuer": {q.Get("issuer")}}
	h.expectPage(h.publicGet(CallbackPath+"?"+forged.Encode()), http.StatusBadRequest, stray)
	const planted = "Call 0800 FAKE now"
	for _, bad := range []url.Values{
		{"error": {"login_required"}, "error_description": {planted}, "state": {"forged"}},
		{"error": {"access_denied"}, "error_description": {planted}},
	} {
		r := h.publicGet(CallbackPath + "?" + bad.Encode())
		h.expectPage(r, http.StatusBadRequest, stray)
		if strings.Contains(r.body, planted) {
			t.Errorf("a foreign callback's text is on the page: %s", excerpt(r.body))
		}
		// The setup page's old address: nothing looked at, nothing shown.
		r = h.get("/callback?" + bad.Encode())
		h.expectPage(r, http.StatusBadRequest, "no longer comes back to the setup page", testRedirect)
		if strings.Contains(r.body, planted) {
			t.Errorf("a callback's text is on the setup page: %s", excerpt(r.body))
		}
	}
	h.expectPage(h.get("/callback?"+cb.RawQuery), http.StatusBadRequest, "no longer comes back to the setup page")
	// The public page cannot be framed and loads nothing.
	r := h.publicGet(CallbackPath + "?" + forged.Encode())
	if r.header.Get("X-Frame-Options") != "DENY" || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") ||
		r.header.Get("Referrer-Policy") != "no-referrer" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("callback page headers: %v", r.header)
	}
	// Nothing has completed a login yet.
	if p := h.getJSON("/owner-status?since=0"); strings.Contains(p.body, `"done":true`) {
		t.Fatalf("a stray callback completed the login: %s", p.body)
	}
	// The login under way survived them: the real callback completes it.
	h.expectPage(h.publicGet(CallbackPath+"?"+cb.RawQuery), http.StatusOK, "Logged in as "+fleetapitest.OwnerName+" ("+fleetapitest.OwnerEmail+")", "you can close this tab")
	h.expectLoggedIn("vehicles")
	// It was single use.
	h.expectPage(h.publicGet(CallbackPath+"?"+cb.RawQuery), http.StatusBadRequest, stray)
	// A matching callback that reports an error is explained, on its tab
	// and on the setup page.
	r = h.post("/owner", nil)
	loc, err := url.Parse(r.location)
	if err != nil {
		t.Fatal(err)
	}
	since := h.w.flow.loginSeq()
	denied := url.Values{"error": {"access_denied"}, "error_description": {"The owner said no"}, "state": {loc.Query().Get("state")}}
	h.expectPage(h.publicGet(CallbackPath+"?"+denied.Encode()), http.StatusBadRequest, "Access was not granted on Tesla")
	if p := h.getJSON("/owner-status?since=" + since); !strings.Contains(p.body, "Access was not granted on Tesla") || strings.Contains(p.body, `"done":true`) {
		t.Errorf("owner-status after a refused login: %s", p.body)
	}
	// A fresh login works.
	h.doOwner()
}

// TestPendingLogins: a login waits loginLifetime for its callback, and at
// most maxPendingLogins wait at once (the owner's newest).
func TestPendingLogins(t *testing.T) {
	clk := newClock(0)
	h := newHarness(t, harnessOptions{now: clk.Now})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	const stray = "belongs to no login this fleet2mqtt started"

	late := h.startOwnerLogin()
	clk.Add(loginLifetime)
	h.expectPage(h.publicGet(CallbackPath+"?"+late.RawQuery), http.StatusBadRequest, stray)

	var started []*url.URL
	for range maxPendingLogins + 1 {
		started = append(started, h.startOwnerLogin())
	}
	h.expectPage(h.publicGet(CallbackPath+"?"+started[0].RawQuery), http.StatusBadRequest, stray)
	h.expectPage(h.publicGet(CallbackPath+"?"+started[maxPendingLogins].RawQuery), http.StatusOK, "Logged in as")
	h.expectPage(h.publicGet(CallbackPath+"?"+started[1].RawQuery), http.StatusOK, "Logged in as")
}

// TestCallbackRateLimit: strangers are limited per address, and all of
// them together by a ceiling that the owner's own callback passes.
func TestCallbackRateLimit(t *testing.T) {
	clk := newClock(0)
	l := newCallbackLimiter(clk.Now)
	a := netip.MustParseAddr("192.0.2.1")
	for i := range callbackAddrBurst {
		if wait := l.take(a, false); wait != 0 {
			t.Fatalf("request %d of one address waits %v", i+1, wait)
		}
	}
	if wait := l.take(a, false); wait <= 0 {
		t.Fatal("an address past its burst is not limited")
	}
	if wait := l.take(a, true); wait <= 0 {
		t.Fatal("a callback under way passes its own address's limit")
	}
	clk.Add(time.Duration(1/callbackAddrPerSec) * time.Second)
	if wait := l.take(a, false); wait != 0 {
		t.Fatalf("the bucket did not refill: wait %v", wait)
	}
	// IPv6 counts by /64.
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	for range callbackAddrBurst {
		l.take(v6a, false)
	}
	if wait := l.take(v6b, false); wait <= 0 {
		t.Error("another address of the same /64 is not limited with it")
	}

	// The global ceiling: many addresses, one request each.
	g := newCallbackLimiter(clk.Now)
	for i := range callbackGlobalBurst {
		if wait := g.take(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), false); wait != 0 {
			t.Fatalf("request %d under the ceiling waits %v", i+1, wait)
		}
	}
	stranger := netip.MustParseAddr("203.0.113.7")
	if wait := g.take(stranger, false); wait <= 0 {
		t.Fatal("past the ceiling, a stranger is not limited")
	}
	if wait := g.take(stranger, true); wait != 0 {
		t.Fatalf("past the ceiling, the owner's callback waits %v", wait)
	}
	// Memory stays bounded whatever the number of addresses.
	for i := range callbackMaxAddrs + 100 {
		g.take(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), false)
	}
	if n := len(g.addrs); n > callbackMaxAddrs {
		t.Errorf("%d addresses kept, bound %d", n, callbackMaxAddrs)
	}

	// Through the handler: a flood of stray callbacks from one address
	// gets 429 with Retry-After.
	h := newHarness(t, harnessOptions{})
	var last response
	for range callbackAddrBurst + 1 {
		last = h.publicGet(CallbackPath + "?state=x&code=y")
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Errorf("flood: %d, Retry-After %q", last.status, last.header.Get("Retry-After"))
	}
}

// TestPublicHandler: the vehicle listener's part of the setup page serves
// the public key and the callback, nothing else.
func TestPublicHandler(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/", "/app", "/callback", "/oauth/", "/static/app.js", "/login"} {
		if r := h.publicGet(path); r.status != http.StatusNotFound {
			t.Errorf("%s on the public hostname: %d", path, r.status)
		}
	}
	if r := h.publicGet(fleetapi.PublicKeyPath); r.status != http.StatusNotFound {
		t.Errorf("public key before the key exists: %d", r.status)
	}
}

// TestKeyCheckFailures: the key check explains what it met.
func TestKeyCheckFailures(t *testing.T) {
	t.Run("not served", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.login()
		h.doApp()
		h.expectRedirect(h.post("/key", url.Values{"action": {"create"}}), "key")
		h.w.flow.deps.PublicKeyURL = func(string) string { return h.vehicle.URL + "/elsewhere" }
		h.expectPage(h.post("/key", url.Values{"action": {"check"}}), http.StatusBadGateway, "answered 404", "does not reach fleet2mqtt")
		h.expectRedirect(h.get("/register"), "key")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.login()
		h.doApp()
		h.expectRedirect(h.post("/key", url.Values{"action": {"create"}}), "key")
		h.w.flow.deps.CheckHTTPClient = &http.Client{Timeout: 5 * time.Second}
		h.expectPage(h.post("/key", url.Values{"action": {"check"}}), http.StatusBadGateway, "is not trusted")
	})
	t.Run("connection refused", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.login()
		h.doApp()
		h.expectRedirect(h.post("/key", url.Values{"action": {"create"}}), "key")
		closed := h.vehicle.URL
		h.vehicle.Close()
		h.w.flow.deps.PublicKeyURL = func(string) string { return closed + fleetapi.PublicKeyPath }
		h.expectPage(h.post("/key", url.Values{"action": {"check"}}), http.StatusBadGateway, "connection was refused")
	})
}

// TestPushOutcomes covers what the car does with a pushed config.
func TestPushOutcomes(t *testing.T) {
	t.Run("skip reasons", func(t *testing.T) {
		for _, reason := range []fleetapi.SkipReason{fleetapi.SkipUnsupportedFirmware, fleetapi.SkipUnsupportedHardware, fleetapi.SkipMaxConfigs, fleetapi.SkipMissingKey} {
			t.Run(string(reason), func(t *testing.T) {
				h := newHarness(t, harnessOptions{vehicles: []fleetapitest.Vehicle{{VIN: testVIN, Paired: true, Skip: string(reason)}}})
				h.throughPairing()
				h.doFields(nil)
				r := h.post("/push", nil)
				h.expectPage(r, http.StatusConflict, "Tesla sent the config to none of the cars", htmlEscape(reason.Explain()))
			})
		}
	})
	t.Run("rejected by the car", func(t *testing.T) {
		h := newHarness(t, harnessOptions{vehicles: []fleetapitest.Vehicle{{VIN: testVIN, Paired: true, RejectConfig: true}}})
		h.throughPairing()
		h.doFields(nil)
		h.doPush()
		r := h.getJSON("/verify-status")
		if !strings.Contains(r.body, "it rejected the one pushed") || !strings.Contains(r.body, `"state":"bad"`) {
			t.Errorf("rejection not explained: %s", r.body)
		}
	})
	t.Run("streaming errors", func(t *testing.T) {
		h := newHarness(t, harnessOptions{vehicles: []fleetapitest.Vehicle{{VIN: testVIN, Paired: true, Errors: []fleetapitest.StreamError{{
			Name: "tls", Error: "certificate relies on legacy Common Name field, use SANs instead", VIN: testVIN, CreatedAt: "2026-03-01T10:00:00Z",
			Hostname: testHost, Port: 443,
		}}}}})
		h.throughPairing()
		h.doFields(nil)
		h.doPush()
		r := h.get("/verify")
		h.expectPage(r, http.StatusOK, "certificate relies on legacy Common Name field", "Subject Alternative Names")
	})
	t.Run("old firmware drops minimum deltas", func(t *testing.T) {
		h := newHarness(t, harnessOptions{vehicles: []fleetapitest.Vehicle{{VIN: testVIN, Paired: true, FirmwareVersion: "2024.20.1"}}})
		h.throughPairing()
		h.expectPage(h.get("/fields"), http.StatusOK, "ignores minimum changes")
		h.doFields(nil)
		h.doPush()
		if strings.Contains(string(h.fake.PushedConfig(testVIN)), "minimum_delta") {
			t.Error("minimum_delta pushed to a car whose software ignores it")
		}
	})
	t.Run("no CA chain", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.throughPairing()
		h.doFields(nil)
		h.w.flow.deps.ServerCAPEM = func() []byte { return nil }
		h.expectPage(h.get("/push"), http.StatusOK, "vehicle.cert_file", "disabled")
		h.expectPage(h.post("/push", nil), http.StatusConflict, "vehicle.cert_file")
	})
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestRemoveConfig stops a car's streaming.
func TestRemoveConfig(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	h.doFields(nil)
	h.doPush()
	h.expectPage(h.get("/verify"), http.StatusOK, "Stop streaming from this car")
	h.expectRedirect(h.post("/remove", url.Values{"vin": {testVIN}}), "verify")
	if h.fake.PushedConfig(testVIN) != nil {
		t.Error("the fake still holds the config")
	}
	// Nothing pushed any more: the verification step closes again.
	h.expectRedirect(h.get("/verify"), "push")
	h.expectPage(h.post("/remove", url.Values{"vin": {"UNKNOWN"}}), http.StatusNotFound)
}

// TestRepush: configs near expiry, or naming a CA chain the server no
// longer serves, are pushed again.
func TestRepush(t *testing.T) {
	clk := newClock(time.Second)
	h := newHarness(t, harnessOptions{now: clk.Now})
	h.throughPairing()
	h.doFields(nil)
	h.doPush()
	first := pushedExp(t, h)

	h.w.flow.repushDue(t.Context())
	if got := pushedExp(t, h); got != first {
		t.Fatalf("pushed again although nothing is due: exp %d → %d", first, got)
	}

	clk.Add(fleetapi.ConfigLifetime - fleetapi.RepushMargin + time.Hour)
	before := clk.Now()
	h.w.flow.repushDue(t.Context())
	second := pushedExp(t, h)
	if second <= first {
		t.Fatalf("not pushed again before expiry: exp %d → %d", first, second)
	}
	// The clock ticks a second per reading: a few readings happen.
	if want := before.Add(fleetapi.ConfigLifetime).Unix(); second < want || second > want+60 {
		t.Errorf("new exp %d, want about %d", second, want)
	}

	// The listener's chain changes (a new certificate authority).
	other := httptestCA(t)
	h.ca = other
	h.w.flow.repushDue(t.Context())
	var claims struct{ CA string }
	json.Unmarshal(h.fake.PushedConfig(testVIN), &claims)
	if claims.CA != string(other) {
		t.Error("not pushed again with the new CA chain")
	}

	// A grant that is gone is reported on the page, not retried blindly.
	clk.Add(fleetapi.ConfigLifetime)
	h.fake.RevokeGrant()
	h.fake.ExpireAccessTokens()
	h.w.flow.repushDue(t.Context())
	var problem string
	h.w.flow.store.read(func(st *state) { problem = st.Cars[testVIN].Problem })
	if !strings.Contains(problem, "Log in with Tesla again") {
		t.Errorf("car problem after a failed re-push: %q", problem)
	}
}

func pushedExp(t *testing.T, h *harness) int64 {
	t.Helper()
	var claims struct{ Exp int64 }
	if err := json.Unmarshal(h.fake.PushedConfig(testVIN), &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Exp
}

// TestRunStops: Run checks pending configs in the background and returns
// when its context ends.
func TestRunStops(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	h.doFields(nil)
	h.doPush()
	h.w.flow.timing.SyncCheck = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for {
		var status string
		h.w.flow.store.read(func(st *state) { status = st.Cars[testVIN].Status })
		if status == carActive {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("Run never saw the config synced (status %q)", status)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestPublicKeyHandler: GET and HEAD only; 404 until the key exists.
func TestPublicKeyHandler(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	serve := func(method string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.w.PublicKeyHandler().ServeHTTP(rec, httptest.NewRequest(method, fleetapi.PublicKeyPath, nil))
		return rec
	}
	if rec := serve(http.MethodGet); rec.Code != http.StatusNotFound {
		t.Errorf("before the key exists: %d", rec.Code)
	}
	h.login()
	h.doApp()
	h.expectRedirect(h.post("/key", url.Values{"action": {"create"}}), "key")
	rec := serve(http.MethodGet)
	pub, err := fleetapi.ParsePublicKeyPEM(rec.Body.Bytes())
	if rec.Code != http.StatusOK || err != nil || !pub.Equal(&h.w.flow.store.appKey().private.PublicKey) {
		t.Errorf("GET: %d %v", rec.Code, err)
	}
	if rec := serve(http.MethodHead); rec.Code != http.StatusOK {
		t.Errorf("HEAD: %d", rec.Code)
	}
	if rec := serve(http.MethodPost); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q", rec.Code, rec.Header().Get("Allow"))
	}
	info, err := os.Stat(filepath.Join(h.dir, "setup", keyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("private key file: %v %v", info, err)
	}
}

// TestOldRedirectURI: an install whose saved redirect URI is the setup
// page's own (earlier versions) is told the old and the new address to
// change at Tesla, until a login comes back through the new one.
func TestOldRedirectURI(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	const old = "https://homeassistant.local:8123/api/hassio_ingress/abc/callback"
	if err := h.w.flow.store.update(func(st *state) error { st.RedirectURL = old; return nil }); err != nil {
		t.Fatal(err)
	}
	h.expectPage(h.get("/app"), http.StatusOK, `id="old-redirect"`, old, testRedirect)
	h.expectPage(h.get("/owner"), http.StatusOK, `id="old-redirect"`, old, testRedirect)
	h.doOwner()
	if r := h.get("/app"); strings.Contains(r.body, "old-redirect") {
		t.Errorf("the old redirect URI is still shown after a login through the new one: %s", excerpt(r.body))
	}
}

// TestLoginNeedsPublicHostname: without a public hostname the owner step
// says what is missing and offers no login that cannot come back.
func TestLoginNeedsPublicHostname(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var missing string
	h.w.flow.store.read(func(st *state) { missing = h.w.flow.callbackMissing(st) })
	if !strings.Contains(missing, "no public hostname yet") {
		t.Errorf("missing: %q", missing)
	}
	if _, err := h.w.flow.startLogin(); err == nil || statusOf(err) != http.StatusConflict {
		t.Errorf("a login started without a hostname: %v", err)
	}
	h.login()
	h.doApp()
	h.w.flow.store.read(func(st *state) { missing = h.w.flow.callbackMissing(st) })
	if !strings.Contains(missing, "Run the key check in step 2") {
		t.Errorf("missing before the key check: %q", missing)
	}
}
