//go:build hardening

package hardening

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// The binary cannot reach a fake Tesla, so the setup page's conversations
// with Tesla (tokens, the private key, the client secret) are driven
// in-process: the same Wizard the binary runs, against fleetapitest, its
// logs collected with the binary's for the secret scan.

const (
	wizardHost = "telemetry.example.com" // never resolved
	wizardVIN  = "5YJ3E1EA7KF000001"
)

// tesla is the fake Tesla and the loopback TLS server that stands in for
// the vehicle listener (it serves the application's public key).
type tesla struct {
	fake    *fleetapitest.Server
	vehicle *httptest.Server
	key     atomic.Pointer[http.Handler]
	caPEM   []byte
}

func newTesla(t *testing.T) *tesla {
	t.Helper()
	ts := &tesla{}
	notFound := http.Handler(http.NotFoundHandler())
	ts.key.Store(&notFound)
	ts.vehicle = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		(*ts.key.Load()).ServeHTTP(rw, r)
	}))
	ts.vehicle.StartTLS()
	t.Cleanup(ts.vehicle.Close)
	ts.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.vehicle.Certificate().Raw})
	ts.fake = fleetapitest.New(fleetapitest.Options{
		ClientSecret:   "fake-secret-" + rand.Text(),
		AllowedOrigins: []string{"https://" + wizardHost},
		Vehicles:       []fleetapitest.Vehicle{{VIN: wizardVIN, DisplayName: "Hardening", PairAfterPolls: 1, SyncAfterPolls: 1}},
		PublicKeyURL:   func(string) string { return ts.vehicle.URL + fleetapi.PublicKeyPath },
		HTTPClient:     ts.vehicle.Client(),
	})
	t.Cleanup(ts.fake.Close)
	logs.secret("Tesla client secret", ts.fake.ClientSecret())
	return ts
}

// wizardRig is the setup page served on loopback for one data directory.
type wizardRig struct {
	t        *testing.T
	ts       *tesla
	w        *setup.Wizard
	page     *httptest.Server
	b        *browser
	dir      string
	password string
	out      *output
}

func newWizardRig(t *testing.T, ts *tesla, dir, password string) *wizardRig {
	t.Helper()
	out := logs.open("wizard " + dir)
	w, err := setup.New(setup.Config{Password: setup.Secret(password)}, dir, setup.Deps{
		TeslaEndpoints:  ts.fake.Endpoints(),
		ServerCAPEM:     func() []byte { return ts.caPEM },
		PublicKeyURL:    func(string) string { return ts.vehicle.URL + fleetapi.PublicKeyPath },
		CheckHTTPClient: ts.vehicle.Client(),
		PasswordOut:     out,
	}, slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		setup.WithTiming(setup.Timing{TeslaPoll: time.Nanosecond}))
	if err != nil {
		t.Fatal(err)
	}
	h := w.PublicHandler()
	ts.key.Store(&h)
	rig := &wizardRig{t: t, ts: ts, w: w, dir: dir, password: password, out: out}
	rig.page = httptest.NewServer(w.Handler())
	t.Cleanup(rig.page.Close)
	ts.fake.SetRedirectURIs("https://" + wizardHost + setup.CallbackPath)
	rig.b = newBrowser(t, rig.page.URL, "")
	return rig
}

// expect checks a status (and, for a redirect, its target).
func (rig *wizardRig) expect(what string, code int, loc string, wantCode int, wantLoc string) {
	rig.t.Helper()
	if code != wantCode || (wantLoc != "" && loc != "./"+wantLoc) {
		rig.t.Fatalf("%s: %d to %q, want %d to ./%s", what, code, loc, wantCode, wantLoc)
	}
}

// walk completes the wizard up to the pushed config: login, application,
// key pair, registration, owner login, car, pairing, fields, push.
func (rig *wizardRig) walk() {
	rig.t.Helper()
	b := rig.b
	if code := b.login(rig.password); code != http.StatusSeeOther {
		rig.t.Fatalf("login: %d", code)
	}
	b.do("GET", "/app", nil, nil)
	code, loc, _ := b.do("POST", "/app", url.Values{"csrf": {b.csrf}, "host": {wizardHost},
		"client_id": {rig.ts.fake.ClientID()}, "client_secret": {rig.ts.fake.ClientSecret()}}, nil)
	rig.expect("application", code, loc, http.StatusSeeOther, "key")
	code, loc, _ = b.do("POST", "/key", url.Values{"csrf": {b.csrf}, "action": {"create"}}, nil)
	rig.expect("create key", code, loc, http.StatusSeeOther, "key")
	code, loc, _ = b.do("POST", "/key", url.Values{"csrf": {b.csrf}, "action": {"check"}}, nil)
	rig.expect("check key", code, loc, http.StatusSeeOther, "register")
	code, loc, _ = b.do("POST", "/register", url.Values{"csrf": {b.csrf}, "region": {"na", "eu"}}, nil)
	rig.expect("register", code, loc, http.StatusSeeOther, "owner")
	code, loc, _ = b.do("POST", "/owner", url.Values{"csrf": {b.csrf}}, nil)
	if code != http.StatusSeeOther {
		rig.t.Fatalf("owner login: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb, err := rig.ts.fake.Login(ctx, loc)
	if err != nil {
		rig.t.Fatal(err)
	}
	// Tesla sends the browser to the public hostname: the vehicle listener.
	resp, err := rig.ts.vehicle.Client().Get(rig.ts.vehicle.URL + cb.Path + "?" + cb.RawQuery)
	if err != nil {
		rig.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rig.t.Fatalf("callback: %d", resp.StatusCode)
	}
	b.do("GET", "/vehicles", nil, nil)
	code, loc, _ = b.do("POST", "/vehicles", url.Values{"csrf": {b.csrf}, "vin": {wizardVIN}}, nil)
	rig.expect("vehicles", code, loc, http.StatusSeeOther, "pairing")
	for i := 0; ; i++ {
		_, _, body := b.do("GET", "/pairing-status", nil, http.Header{"Accept": {"application/json"}})
		if strings.Contains(body, `"done":true`) {
			break
		}
		if i == 10 {
			rig.t.Fatalf("pairing never done: %s", body)
		}
	}
	b.do("GET", "/fields", nil, nil)
	code, loc, _ = b.do("POST", "/fields", url.Values{"csrf": {b.csrf}, "interval": {"60"}, "field": {"Soc", "Location", "Gear"}}, nil)
	rig.expect("fields", code, loc, http.StatusSeeOther, "push")
	b.do("GET", "/push", nil, nil)
	code, loc, _ = b.do("POST", "/push", url.Values{"csrf": {b.csrf}}, nil)
	rig.expect("push", code, loc, http.StatusSeeOther, "verify")
}

// registerSecrets adds the owner's tokens and the private key on disk to
// the secrets no log may show.
func (rig *wizardRig) registerSecrets() {
	rig.t.Helper()
	raw, err := os.ReadFile(filepath.Join(rig.dir, "setup", "owner-token.json"))
	if err != nil {
		rig.t.Fatal(err)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		rig.t.Fatalf("owner-token.json: %v (%d bytes)", err, len(raw))
	}
	logs.secret("owner access token", tok.AccessToken)
	logs.secret("owner refresh token", tok.RefreshToken)
	key, err := os.ReadFile(filepath.Join(rig.dir, "setup", "private-key.pem"))
	if err != nil {
		rig.t.Fatal(err)
	}
	logs.secretPEM("application private key", key)
	logs.secret("setup password", rig.password)
}

// TestWizardSecrets walks the setup page against the fake Tesla and
// checks where its secrets end up, how it takes malformed answers from
// Tesla and a full disk.
func TestWizardSecrets(t *testing.T) {
	ts := newTesla(t)
	d, tmpfs := smallDisk(t, "1m")
	dir := t.TempDir()
	if tmpfs {
		dir = filepath.Join(d.dir, "data")
	}
	rig := newWizardRig(t, ts, dir, "wizard-pw-"+rand.Text())
	rig.walk()
	rig.registerSecrets()

	t.Run("file modes", func(t *testing.T) {
		r := trial(t, areaAccess,
			"the setup page walked against the fake Tesla up to a pushed config (client secret, key pair, owner tokens, state in the data directory)",
			"the setup directory 0700, every file in it 0600")
		r.figure("%d files checked", checkModes(t, r, dir))
	})

	t.Run("malformed Tesla answers", func(t *testing.T) {
		r := trial(t, areaHostile,
			"the fake Tesla answers the vehicle list with HTML, with JSON of the wrong shape, with 10 MB of JSON, with 429, with 500; the token endpoint answers a refresh with a truncated body",
			"each time the page answers (no crash, no empty 500) with an explanation, and the next normal answer works again")
		b := rig.b
		for _, tc := range []struct {
			name string
			fail fleetapitest.Failure
		}{
			{"HTML", fleetapitest.Failure{Path: "/api/1/vehicles", Status: 200, Body: "<html><body>Bad gateway</body></html>"}},
			{"wrong shape", fleetapitest.Failure{Path: "/api/1/vehicles", Status: 200, Body: `{"response":[{"vin":5,"id":"x"}],"count":"many"}`, ContentType: "application/json"}},
			{"10 MB", fleetapitest.Failure{Path: "/api/1/vehicles", Status: 200, Body: `{"response":"` + strings.Repeat("a", 10<<20) + `"}`, ContentType: "application/json"}},
			{"429", fleetapitest.Failure{Path: "/api/1/vehicles", Status: 429}},
			{"500", fleetapitest.Failure{Path: "/api/1/vehicles", Status: 500, Error: "internal_error", Description: "try later"}},
			{"truncated token answer", fleetapitest.Failure{Path: "/oauth2/v3/token", Status: 200, Body: `{"access_token":"ey`, ContentType: "application/json"}},
		} {
			table.attacks.Add(1)
			if tc.name == "truncated token answer" {
				ts.fake.ExpireAccessTokens()
			}
			ts.fake.Fail(tc.fail)
			code, _, body := b.do("GET", "/vehicles", nil, nil)
			if code == http.StatusOK || code == 0 || !strings.Contains(body, `id="problem"`) {
				r.errorf(t, "%s: %d without an explanation: %s", tc.name, code, shorten(body, 200))
			}
			if code, _, body := b.do("GET", "/vehicles", nil, nil); code != http.StatusOK {
				r.errorf(t, "%s: the next normal answer: %d: %s", tc.name, code, shorten(body, 300))
			}
		}
	})

	t.Run("disk full", func(t *testing.T) {
		if !tmpfs {
			t.Skip("no tmpfs could be mounted here; the binary's disk-full cases cover the rest")
		}
		r := trial(t, areaFaults,
			"with the setup page's data directory on a full disk: the field selection is saved; the owner's access token has expired and Tesla rotates the refresh token; then the space is freed; then fleet2mqtt restarts and the token expires again",
			"each save fails with a page that says why (no space left on device); no file changes, none is torn, no temporary file remains; once there is space the rotated token is saved from memory; after a restart the stored token still works (no login lost)")
		before := tree(t, dir)
		d.fill()
		table.faults.Add(1)
		b := rig.b
		b.do("GET", "/fields", nil, nil)
		code, _, body := b.do("POST", "/fields", url.Values{"csrf": {b.csrf}, "interval": {"30"}, "field": {"Soc", "Gear"}}, nil)
		if code < 400 || !strings.Contains(body, "no space left on device") {
			r.errorf(t, "saving the fields on a full disk: %d, and the page does not say why but %q", code, shorten(pageProblem(body), 300))
		}
		ts.fake.ExpireAccessTokens()
		code, _, body = b.do("GET", "/vehicles", nil, nil)
		if code < 400 || !strings.Contains(body, "no space left on device") {
			r.errorf(t, "refreshing the token on a full disk (Tesla rotated it): %d, and the page does not say why but %q", code, shorten(pageProblem(body), 300))
		}
		if diff := diffTrees(before, tree(t, dir)); len(diff) > 0 {
			r.errorf(t, "files changed on the full disk: %v", diff)
		}
		d.free()
		if code, _, body := b.do("GET", "/vehicles", nil, nil); code != http.StatusOK {
			r.errorf(t, "with space again: %d: %s", code, shorten(pageProblem(body), 300))
		}
		rig.registerSecrets() // the rotated tokens
		rig.page.Close()

		again := newWizardRig(t, ts, dir, rig.password)
		if code := again.b.login(rig.password); code != http.StatusSeeOther {
			r.fatalf(t, "login after the restart: %d", code)
		}
		ts.fake.ExpireAccessTokens()
		if code, _, body := again.b.do("GET", "/vehicles", nil, nil); code != http.StatusOK {
			r.errorf(t, "after the restart the stored token does not work: %d: %s", code, shorten(pageProblem(body), 300))
		}
		again.registerSecrets()
	})
}

var problemBox = regexp.MustCompile(`(?s)id="problem">(.*?)</div>`)
var tags = regexp.MustCompile(`<[^>]*>`)

// pageProblem returns the text of a page's problem box, or the page.
func pageProblem(body string) string {
	m := problemBox.FindStringSubmatch(body)
	if m == nil {
		return body
	}
	return html.UnescapeString(strings.TrimSpace(tags.ReplaceAllString(m[1], " ")))
}
