package setup

import (
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

func TestNormalizeHost(t *testing.T) {
	ok := []struct{ in, want string }{
		{"telemetry.example.com", "telemetry.example.com"},
		{"  Telemetry.Example.COM ", "telemetry.example.com"},
		{"https://telemetry.example.com/", "telemetry.example.com"},
		{"HTTPS://Telemetry.Example.com:443/", "telemetry.example.com"},
		{"http://telemetry.example.com", "telemetry.example.com"},
		{"telemetry.example.com/", "telemetry.example.com"},
		{"telemetry.example.com.", "telemetry.example.com"},
		{"telemetry.example.com:443", "telemetry.example.com"},
	}
	for _, c := range ok {
		got, err := normalizeHost(c.in, 443)
		if err != nil || got != c.want {
			t.Errorf("normalizeHost(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, want string }{
		{"https://host.example.com:8443/", "port 8443 cannot be used in the public hostname: cars and Tesla always connect on port 443, so enter the name alone (host.example.com)"},
		{"host.example.com:8443", "port 8443 cannot be used"},
		{"https://host.example.com/callback", "is more than a name: enter the name alone, such as host.example.com"},
		{"ftp://host.example.com", "is not a web address"},
		{"localhost", "not a public DNS name"},
		{"", "enter the public hostname"},
		{"192.0.2.1", "IP address"},
	}
	for _, c := range bad {
		_, err := normalizeHost(c.in, 443)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("normalizeHost(%q) error %v; want one containing %q", c.in, err, c.want)
		}
	}
	// The port the cars are told to dial is accepted too.
	if got, err := normalizeHost("host.example.com:8443", 8443); err != nil || got != "host.example.com" {
		t.Errorf("with setup.port 8443: %q, %v", got, err)
	}
	if _, err := normalizeHost("host.example.com:9000", 8443); err == nil || !strings.Contains(err.Error(), "the cars dial port 8443 (setup.port)") {
		t.Errorf("with setup.port 8443, port 9000: %v", err)
	}
}

// TestAppStepNormalizesPastedHost: what people paste is kept as the bare
// name, and the boxes to copy never show a doubled scheme.
func TestAppStepNormalizesPastedHost(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.get("/app")
	h.expectRedirect(h.post("/app", url.Values{
		"host": {"HTTPS://Telemetry.Example.com:443/"}, "redirect": {h.srv.URL + "/callback"},
		"client_id": {h.fake.ClientID()}, "client_secret": {h.fake.ClientSecret()},
	}), "key")
	r := h.get("/app")
	h.expectPage(r, http.StatusOK, `value="telemetry.example.com"`, `<code id="origin" class="copy">https://telemetry.example.com</code>`)
}

// TestAppStepRefusedFormKeepsSecret: a refused hostname says why in one
// sentence, keeps the secret typed with it, and shows no doubled scheme.
func TestAppStepRefusedFormKeepsSecret(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.get("/app")
	r := h.post("/app", url.Values{
		"host": {"https://telemetry.example.com:8443/"}, "redirect": {h.srv.URL + "/callback"},
		"client_id": {h.fake.ClientID()}, "client_secret": {h.fake.ClientSecret()},
	})
	h.expectPage(r, http.StatusUnprocessableEntity,
		"Port 8443 cannot be used in the public hostname: cars and Tesla always connect on port 443",
		"The client secret is kept: leave its field empty.",
		"stored (hidden): leave empty to keep it",
		`<code id="origin" class="copy">https://telemetry.example.com</code>`)
	if strings.Contains(r.body, "https://https://") {
		t.Error("the page shows a doubled scheme")
	}
	// The corrected hostname alone, the secret left empty, completes the
	// step.
	h.expectRedirect(h.post("/app", url.Values{
		"host": {"telemetry.example.com"}, "redirect": {h.srv.URL + "/callback"},
		"client_id": {h.fake.ClientID()}, "client_secret": {""},
	}), "key")
}

// TestCredentialCheckLogsWhatHappened: Tesla out of reach is logged as
// such, not as Tesla refusing the credentials; a wrong secret is.
func TestCredentialCheckLogsWhatHappened(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.get("/app")
	r := h.post("/app", url.Values{"host": {testHost}, "redirect": {h.srv.URL + "/callback"},
		"client_id": {h.fake.ClientID()}, "client_secret": {"wrong"}})
	h.expectPage(r, http.StatusBadGateway)
	if !strings.Contains(h.logs.String(), "tesla refused the application's credentials") {
		t.Errorf("a wrong secret is not logged as refused:\n%s", h.logs)
	}

	// A Tesla nobody answers: a loopback port with no listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	logs := &syncBuffer{}
	w, err := New(Config{Password: testPassword, PublicHostname: testHost, ClientID: "id", ClientSecret: "secret", RedirectURL: "https://" + testHost + "/callback"},
		t.TempDir(), Deps{TeslaEndpoints: fleetapi.Endpoints{AuthorizeURL: dead + "/authorize", TokenURL: dead + "/token",
			APIBase: map[fleetapi.Region]string{fleetapi.RegionNA: dead, fleetapi.RegionEU: dead, fleetapi.RegionCN: dead}}, PasswordOut: &syncBuffer{}},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.flow.saveApp(t.Context(), appAnswers{}); err == nil {
		t.Fatal("the check passed against a Tesla that does not answer")
	}
	if s := logs.String(); strings.Contains(s, "tesla refused") || !strings.Contains(s, "could not reach tesla (DNS or connection failure) to check the application's credentials") {
		t.Errorf("a connection failure is logged as:\n%s", s)
	}
}

// TestVerifyHomeAssistant: the last page says whether Home Assistant is
// connected to the broker, what to do when it is not, and that it cannot
// tell when nobody told it; times carry the date and the time zone.
func TestVerifyHomeAssistant(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var (
		mu   sync.Mutex
		at   time.Time
		seen bool
	)
	h.w.flow.deps.HomeAssistantSeen = func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		return at, seen
	}
	h.throughPairing()
	h.doFields(nil)
	h.doPush()
	h.expectPage(h.get("/verify"), http.StatusOK, "Home Assistant has not connected to this MQTT broker yet", "add the MQTT integration")
	mu.Lock()
	at, seen = time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC), true
	mu.Unlock()
	r := h.getJSON("/verify-status")
	if !strings.Contains(r.body, `"id":"home-assistant","text":"Home Assistant is connected to this MQTT broker: it said it was online at `) ||
		!strings.Contains(r.body, " on 1 Mar 2026") {
		t.Errorf("the page script is not told Home Assistant is connected: %s", r.body)
	}
	h.w.RecordSeen(testVIN, time.Date(2026, 3, 1, 12, 31, 5, 0, time.UTC))
	r = h.getJSON("/verify-status")
	zone := regexp.MustCompile(`First record arrived at \d\d:\d\d:\d\d (UTC[+-]\d\d:\d\d|[A-Z]{2,5}) on 1 Mar 2026`)
	if !zone.MatchString(r.body) {
		t.Errorf("the first record's time lacks date or zone: %s", r.body)
	}

	h.w.flow.deps.HomeAssistantSeen = nil
	h.expectPage(h.get("/verify"), http.StatusOK, "fleet2mqtt cannot tell from here whether Home Assistant is connected")
}

func TestTeslaStamp(t *testing.T) {
	for _, in := range []string{"2026-03-01T12:00:00Z", "1772366400", "1772366400000"} {
		if got := teslaStamp(in); !strings.Contains(got, "1 Mar 2026") {
			t.Errorf("teslaStamp(%q) = %q", in, got)
		}
	}
	if got := teslaStamp("yesterday"); got != "yesterday" {
		t.Errorf("an unreadable time became %q", got)
	}
}

// TestFieldPickerReadable: every signal shows Home Assistant's entity name
// and the catalog's description, the chosen preset is marked, and the
// resend interval goes into the pushed config.
func TestFieldPickerReadable(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	r := h.get("/fields")
	h.expectPage(r, http.StatusOK,
		"<b>BMS full charge complete</b>", "Battery management reports the pack as fully charged.",
		`<code class="field-name">BmsFullchargecomplete</code>`,
		`class="secondary preset active" aria-pressed="true" data-preset="essentials"`,
		`id="signal-search"`, `class="sticky-bar"`)
	if strings.Contains(r.body, "<b>BmsFullchargecomplete</b>") {
		t.Error("a signal is shown by its protocol name")
	}
	// Too short a resend is refused with the reason; a good one is kept
	// and pushed.
	form := url.Values{"interval": {"60"}, "resend": {"30"}, "field": {"Soc", "Gear"}}
	h.expectPage(h.post("/fields", form), http.StatusUnprocessableEntity, "more often than the interval (60 s)")
	form.Set("resend", "3600")
	h.expectRedirect(h.post("/fields", form), "push")
	r = h.get("/fields")
	h.expectPage(r, http.StatusOK, `id="resend" name="resend" type="number" min="1" max="86400" value="3600"`)
	if strings.Contains(r.body, `preset active`) {
		t.Error("a preset is marked for a selection that is none of them")
	}
	h.doPush()
	if raw := string(h.fake.PushedConfig(testVIN)); strings.Count(raw, `"resend_interval_seconds":3600`) != 2 {
		t.Errorf("pushed config lacks the resend interval: %s", raw)
	}
}

// TestDeepLinksAndNotFound: the login callback opened before its step is
// sent to the first open step; an unknown path gets a page with a way
// back, from any depth.
func TestDeepLinksAndNotFound(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.expectRedirect(h.get("/callback?code=x&state=y"), "app")
	h.expectPage(h.get("/app"), http.StatusOK, "Finish “Your Tesla developer application” first")
	r := h.getJSON("/verify-status")
	if r.status != http.StatusConflict || !strings.Contains(r.body, `"problem":"Finish`) {
		t.Errorf("a script asking a locked step: %d %s", r.status, r.body)
	}
	for path, back := range map[string]string{"/nothing": `href="./"`, "/a/b/c": `href="../../"`} {
		r := h.get(path)
		h.expectPage(r, http.StatusNotFound, "This page does not exist", "Back to the setup", back)
		if !strings.Contains(r.body, strings.TrimSuffix(strings.TrimPrefix(back, `href="`), `"`)+"static/style.css") {
			t.Errorf("%s: the stylesheet is not reached from there", path)
		}
	}
	if r := h.post("/verify", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /verify: %d, want 405", r.status)
	}
}
