package setup

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Test values. The hostname is never resolved: the key check and Tesla's
// key download are pointed at a loopback TLS server standing in for the
// vehicle listener.
const (
	testHost     = "telemetry.example.com"
	testPassword = "correct horse battery staple"
	testVIN      = "5YJ3E1EA7KF000001"
	testVIN2     = "5YJYGDEE1MF000002"
	// testRedirect is the redirect URI on the public hostname; requests
	// to it go to the harness's vehicle listener (publicGet).
	testRedirect = "https://" + testHost + CallbackPath
)

// clock is a settable clock for tests that need one. It moves on by tick
// at every reading, so that code waiting for time to pass sees it pass.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	tick time.Duration
}

func newClock(tick time.Duration) *clock {
	return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), tick: tick}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.tick)
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harnessOptions change the default harness.
type harnessOptions struct {
	cfg      Config
	vehicles []fleetapitest.Vehicle
	now      func() time.Time
	fake     fleetapitest.Options
	// pagePoll is the page script's polling interval.
	pagePoll time.Duration
	// vehicleListen is where the vehicle listener listens ("" a loopback
	// port of 127.0.0.1).
	vehicleListen string
	// commands is Deps.Commands (nil: commands off).
	commands Commands
}

// harness is the setup page against a fake Tesla, all on loopback: the
// page's server, a TLS server standing in for the vehicle listener (it
// serves the public key), and a browser-like client with a cookie jar
// that does not follow redirects.
type harness struct {
	t       *testing.T
	fake    *fleetapitest.Server
	w       *Wizard
	srv     *httptest.Server
	vehicle *httptest.Server
	client  *http.Client
	csrf    string
	dir     string
	logs    *syncBuffer
	pwOut   *syncBuffer
	ca      []byte

	// What the wizard told its Announcer (see announcerRecorder).
	hookMu    sync.Mutex
	streaming map[string][]string
	names     map[string]string
}

// announcerRecorder is the harness as the wizard's Announcer: it keeps
// what it is told.
type announcerRecorder harness

func (r *announcerRecorder) SetStreaming(vin string, fields []telemetry.Field) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	if r.streaming == nil {
		r.streaming = map[string][]string{}
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.String()
	}
	r.streaming[vin] = names
}

func (r *announcerRecorder) SetDisplayName(vin, name string) {
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	if r.names == nil {
		r.names = map[string]string{}
	}
	r.names[vin] = name
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), logs: &syncBuffer{}, pwOut: &syncBuffer{}}

	var keyHandler http.Handler = http.NotFoundHandler()
	var keyMu sync.Mutex
	h.vehicle = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		keyMu.Lock()
		kh := keyHandler
		keyMu.Unlock()
		kh.ServeHTTP(rw, r)
	}))
	if o.vehicleListen != "" {
		ln, err := net.Listen("tcp", o.vehicleListen)
		if err != nil {
			t.Fatalf("vehicle listener on %s: %v", o.vehicleListen, err)
		}
		h.vehicle.Listener.Close()
		h.vehicle.Listener = ln
	}
	// Tests that distrust its certificate make it log handshake errors.
	h.vehicle.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.vehicle.StartTLS()
	t.Cleanup(h.vehicle.Close)
	h.ca = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.vehicle.Certificate().Raw})

	fo := o.fake
	fo.AllowedOrigins = []string{"https://" + testHost}
	fo.Vehicles = o.vehicles
	if fo.Vehicles == nil {
		fo.Vehicles = []fleetapitest.Vehicle{{VIN: testVIN, DisplayName: "Red Rocket", PairAfterPolls: 1, SyncAfterPolls: 1}}
	}
	fo.PublicKeyURL = func(string) string { return h.vehicle.URL + fleetapi.PublicKeyPath }
	fo.HTTPClient = h.vehicle.Client()
	fo.Now = o.now
	fo.Logf = t.Logf
	h.fake = fleetapitest.New(fo)
	t.Cleanup(h.fake.Close)

	cfg := o.cfg
	if cfg.Password == "" {
		cfg.Password = testPassword
	}
	deps := Deps{
		TeslaEndpoints:  h.fake.Endpoints(),
		ServerCAPEM:     func() []byte { return h.ca },
		PublicKeyURL:    func(string) string { return h.vehicle.URL + fleetapi.PublicKeyPath },
		CheckHTTPClient: h.vehicle.Client(),
		PasswordOut:     h.pwOut,
		Announcer:       (*announcerRecorder)(h),
		Commands:        o.commands,
	}
	timing := Timing{Now: o.now, PagePoll: o.pagePoll, TeslaPoll: time.Nanosecond}
	w, err := New(cfg, h.dir, deps, slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), WithTiming(timing))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.w = w
	keyMu.Lock()
	keyHandler = w.PublicHandler()
	keyMu.Unlock()

	h.srv = httptest.NewServer(w.Handler())
	t.Cleanup(h.srv.Close)
	h.fake.SetRedirectURIs(testRedirect)
	h.client = newClient()
	return h
}

// newClient is a browser-like client: cookies kept, redirects not
// followed.
func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// response is a read answer.
type response struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (h *harness) do(req *http.Request) response {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
	if m := csrfRE.FindStringSubmatch(r.body); m != nil {
		h.csrf = m[1]
	}
	return r
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (h *harness) get(path string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}

func (h *harness) getJSON(path string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	return h.do(req)
}

// post sends a form with the session's CSRF token.
func (h *harness) post(path string, form url.Values) response {
	h.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form[csrfField]; !ok {
		form.Set(csrfField, h.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return h.do(req)
}

// expectRedirect checks a 303 to a relative page.
func (h *harness) expectRedirect(r response, to string) {
	h.t.Helper()
	if r.status != http.StatusSeeOther || r.location != "./"+to {
		h.t.Fatalf("want 303 to ./%s, got %d %q; body:\n%s", to, r.status, r.location, excerpt(r.body))
	}
}

// expectPage checks a status and that the body contains every want.
func (h *harness) expectPage(r response, status int, wants ...string) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("want status %d, got %d (location %q); body:\n%s", status, r.status, r.location, excerpt(r.body))
	}
	for _, want := range wants {
		if !strings.Contains(r.body, want) {
			h.t.Errorf("page lacks %q; body:\n%s", want, excerpt(r.body))
		}
	}
}

// excerpt is the main part of a page, for failure messages.
func excerpt(body string) string {
	if i := strings.Index(body, "<main>"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 3000 {
		body = body[:3000] + "…"
	}
	return body
}

// Steps, each completed the way a user would.

func (h *harness) login() {
	h.t.Helper()
	h.get("/login")
	h.expectRedirect(h.post("/login", url.Values{"password": {testPassword}}), "")
	h.get("/app") // the new session's CSRF token
}

func (h *harness) doApp() {
	h.t.Helper()
	h.get("/app")
	h.expectRedirect(h.post("/app", url.Values{
		"host":      {testHost},
		"client_id": {h.fake.ClientID()}, "client_secret": {h.fake.ClientSecret()},
	}), "key")
}

func (h *harness) doKey() {
	h.t.Helper()
	h.expectRedirect(h.post("/key", url.Values{"action": {"create"}}), "key")
	h.expectRedirect(h.post("/key", url.Values{"action": {"check"}}), "register")
}

func (h *harness) doRegister(regions ...string) {
	h.t.Helper()
	if regions == nil {
		regions = []string{"na", "eu"}
	}
	h.expectRedirect(h.post("/register", url.Values{"region": regions}), "owner")
}

// ownerLogin logs the owner in through the fake's login page and returns
// the answer to the callback, which the vehicle listener serves on the
// public hostname.
func (h *harness) ownerLogin() response {
	h.t.Helper()
	cb := h.startOwnerLogin()
	return h.publicGet(cb.Path + "?" + cb.RawQuery)
}

// startOwnerLogin starts a login and passes Tesla's login page, returning
// the callback address Tesla sends the browser to.
func (h *harness) startOwnerLogin() *url.URL {
	h.t.Helper()
	r := h.post("/owner", nil)
	if r.status != http.StatusSeeOther {
		h.t.Fatalf("owner login: want 303 to Tesla, got %d; body:\n%s", r.status, excerpt(r.body))
	}
	cb, err := h.fake.Login(context.Background(), r.location)
	if err != nil {
		h.t.Fatalf("fake login page: %v", err)
	}
	if !strings.HasPrefix(cb.String(), testRedirect+"?") {
		h.t.Fatalf("Tesla sent the browser to %s", cb)
	}
	return cb
}

// publicGet requests path from the vehicle listener (the public
// hostname), as a browser with no cookie of the setup page.
func (h *harness) publicGet(path string) response {
	h.t.Helper()
	resp, err := h.vehicle.Client().Get(h.vehicle.URL + path)
	if err != nil {
		h.t.Fatalf("GET %s on the vehicle listener: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

// expectLoggedIn checks that the setup page's poll, after a login that
// came back, sends it to the step next.
func (h *harness) expectLoggedIn(next string) {
	h.t.Helper()
	r := h.getJSON("/owner-status?since=0")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"done":true`) || !strings.Contains(r.body, `"next":"`+next+`"`) {
		h.t.Fatalf("owner-status: want done, next %s; got %d %s", next, r.status, r.body)
	}
}

func (h *harness) doOwner() {
	h.t.Helper()
	h.expectPage(h.ownerLogin(), http.StatusOK, "Logged in as "+fleetapitest.OwnerName)
	h.expectLoggedIn("vehicles")
}

func (h *harness) doVehicles(vins ...string) {
	h.t.Helper()
	if vins == nil {
		vins = []string{testVIN}
	}
	h.expectPage(h.get("/vehicles"), http.StatusOK, vins...)
	h.expectRedirect(h.post("/vehicles", url.Values{"vin": vins}), "pairing")
}

// doPairing polls until the fake reports the cars paired (bounded).
func (h *harness) doPairing() {
	h.t.Helper()
	h.expectPage(h.get("/pairing"), http.StatusOK, "https://tesla.com/_ak/"+testHost)
	for range 10 {
		r := h.getJSON("/pairing-status")
		if strings.Contains(r.body, `"done":true`) {
			return
		}
	}
	h.t.Fatal("the cars never reported the key paired")
}

func (h *harness) doFields(form url.Values) {
	h.t.Helper()
	h.expectPage(h.get("/fields"), http.StatusOK, "Home Assistant essentials")
	if form == nil {
		form = url.Values{"interval": {"60"}, "field": {"Soc", "Location", "Gear"}, "delta.Soc": {"1"}}
	}
	h.expectRedirect(h.post("/fields", form), "push")
}

func (h *harness) doPush() {
	h.t.Helper()
	h.expectPage(h.get("/push"), http.StatusOK, testHost+":443")
	h.expectRedirect(h.post("/push", nil), "verify")
}

// throughPairing completes every step up to the field picker.
func (h *harness) throughPairing() {
	h.t.Helper()
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	h.doOwner()
	h.doVehicles()
	h.doPairing()
}

// waitActive polls the verification status until the car's config is
// active (bounded).
func (h *harness) waitActive(vin string) response {
	h.t.Helper()
	var r response
	for range 10 {
		r = h.getJSON("/verify-status")
		if strings.Contains(r.body, `"id":"cfg-`+vin+`","text":"The car has the config`) {
			return r
		}
	}
	h.t.Fatalf("the config never became active: %s", r.body)
	return r
}
