package setup

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserWizardHomeAssistant walks the whole wizard, Tesla's login
// included, the way Home Assistant serves the add-on's page:
//
//   - the page is reached only through an ingress-like proxy on
//     http://localhost, inside an iframe of the proxy's own page;
//   - every request under the ingress path needs the proxy's session
//     cookie, set SameSite=Strict by the parent page (as Home Assistant's
//     frontend sets ingress_session); without it the proxy answers a bare
//     401;
//   - Tesla's (fake) login page is on another site, http://127.0.0.1, and
//     refuses to be framed (X-Frame-Options: DENY);
//   - the public hostname's callback is served over TLS by the vehicle
//     listener on a third origin ([::1], reached as the public hostname).
func TestBrowserWizardHomeAssistant(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	vehicleListen := "[::1]:0"
	if ln, err := net.Listen("tcp", vehicleListen); err != nil {
		vehicleListen = "127.0.0.1:0" // no IPv6 loopback: another port is another origin too
	} else {
		ln.Close()
	}
	h := newHarness(t, harnessOptions{
		cfg:      Config{TrustIngress: true, IngressAddress: "127.0.0.1"},
		vehicles: browserVehicles(), pagePoll: 50 * time.Millisecond,
		vehicleListen: vehicleListen,
	})
	ha := newIngressProxy(t, h.srv.URL)
	rule, ignoreCert := vehicleRule(h)
	ctx := newBrowserWith(t, rule+", EXCLUDE localhost", ignoreCert)
	f := &frameRun{browserRun{t: t, ctx: ctx, h: h}}
	f.where = func() string {
		loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { try { return document.querySelector('iframe').contentWindow.location.href } catch (e) { return 'not readable from the parent (' + e.name + ')' } })()`))
		ha.mu.Lock()
		defer ha.mu.Unlock()
		return fmt.Sprintf("the frame is at %s; the ingress proxy refused %v for want of its session cookie", loc, ha.refused)
	}

	f.do("open Home Assistant", chromedp.Navigate(ha.url+"/"))
	f.waitFor("the setup page in the frame", `!!doc().querySelector('#host')`)

	// 1. The application: the redirect URI is the public hostname's.
	if got := f.text("#redirect-uri"); got != "https://<your hostname>/oauth/callback" {
		t.Errorf("redirect URI before the hostname: %q", got)
	}
	f.typeIn("#host", testHost)
	f.typeIn("#client_id", h.fake.ClientID())
	f.typeIn("#client_secret", h.fake.ClientSecret())
	if got := f.text("#redirect-uri"); got != testRedirect {
		t.Errorf("redirect URI shown %q, want %q", got, testRedirect) // go on: the login shows what it does
	}
	h.fake.SetRedirectURIs(f.text("#redirect-uri")) // the owner enters it at Tesla
	f.screenshot("ha-app")
	f.click("main form.card button")
	f.waitFor("the key step", `!!doc().querySelector('button[value=create]')`)

	// 2. and 3. Key pair, its check, registration.
	f.click("button[value=create]")
	f.waitFor("the key check", `!!doc().querySelector('button[value=check]')`)
	f.click("button[value=check]")
	f.waitFor("the registration step", `!!doc().querySelector('input[name=region]')`)
	f.click("main form button")
	f.waitFor("the owner step", `!!doc().querySelector('form[action=owner] button')`)
	f.screenshot("ha-owner")

	// 4. Tesla's login opens in a new tab, never in the frame; the frame
	// moves on by itself once the callback on the public hostname took
	// the login.
	f.loginInNewTab(f.realClick("form[action=owner] button"))
	f.waitFor("the frame moving on to the cars", `!!doc().querySelector('input[name=vin]')`)

	// 5. to 9. The rest of the wizard, in the frame.
	f.screenshot("ha-vehicles")
	f.click("main form button")
	f.waitFor("the pairing step", `!!doc().querySelector('.qr svg')`)
	f.waitFor("the car paired", `(doc().querySelector('#pair-`+testVIN+`')||{}).textContent.includes('Paired')`)
	f.waitFor("the continue button", `!!doc().querySelector('#continue') && !doc().querySelector('#continue').closest('[hidden]')`)
	f.click("#continue")
	f.waitFor("the signal picker", `!!doc().querySelector('#fields-form')`)
	f.click("button[data-preset=charging]")
	charging, _ := presetByID("charging")
	f.waitFor("the estimate", fmt.Sprintf(`doc().querySelector('#estimate').textContent.includes(%q)`, fmt.Sprintf("%d signals at most every", len(charging.names))))
	f.click("button[value=save]")
	f.waitFor("the push step", `!!doc().querySelector('form[action=push] button')`)
	f.click("form[action=push] button")
	f.waitFor("the verify step", `!!doc().querySelector('#cfg-`+testVIN+`')`)
	f.waitFor("the car's config", `doc().querySelector('#cfg-`+testVIN+`').textContent.includes('The car has the config')`)
	checkPushedFields(t, h, len(charging.names))
	h.w.RecordSeen(testVIN, time.Now())
	f.waitFor("the first record", `doc().querySelector('#rec-`+testVIN+`').textContent.includes('First record arrived at')`)
	f.waitFor("all done", `!!doc().querySelector('#all-done')`)
	f.screenshot("ha-verify")

	ha.mu.Lock()
	defer ha.mu.Unlock()
	if len(ha.outside) > 0 {
		t.Errorf("requests left the ingress prefix: %v", ha.outside)
	}
	t.Logf("ingress proxy: %d requests, %d refused without the session cookie (%v)", ha.requests, len(ha.refused), ha.refused)
}

// ingressProxy stands in for Home Assistant: its own page frames the
// add-on's page under /api/hassio_ingress/<token>/, and only requests
// carrying its SameSite=Strict session cookie get through.
type ingressProxy struct {
	url string

	mu       sync.Mutex
	requests int
	refused  []string // paths answered 401 for want of the cookie
	outside  []string // paths outside the prefix that the frame asked for
}

const (
	ingressPrefix = "/api/hassio_ingress/Xk2mLq9"
	ingressCookie = "ingress_session"
	ingressValue  = "b6f0c2e1d4a3"
)

func newIngressProxy(t *testing.T, page string) *ingressProxy {
	t.Helper()
	p := &ingressProxy{}
	target := strings.TrimPrefix(page, "http://")
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		u := *pr.In.URL
		u.Scheme, u.Host = "http", target
		u.Path = strings.TrimPrefix(pr.In.URL.Path, ingressPrefix)
		u.RawPath = ""
		pr.Out.URL = &u
		pr.Out.Header.Set(ingressHeader, ingressPrefix)
		pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
		pr.Out.Header.Set("X-Forwarded-Proto", "http")
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, r *http.Request) {
		// Home Assistant's frontend: it opens an ingress session, then
		// frames the add-on.
		http.SetCookie(rw, &http.Cookie{Name: ingressCookie, Value: ingressValue, Path: "/api/hassio_ingress/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(rw, `<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<style>html,body{margin:0;height:100%%}iframe{border:0;width:100%%;height:100%%;display:block}</style></head>
<body><iframe src="%s/" title="fleet2mqtt"></iframe></body></html>`, ingressPrefix)
	})
	mux.HandleFunc(ingressPrefix+"/", func(rw http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests++
		c, err := r.Cookie(ingressCookie)
		if err != nil || c.Value != ingressValue {
			p.refused = append(p.refused, r.URL.Path)
			p.mu.Unlock()
			rw.WriteHeader(http.StatusUnauthorized) // a bare 401, as the Supervisor answers
			return
		}
		p.mu.Unlock()
		proxy.ServeHTTP(rw, r)
	})
	mux.HandleFunc("GET /favicon.ico", http.NotFound) // the parent page's, asked by the browser
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.outside = append(p.outside, r.URL.Path)
		p.mu.Unlock()
		http.NotFound(rw, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	// localhost: another site than the fake Tesla's 127.0.0.1.
	p.url = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	return p
}

// frameRun drives the page inside the proxy's iframe. The frame is on the
// parent's origin, so the parent's script reaches its document; clicks
// that must count as the user's (opening a window) are real mouse clicks
// at the element's place on the screen.
type frameRun struct{ browserRun }

// frameJS defines doc(), the framed page's document.
const frameJS = `const doc = () => document.querySelector('iframe').contentDocument; `

// eval runs expr (after frameJS) in the parent page.
func (f *frameRun) eval(what, expr string) json.RawMessage {
	f.t.Helper()
	v, err := chromedp.Run(f.ctx, chromedp.Evaluate[json.RawMessage]("(() => { "+frameJS+"return ("+expr+"); })()"))
	if err != nil {
		f.fatal(what, err)
	}
	return v
}

func (f *frameRun) fatal(what string, err error) {
	f.t.Helper()
	loc, _ := chromedp.Run(f.ctx, chromedp.Evaluate[string](`(() => { try { return document.querySelector('iframe').contentWindow.location.href } catch (e) { return String(e) } })()`))
	html, _ := chromedp.Run(f.ctx, chromedp.Evaluate[string](`(() => { try { const m = document.querySelector('iframe').contentDocument.querySelector('main'); return m ? m.outerHTML : document.querySelector('iframe').contentDocument.documentElement.outerHTML } catch (e) { return String(e) } })()`))
	f.t.Fatalf("%s: %v\nframe at %s\n%s", what, err, loc, excerpt(html))
}

// waitFor waits until cond, a JavaScript expression, is true.
func (f *frameRun) waitFor(what, cond string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := chromedp.Run(f.ctx, chromedp.Evaluate[bool]("(() => { "+frameJS+"try { return !!("+cond+"); } catch (e) { return false; } })()"))
		if err == nil && v {
			return
		}
		if time.Now().After(deadline) {
			f.fatal("waiting for "+what, fmt.Errorf("not there after 30 s (%v)", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text is the text of the framed page's element sel.
func (f *frameRun) text(sel string) string {
	f.t.Helper()
	var s string
	if err := json.Unmarshal(f.eval("text of "+sel, fmt.Sprintf(`doc().querySelector(%q).textContent.trim()`, sel)), &s); err != nil {
		f.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// typeIn types text into the framed page's input sel, as the page's script
// sees typing.
func (f *frameRun) typeIn(sel, text string) {
	f.t.Helper()
	f.eval("type into "+sel, fmt.Sprintf(`(() => { const el = doc().querySelector(%q); el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`, sel, text))
}

// click clicks the framed page's element sel.
func (f *frameRun) click(sel string) {
	f.t.Helper()
	f.eval("click "+sel, fmt.Sprintf(`(() => { doc().querySelector(%q).click(); return true; })()`, sel))
}

// realClick is a mouse click on the framed page's element sel, at its
// place in the parent's viewport.
func (f *frameRun) realClick(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		xy, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64]("(() => { "+frameJS+fmt.Sprintf(`const el = doc().querySelector(%q);
			el.scrollIntoView({block: 'center'});
			const fr = document.querySelector('iframe').getBoundingClientRect(), r = el.getBoundingClientRect();
			return [fr.left + r.left + r.width / 2, fr.top + r.top + r.height / 2]; })()`, sel)))
		if err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.Void{}, chromedp.Do(ctx, chromedp.MouseClickXY(xy[0], xy[1]))
	}
}
