package setup

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// breakFile makes name in the setup directory unusable as a file, for real
// and whoever the tests run as: it becomes a folder holding a file, so that
// reading it fails and renaming a new version over it fails too.
func (h *harness) breakFile(name string) {
	h.t.Helper()
	path := join(h.w.flow.store.dir, name)
	if err := os.RemoveAll(path); err != nil {
		h.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "in-the-way"), 0o700); err != nil {
		h.t.Fatal(err)
	}
}

// TestLocalFailuresAre500 breaks the setup directory while a step talks to
// Tesla: the step fails with 500 and says that the problem is on this
// computer, naming the file, where it used to answer 502 Bad Gateway as if
// Tesla had failed.
func TestLocalFailuresAre500(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(h *harness) // the steps before the failing one
		broken  string           // the file in the way
		expire  bool             // Tesla expires the owner's access token: the next call refreshes and saves it
		act     func(h *harness) response
	}{
		{
			name:    "saving the registration",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey() },
			broken:  stateFile,
			act:     func(h *harness) response { return h.post("/register", url.Values{"region": {"na"}}) },
		},
		{
			name:    "saving the list of vehicles",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey(); h.doRegister(); h.doOwner() },
			broken:  stateFile,
			act:     func(h *harness) response { return h.get("/vehicles") },
		},
		{
			name:    "saving a refreshed token while listing vehicles",
			prepare: func(h *harness) { h.login(); h.doApp(); h.doKey(); h.doRegister(); h.doOwner() },
			broken:  tokenFile,
			expire:  true,
			act:     func(h *harness) response { return h.get("/vehicles") },
		},
		{
			name: "saving the pairing status",
			prepare: func(h *harness) {
				h.login()
				h.doApp()
				h.doKey()
				h.doRegister()
				h.doOwner()
				h.doVehicles()
			},
			broken: stateFile,
			act:    func(h *harness) response { return h.get("/pairing") },
		},
		{
			name:    "saving a refreshed token while pushing the config",
			prepare: func(h *harness) { h.throughPairing(); h.doFields(nil); h.get("/push") },
			broken:  tokenFile,
			expire:  true,
			act:     func(h *harness) response { return h.post("/push", nil) },
		},
		{
			name:    "saving a refreshed token while stopping a car",
			prepare: func(h *harness) { h.throughPairing(); h.doFields(nil); h.doPush(); h.get("/verify") },
			broken:  tokenFile,
			expire:  true,
			act:     func(h *harness) response { return h.post("/remove", url.Values{"vin": {testVIN}}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			tt.prepare(h)
			h.breakFile(tt.broken)
			if tt.expire {
				h.fake.ExpireAccessTokens()
			}
			h.expectPage(tt.act(h), http.StatusInternalServerError,
				`class="problem"`, tt.broken, "not at Tesla")
		})
	}
}

// TestLocalFailureAtLogin: a token that cannot be saved at login fails
// the callback with 500; its tab, on the internet, says only that it
// failed here, and the setup page's poll says what failed.
func TestLocalFailureAtLogin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	h.breakFile(tokenFile)
	r := h.ownerLogin()
	h.expectPage(r, http.StatusInternalServerError, `class="problem"`, "on its own computer")
	if strings.Contains(r.body, tokenFile) || strings.Contains(r.body, h.dir) {
		t.Errorf("the public callback page names local files: %s", excerpt(r.body))
	}
	poll := h.getJSON("/owner-status?since=0")
	if !strings.Contains(poll.body, tokenFile) || !strings.Contains(poll.body, "not at Tesla") || strings.Contains(poll.body, `"done":true`) {
		t.Errorf("the setup page's poll: %s", poll.body)
	}
}

// TestTeslaFailuresStay502 checks the other side on the same steps: when
// Tesla fails, the answer is still 502 Bad Gateway.
func TestTeslaFailuresStay502(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.doApp()
	h.doKey()
	h.doRegister()
	h.doOwner()
	h.fake.Fail(fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusServiceUnavailable})
	h.expectPage(h.get("/vehicles"), http.StatusBadGateway, "Tesla&#39;s servers had a problem (503)")
}
