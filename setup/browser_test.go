package setup

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// The setup page in a real browser: Debian's headless Chromium, driven by
// chromedp, walks every step from the password to the first record, once
// on the page's own address and once under a path prefix as Home
// Assistant's ingress serves it. Everything stays on loopback. Screenshots
// of every step go to the test's artifact directory (go test -artifacts
// -outputdir DIR keeps them).

// chromiumPath finds Debian's Chromium, or skips (fails on CI) naming the
// package.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	const msg = "headless Chromium not found: install the Debian package chromium (apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium with a phone-sized viewport.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return newBrowserWith(t, "")
}

// newBrowserWith starts it, phone-sized, with host resolver rules of the
// test's own (such as mapping the public hostname to a loopback listener)
// before the rule that sends every other name nowhere, and extra flags.
func newBrowserWith(t *testing.T, rules string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return startBrowser(t, phone, rules, extra...)
}

// newBrowserSized starts a headless Chromium with a viewport of w×h CSS
// pixels, a phone's (mobile, twice as dense) or a desktop's.
func newBrowserSized(t *testing.T, w, h int, mobile bool) context.Context {
	t.Helper()
	return startBrowser(t, viewport{w, h, mobile}, "")
}

// viewport is the size of the browser's page in CSS pixels; a mobile one
// is twice as dense and emulates a phone.
type viewport struct {
	w, h   int
	mobile bool
}

var phone = viewport{390, 844, true}

func startBrowser(t *testing.T, vp viewport, rules string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if rules != "" {
		rules += ", "
	}
	path := chromiumPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		// Nothing but loopback: names resolve to nowhere.
		chromedp.Flag("host-resolver-rules", rules+"MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(vp.w, vp.h),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(opts, extra...)...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	emulate := []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile}
	if !vp.mobile {
		emulate = []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(int64(vp.w), int64(vp.h), emulate...)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// browserRun is one walk through the wizard.
type browserRun struct {
	t    *testing.T
	ctx  context.Context
	h    *harness
	base string // the page's address as the browser sees it, ending in /
	shot int
	// where, when set, says where the page is, for failure messages.
	where func() string
}

func (b *browserRun) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		diag, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(diag, chromedp.Location())
		html, _ := chromedp.Run(diag, chromedp.OuterHTML(chromedp.CSS("main")))
		b.t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, excerpt(html))
	}
}

func (b *browserRun) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitText waits until the element's text contains want.
func (b *browserRun) waitText(sel, want string) {
	b.t.Helper()
	for {
		s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
		if err == nil && strings.Contains(s, want) {
			return
		}
		select {
		case <-b.ctx.Done():
			b.t.Fatalf("%s never said %q (last %q, %v)", sel, want, s, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// screenshot saves the whole page as step-NN-name.png.
func (b *browserRun) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.shot++
	path := filepath.Join(b.t.ArtifactDir(), fmt.Sprintf("step-%02d-%s.png", b.shot, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// walk goes through every step from the first page of the wizard.
func (b *browserRun) walk(withPassword bool) {
	t, h := b.t, b.h
	vinSel := func(prefix string) string { return "#" + prefix + "-" + testVIN }

	if withPassword {
		// Without the password the page asks for it, and refuses a wrong one.
		b.do("open the page", chromedp.Navigate(b.base+"app"), chromedp.WaitVisible(chromedp.CSS("#password")))
		b.screenshot("login")
		b.do("wrong password",
			chromedp.SendKeys(chromedp.CSS("#password"), "not it"),
			chromedp.Click(chromedp.CSS("main form button")),
			chromedp.WaitVisible(chromedp.CSS("#problem")))
		b.waitText("#problem", "Wrong password")
		b.do("log in",
			chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
			chromedp.Click(chromedp.CSS("main form button")),
			chromedp.WaitVisible(chromedp.CSS("#host")))
	} else {
		b.do("open the page", chromedp.Navigate(b.base), chromedp.WaitVisible(chromedp.CSS("#host")))
	}

	// 1. The values to enter at Tesla; the redirect URI is on the public
	// hostname.
	b.waitText("#redirect-uri", "https://<your hostname>/oauth/callback")
	b.do("fill in the application",
		chromedp.SendKeys(chromedp.CSS("#host"), testHost),
		chromedp.SendKeys(chromedp.CSS("#client_id"), h.fake.ClientID()),
		chromedp.SendKeys(chromedp.CSS("#client_secret"), h.fake.ClientSecret()))
	b.waitText("#origin", "https://"+testHost)
	b.waitText("#redirect-uri", testRedirect)
	b.screenshot("app")
	// The user enters the shown redirect URI at Tesla.
	h.fake.SetRedirectURIs(b.text("#redirect-uri"))
	b.do("save the application", chromedp.Click(chromedp.CSS("main form.card button")),
		chromedp.WaitVisible(chromedp.CSS(`button[value=create]`)))

	// 2. Key pair and the reachability check.
	b.do("create the key", chromedp.Click(chromedp.CSS(`button[value=create]`)), chromedp.WaitVisible(chromedp.CSS(`button[value=check]`)))
	b.screenshot("key")
	b.do("check the key", chromedp.Click(chromedp.CSS(`button[value=check]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=region]`)))

	// 3. Registration in the preselected regions.
	b.screenshot("register")
	b.do("register", chromedp.Click(chromedp.CSS("main form button")), chromedp.WaitVisible(chromedp.CSS(`form[action=owner] button`)))

	// 4. Owner login on (fake) Tesla's page, in a new tab, back to the
	// public hostname; this page moves on by itself.
	b.screenshot("owner")
	b.loginInNewTab(chromedp.Click(chromedp.CSS(`form[action=owner] button`)))
	b.do("the page moves on", chromedp.WaitVisible(chromedp.CSS(`input[name=vin]`)))

	// 5. The car.
	b.screenshot("vehicles")
	b.do("choose the car", chromedp.Click(chromedp.CSS("main form button")), chromedp.WaitVisible(chromedp.CSS(".qr svg")))

	// 6. Pairing: link, QR code, and the page notices the key by itself.
	b.screenshot("pairing")
	link, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS("a.pairing-link"), "href"))
	if err != nil || link.Value != "https://tesla.com/_ak/"+testHost+"?vin="+testVIN {
		t.Errorf("pairing link %v %v", link, err)
	}
	b.waitText(vinSel("pair"), "Paired")
	b.do("continue after pairing", chromedp.WaitVisible(chromedp.CSS("#continue")), chromedp.Click(chromedp.CSS("#continue")),
		chromedp.WaitVisible(chromedp.CSS("#fields-form")))

	// 7. A preset, with the estimate following it.
	b.do("charging preset", chromedp.Click(chromedp.CSS(`button[data-preset=charging]`)))
	charging, _ := presetByID("charging")
	b.waitText("#estimate", fmt.Sprintf("%d signals at most every", len(charging.names)))
	b.screenshot("fields")
	b.do("save the signals", chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`form[action=push] button`)))

	// 8. The signed push.
	b.screenshot("push")
	b.do("push", chromedp.Click(chromedp.CSS(`form[action=push] button`)), chromedp.WaitVisible(chromedp.CSS(vinSel("cfg"))))

	// 9. The car picks the config up, then its first record arrives.
	b.waitText(vinSel("cfg"), "The car has the config")
	checkPushedFields(t, h, len(charging.names))
	h.w.RecordSeen(testVIN, time.Now())
	b.waitText(vinSel("rec"), "First record arrived at")
	b.do("all done", chromedp.WaitVisible(chromedp.CSS("#all-done")))
	b.screenshot("verify")
	if state, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(vinSel("rec")), "data-state")); err != nil || state.Value != "ok" {
		t.Errorf("record state %v %v", state, err)
	}
}

// loginInNewTab clicks (a real click: the browser opens windows only for
// those) the button that starts Tesla's login, which must open a new
// top-level tab; there it signs in on the fake's login page and waits for
// the callback's "Logged in as".
func (b *browserRun) loginInNewTab(click chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	opened := chromedp.WaitNewTarget(b.ctx, func(i *target.Info) bool { return i.Type == "page" })
	b.do("click Log in with Tesla", click)
	var id target.ID
	select {
	case id = <-opened:
	case <-time.After(20 * time.Second):
		where := ""
		if b.where != nil {
			where = "; " + b.where()
		}
		b.t.Fatalf("Tesla's login never opened in a new tab%s", where)
	}
	tab, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(id))
	defer cancel()
	tb := &browserRun{t: b.t, ctx: tab, h: b.h, shot: b.shot}
	tb.do("Tesla's login page", chromedp.WaitVisible(chromedp.CSS("#allow")))
	if loc, _ := chromedp.Run(tab, chromedp.Location()); !strings.HasPrefix(loc, b.h.fake.Endpoints().AuthorizeURL) {
		b.t.Errorf("the new tab is at %s, not Tesla's login page", loc)
	}
	tb.screenshot("tesla-login")
	tb.do("sign in at Tesla", chromedp.Click(chromedp.CSS("#allow")), chromedp.WaitVisible(chromedp.CSS("#result")))
	tb.waitText("#result", "Logged in as "+fleetapitest.OwnerName)
	if loc, _ := chromedp.Run(tab, chromedp.Location()); !strings.HasPrefix(loc, testRedirect+"?") {
		b.t.Errorf("Tesla sent the tab to %s, want the public hostname's callback", loc)
	}
	tb.screenshot("logged-in")
	b.shot = tb.shot
}

// vehicleRule maps the public hostname to the harness's vehicle listener
// for Chromium, which must then ignore that its certificate names
// 127.0.0.1 and ::1 only.
func vehicleRule(h *harness) (string, chromedp.ExecAllocatorOption) {
	return "MAP " + testHost + " " + strings.TrimPrefix(h.vehicle.URL, "https://"), chromedp.Flag("ignore-certificate-errors", true)
}

// checkPushedFields: the fake received (and verified) the signed config
// with the chosen signals.
func checkPushedFields(t *testing.T, h *harness, n int) {
	t.Helper()
	raw := string(h.fake.PushedConfig(testVIN))
	if raw == "" || strings.Count(raw, "interval_seconds") != n {
		t.Errorf("pushed config has %d fields, want %d", strings.Count(raw, "interval_seconds"), n)
	}
}

func browserVehicles() []fleetapitest.Vehicle {
	return []fleetapitest.Vehicle{{VIN: testVIN, DisplayName: "Red Rocket", PairAfterPolls: 2, SyncAfterPolls: 2}}
}

// TestBrowserWizard walks the wizard with the password, on the page's own
// address.
func TestBrowserWizard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	h := newHarness(t, harnessOptions{vehicles: browserVehicles(), pagePoll: 50 * time.Millisecond})
	rule, ignoreCert := vehicleRule(h)
	ctx := newBrowserWith(t, rule, ignoreCert)
	b := &browserRun{t: t, ctx: ctx, h: h, base: h.srv.URL + "/"}
	b.walk(true)
	t.Logf("screenshots in %s", t.ArtifactDir())
}

// TestBrowserWizardIngress walks it under Home Assistant's ingress: a
// proxy on loopback adds the path prefix and X-Ingress-Path, no password
// is asked, and every link, form, redirect and script request stays under
// the prefix.
func TestBrowserWizardIngress(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	h := newHarness(t, harnessOptions{
		cfg:      Config{TrustIngress: true, IngressAddress: "127.0.0.1"},
		vehicles: browserVehicles(), pagePoll: 50 * time.Millisecond,
	})
	rule, ignoreCert := vehicleRule(h)
	ctx := newBrowserWith(t, rule, ignoreCert)
	const prefix = "/api/hassio_ingress/Xk2mLq9"
	var (
		mu      sync.Mutex
		outside []string
	)
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		target := *pr.In.URL
		target.Scheme, target.Host = "http", strings.TrimPrefix(h.srv.URL, "http://")
		target.Path = strings.TrimPrefix(pr.In.URL.Path, prefix)
		target.RawPath = ""
		pr.Out.URL = &target
		pr.Out.Header.Set(ingressHeader, prefix)
		pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
		pr.Out.Header.Set("X-Forwarded-Proto", "http")
	}}
	front := http.NewServeMux()
	front.Handle(prefix+"/", proxy)
	front.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		// Anything outside the prefix is a relative URL gone wrong.
		mu.Lock()
		outside = append(outside, r.URL.Path)
		mu.Unlock()
		http.NotFound(rw, r)
	})
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	b := &browserRun{t: t, ctx: ctx, h: h, base: srv.URL + prefix + "/"}
	b.walk(false)
	mu.Lock()
	defer mu.Unlock()
	if len(outside) > 0 {
		t.Errorf("requests left the ingress prefix: %v", outside)
	}
}
