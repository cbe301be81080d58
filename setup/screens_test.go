package setup

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserScreens walks the wizard in a real browser on a phone and on
// a desktop and saves a screenshot of every step and of the moments that
// matter to a homeowner: a deep link opened too early, a pasted hostname
// refused and one accepted, the signal picker's search and sticky bar,
// Home Assistant not yet connected and then connected, and a page that
// does not exist. Run with -artifacts -outputdir DIR to keep them.
func TestBrowserScreens(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	for _, vp := range []struct {
		name   string
		w, h   int
		mobile bool
	}{{"phone", 390, 844, true}, {"desktop", 1280, 900, false}} {
		t.Run(vp.name, func(t *testing.T) {
			ctx := newBrowserSized(t, vp.w, vp.h, vp.mobile)
			h := newHarness(t, harnessOptions{vehicles: browserVehicles(), pagePoll: 50 * time.Millisecond})
			var (
				mu     sync.Mutex
				haAt   time.Time
				haSeen bool
			)
			h.w.flow.deps.HomeAssistantSeen = func() (time.Time, bool) {
				mu.Lock()
				defer mu.Unlock()
				return haAt, haSeen
			}
			b := &browserRun{t: t, ctx: ctx, h: h, base: h.srv.URL + "/"}
			s := &screens{b: b, prefix: vp.name}
			s.walk(func() {
				mu.Lock()
				defer mu.Unlock()
				haAt, haSeen = time.Now(), true
			})
			t.Logf("screenshots in %s", t.ArtifactDir())
		})
	}
}

// screens takes the named screenshots of one walk.
type screens struct {
	b      *browserRun
	prefix string
	n      int
}

// full saves the whole page; view saves what the viewport shows.
func (s *screens) full(name string) { s.save(name, chromedp.FullScreenshot(100)) }
func (s *screens) view(name string) { s.save(name, chromedp.CaptureScreenshot()) }

func (s *screens) save(name string, shot chromedp.Action[[]byte]) {
	s.b.t.Helper()
	png, err := chromedp.Run(s.b.ctx, shot)
	if err != nil {
		s.b.t.Fatalf("screenshot %s: %v", name, err)
	}
	s.n++
	path := filepath.Join(s.b.t.ArtifactDir(), fmt.Sprintf("%s-%02d-%s.png", s.prefix, s.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		s.b.t.Fatal(err)
	}
}

func (s *screens) walk(homeAssistantConnects func()) {
	b, h, t := s.b, s.b.h, s.b.t

	b.do("open the page", chromedp.Navigate(b.base+"app"), chromedp.WaitVisible(chromedp.CSS("#password")))
	s.full("login")
	b.do("log in", chromedp.SendKeys(chromedp.CSS("#password"), testPassword), chromedp.Click(chromedp.CSS("main form button")),
		chromedp.WaitVisible(chromedp.CSS("#host")))

	// A deep link before its step: back to the first open step, saying so.
	b.do("open the login callback early", chromedp.Navigate(b.base+"callback?code=x&state=y"), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.waitText(".flash", "first")
	s.full("deep-link-gated")

	// Step 1: prerequisites, a pasted address with the wrong port refused
	// (the secret kept), then one with a scheme and upper case accepted.
	s.full("app")
	b.do("paste a hostname with a port",
		chromedp.SendKeys(chromedp.CSS("#host"), "https://Telemetry.Example.com:8443/"),
		chromedp.SendKeys(chromedp.CSS("#client_id"), h.fake.ClientID()),
		chromedp.SendKeys(chromedp.CSS("#client_secret"), h.fake.ClientSecret()))
	b.waitText("#origin", "https://telemetry.example.com")
	h.fake.SetRedirectURIs(b.text("#redirect-uri"))
	b.do("save", chromedp.Click(chromedp.CSS("main form.card button")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	b.waitText("#problem", "Port 8443 cannot be used")
	b.waitText("#problem", "The client secret is kept")
	s.full("app-refused-port")
	b.do("paste the address again",
		chromedp.Clear(chromedp.CSS("#host")),
		chromedp.SendKeys(chromedp.CSS("#host"), "HTTPS://Telemetry.Example.com/"))
	b.waitText("#origin", "https://telemetry.example.com")
	if o := b.text("#origin"); o != "https://telemetry.example.com" {
		t.Errorf("origin box shows %q", o)
	}
	s.full("app-pasted")
	b.do("save the application", chromedp.Click(chromedp.CSS("main form.card button")), chromedp.WaitVisible(chromedp.CSS(`button[value=create]`)))

	// Steps 2 and 3.
	b.do("create the key", chromedp.Click(chromedp.CSS(`button[value=create]`)), chromedp.WaitVisible(chromedp.CSS(`button[value=check]`)))
	s.full("key")
	b.do("check the key", chromedp.Click(chromedp.CSS(`button[value=check]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=region]`)))
	s.full("register")
	b.do("register", chromedp.Click(chromedp.CSS("main form button")), chromedp.WaitVisible(chromedp.CSS(`form[action=owner] button`)))
	s.full("owner")

	// Step 4 through the page's own client (the login flow has tests of
	// its own); the state is shared.
	h.login()
	h.doOwner()

	b.do("the cars", chromedp.Navigate(b.base+"vehicles"), chromedp.WaitVisible(chromedp.CSS(`input[name=vin]`)))
	s.full("vehicles")
	b.do("choose the car", chromedp.Click(chromedp.CSS("main form button")), chromedp.WaitVisible(chromedp.CSS(".qr svg")))
	s.full("pairing")
	b.waitText("#pair-"+testVIN, "Paired")
	b.do("continue after pairing", chromedp.WaitVisible(chromedp.CSS("#continue")), chromedp.Click(chromedp.CSS("#continue")),
		chromedp.WaitVisible(chromedp.CSS("#fields-form")))

	// Step 7: the preset marked, readable names, search, sticky bar.
	b.waitText(`button.preset.active`, "Home Assistant essentials")
	s.full("fields")
	b.do("charging preset", chromedp.Click(chromedp.CSS(`button[data-preset=charging]`)))
	b.waitText(`button.preset.active`, "Charging")
	charging, _ := presetByID("charging")
	b.waitText("#estimate", fmt.Sprintf("%d signals at most every", len(charging.names)))
	b.do("search", chromedp.SendKeys(chromedp.CSS("#signal-search"), "tire pressure"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('label[for=signal-search]').scrollIntoView({block: 'start'})`))
	b.waitText("#signal-groups", "TPMS")
	s.view("fields-search")
	b.do("clear the search",
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('signal-search'); s.value = ''; s.dispatchEvent(new Event('input', {bubbles: true})); })()`),
		chromedp.ScrollIntoView(chromedp.CSS(`#signal-groups details:nth-of-type(2) li:nth-of-type(4)`)))
	s.view("fields-sticky-bar")
	b.do("save the signals", chromedp.Click(chromedp.CSS(`button[value=save]`)), chromedp.WaitVisible(chromedp.CSS(`form[action=push] button`)))

	// Step 8 explains alerts and delivery.
	b.waitText("main", "besides the signals, the car sends the alerts")
	s.full("push")
	b.do("push", chromedp.Click(chromedp.CSS(`form[action=push] button`)), chromedp.WaitVisible(chromedp.CSS("#cfg-"+testVIN)))

	// Step 9: data arrives; Home Assistant not connected, then connected.
	b.waitText("#cfg-"+testVIN, "The car has the config")
	h.w.RecordSeen(testVIN, time.Now())
	b.waitText("#rec-"+testVIN, "First record arrived at")
	b.waitText("#home-assistant", "has not connected")
	s.full("verify-home-assistant-missing")
	homeAssistantConnects()
	b.waitText("#home-assistant", "Home Assistant is connected")
	s.full("verify-home-assistant-connected")

	// A page that does not exist.
	b.do("a wrong address", chromedp.Navigate(b.base+"setup/old/bookmark"), chromedp.WaitVisible(chromedp.CSS(".notfound")))
	s.full("not-found")
	b.do("back", chromedp.Click(chromedp.CSS(".notfound a.button")), chromedp.WaitVisible(chromedp.CSS("#all-done")))
	if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || loc != b.base+"verify" {
		t.Errorf("the way back led to %q (%v)", loc, err)
	}

}
