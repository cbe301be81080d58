package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	"github.com/fleet2mqtt/fleet2mqtt/command/proxy"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

const vin = "5YJ3E1EA7KF000001"

type rig struct {
	fleet  *fakefleet.Fleet
	car    *fleetapitest.Car
	srv    *httptest.Server // the proxy API over TLS on loopback
	token  string
	client *http.Client
}

func newRig(t *testing.T) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	fleet, err := fakefleet.Start(context.Background(), fakefleet.Options{VINs: []string{vin}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	// The engine's own transport is never used here: every command
	// brings the caller's token.
	engine, err := command.New(command.Config{Key: fleet.Key, SessionDir: filepath.Join(t.TempDir(), "commands"),
		RateLimit: &command.RateLimit{}}, log)
	if err != nil {
		t.Fatal(err)
	}
	base, err := fleet.Server.Endpoints().BaseURL(fleetapi.RegionNA)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(base)
	settings := command.DefaultSettings()
	settings.Enabled = true
	h, err := proxy.New(proxy.Config{Settings: settings, Engine: engine, FleetAPI: func() (*url.URL, error) { return u, nil },
		Via: func(tok string) command.Transport {
			return fleet.Client.Owner(fleetapi.BearerToken(tok), fleetapi.RegionNA)
		}}, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	tok, err := fleet.AccessToken()
	if err != nil {
		t.Fatal(err)
	}
	return &rig{fleet: fleet, car: fleet.Server.Car(vin), srv: srv, token: tok, client: srv.Client()}
}

func (r *rig) do(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func TestCommandWithTheCallersToken(t *testing.T) {
	r := newRig(t)
	status, out := r.do(t, "POST", "/api/1/vehicles/"+vin+"/command/set_charge_limit", r.token, `{"percent":65}`)
	want := map[string]any{"response": map[string]any{"result": true, "reason": ""}}
	if status != 200 || !equalJSON(out, want) {
		t.Fatalf("%d %v, want 200 %v", status, out, want)
	}
	if st := r.car.State(); st.ChargeLimit != 65 {
		t.Errorf("charge limit %d, want 65", st.ChargeLimit)
	}
	// A second command costs one round trip: the session is kept.
	before, _, _ := r.car.Counts()
	if status, out := r.do(t, "POST", "/api/1/vehicles/"+vin+"/command/charge_start", r.token, ``); status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if after, _, _ := r.car.Counts(); after != before+1 || !r.car.State().Charging {
		t.Errorf("signed commands %d → %d, charging %t", before, after, r.car.State().Charging)
	}
}

func TestCarRefusalHasTeslasShape(t *testing.T) {
	r := newRig(t)
	st := r.car.State()
	st.PluggedIn = false
	r.car.SetState(st)
	status, out := r.do(t, "POST", "/api/1/vehicles/"+vin+"/command/charge_start", r.token, `{}`)
	resp, _ := out["response"].(map[string]any)
	if status != 200 || resp["result"] != false || resp["reason"] == "" {
		t.Fatalf("%d %v: want 200 with result false and a reason", status, out)
	}
}

func TestRefusedBeforeTheCar(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		path, token, body string
		status            int
	}{
		{"/api/1/vehicles/" + vin + "/command/flash_lights", "", "", 401},
		{"/api/1/vehicles/" + vin + "/command/door_unlock", r.token, "", 403}, // access is off
		{"/api/1/vehicles/" + vin + "/command/set_charge_limit", r.token, `{"percent":5}`, 400},
		{"/api/1/vehicles/" + vin + "/command/no_such_command", r.token, "", 400},
		{"/api/1/vehicles/" + vin + "/command/flash_lights", "not-a-tesla-token", "", 401},
	} {
		status, out := r.do(t, "POST", tc.path, tc.token, tc.body)
		if status != tc.status || out["error"] == nil {
			t.Errorf("%s (token %q): %d %v, want %d with an error", tc.path, tc.token, status, out, tc.status)
		}
	}
	if st := r.car.State(); st.Flashes != 0 || !st.Locked || st.ChargeLimit != 80 {
		t.Errorf("refused commands changed the car: %+v", st)
	}
}

func TestOtherRequestsAreForwarded(t *testing.T) {
	r := newRig(t)
	status, out := r.do(t, "GET", "/api/1/vehicles/"+vin, r.token, "")
	resp, _ := out["response"].(map[string]any)
	if status != 200 || resp["vin"] != vin {
		t.Fatalf("%d %v: want the fake's vehicle", status, out)
	}
	if status, _ := r.do(t, "GET", "/api/1/vehicles/"+vin, "", ""); status != 401 {
		t.Errorf("without a token: %d, want Tesla's 401", status)
	}
	if status, _ = r.do(t, "POST", "/api/1/vehicles/"+vin+"/wake_up", r.token, ""); status != 200 {
		t.Errorf("wake_up forwarded: %d", status)
	}
	if _, _, wakes := r.car.Counts(); wakes != 1 {
		t.Errorf("the car saw %d wake_up calls, want 1", wakes)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Paths that could climb out of what they name are refused before
// anything is forwarded or run.
func TestClimbingPathsRefused(t *testing.T) {
	r := newRig(t)
	for _, p := range []string{
		"/api/1/../../etc/passwd",
		"/api/1/vehicles/" + vin + "/command/../../../x",
		"/api/1/vehicles/..%2f..%2fx",
		"/api/1/vehicles/%5c..%5cx",
		"/api/1/./vehicles",
	} {
		for _, method := range []string{"GET", "POST"} {
			if code, body := r.do(t, method, p, r.token, "{}"); code != http.StatusBadRequest {
				t.Errorf("%s %s: %d %v, want 400", method, p, code, body)
			}
		}
	}
	if code, _ := r.do(t, "GET", "/api/1/vehicles", r.token, ""); code != http.StatusOK {
		t.Errorf("a plain path: %d", code)
	}
}

// A request framed with Transfer-Encoding is the last on its connection.
func TestChunkedRequestClosesTheConnection(t *testing.T) {
	r := newRig(t)
	req, _ := http.NewRequest("POST", r.srv.URL+"/api/1/vehicles/"+vin+"/command/flash_lights", io.NopCloser(strings.NewReader("{}")))
	req.ContentLength = -1 // chunked
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("%d, close %v: want 200 and the connection closed", resp.StatusCode, resp.Close)
	}
}
