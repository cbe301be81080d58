package setup

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestNoSessionNoAccess: without the password, pages send to the login
// page, scripts and forms get 401; the stylesheet is public.
func TestNoSessionNoAccess(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/", "/app", "/key", "/verify", "/callback?code=x&state=y"} {
		h.expectRedirect(h.get(path), "login")
	}
	if r := h.getJSON("/pairing-status"); r.status != http.StatusUnauthorized {
		t.Errorf("status script without session: %d", r.status)
	}
	h.get("/login") // a CSRF token of an anonymous session
	if r := h.post("/app", appForm(h)); r.status != http.StatusUnauthorized {
		t.Errorf("form without login: %d", r.status)
	}
	r := h.get("/static/style.css")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %d %s", r.status, r.header.Get("Content-Type"))
	}
	h.expectPage(h.get("/login"), http.StatusOK, `type="password"`)
}

// TestPasswordRateLimit: wrong passwords are refused, and after a few the
// address must wait, even with the right password, until the lockout
// passes.
func TestPasswordRateLimit(t *testing.T) {
	clk := newClock(0)
	h := newHarness(t, harnessOptions{now: clk.Now})
	h.get("/login")
	for i := range freeFailures {
		r := h.post("/login", url.Values{"password": {"guess"}})
		h.expectPage(r, http.StatusUnauthorized, "Wrong password")
		if i == 0 && r.header.Get("Set-Cookie") != "" {
			t.Error("a wrong password started a session")
		}
	}
	for range 2 {
		r := h.post("/login", url.Values{"password": {testPassword}})
		h.expectPage(r, http.StatusTooManyRequests, "Too many wrong passwords")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	}
	// Another address is not locked by this one's failures.
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	if wait := h.w.site.limiter.wait(remoteAddr(req).String()); wait != 0 {
		t.Errorf("another address waits %v", wait)
	}
	clk.Add(maxLockout)
	h.expectRedirect(h.post("/login", url.Values{"password": {testPassword}}), "")
	h.expectPage(h.get("/app"), http.StatusOK, "Log out")
}

// TestGeneratedPassword: without a configured password one is generated,
// printed once, stored hashed, and accepted.
func TestGeneratedPassword(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	if _, err := New(Config{}, dir, Deps{PasswordOut: &out}, nil); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`shown only this once\): (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no password printed: %q", out.String())
	}
	plain := m[1]
	stored, err := os.ReadFile(filepath.Join(dir, "setup", passwordFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored), plain) {
		t.Error("the password is stored in plain text")
	}
	info, _ := os.Stat(filepath.Join(dir, "setup", passwordFile))
	if info.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v", info.Mode().Perm())
	}

	var again syncBuffer
	w, err := New(Config{}, dir, Deps{PasswordOut: &again}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.String() != "" {
		t.Errorf("printed again on the second start: %q", again.String())
	}
	if !w.site.password.check(plain) || w.site.password.check(plain+"x") || w.site.password.check("") {
		t.Error("the generated password is not checked right")
	}
}

// TestIngress: Home Assistant's ingress is trusted only from the
// configured Supervisor address; the header from anywhere else is refused.
func TestIngress(t *testing.T) {
	const supervisor = "172.30.32.2"
	tests := []struct {
		name   string
		trust  bool
		remote string
		header []string
		status int
		loc    string
	}{
		{"trusted", true, supervisor + ":5000", []string{"/api/hassio_ingress/abc"}, http.StatusOK, ""},
		{"forged from elsewhere", true, "192.0.2.10:5000", []string{"/api/hassio_ingress/abc"}, http.StatusForbidden, ""},
		{"forged from loopback", true, "127.0.0.1:5000", []string{"/api/hassio_ingress/abc"}, http.StatusForbidden, ""},
		{"ingress not enabled", false, supervisor + ":5000", []string{"/api/hassio_ingress/abc"}, http.StatusForbidden, ""},
		{"traversal in prefix", true, supervisor + ":5000", []string{"/api/../etc"}, http.StatusForbidden, ""},
		{"markup in prefix", true, supervisor + ":5000", []string{`/a"><script>`}, http.StatusForbidden, ""},
		{"two prefixes", true, supervisor + ":5000", []string{"/a", "/b"}, http.StatusForbidden, ""},
		{"supervisor without header", true, supervisor + ":5000", nil, http.StatusSeeOther, "./login"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{cfg: Config{TrustIngress: tc.trust, IngressAddress: supervisor}})
			req := httptest.NewRequest(http.MethodGet, "/app", nil)
			req.RemoteAddr = tc.remote
			for _, v := range tc.header {
				req.Header.Add(ingressHeader, v)
			}
			req.Header.Set("X-Forwarded-Host", "homeassistant.local:8123")
			req.Header.Set("X-Forwarded-Proto", "https")
			rec := httptest.NewRecorder()
			h.w.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.status || rec.Header().Get("Location") != tc.loc {
				t.Fatalf("status %d location %q, want %d %q; body %.300s", rec.Code, rec.Header().Get("Location"), tc.status, tc.loc, rec.Body)
			}
			if tc.status != http.StatusOK {
				return
			}
			body := rec.Body.String()
			// The redirect URI is on the public hostname, never under
			// ingress, where Tesla's redirect would bring no ingress
			// session cookie.
			if !strings.Contains(body, "https://&lt;your hostname&gt;/oauth/callback") || strings.Contains(body, "hassio_ingress") {
				t.Errorf("redirect URI wrong: %s", excerpt(body))
			}
			if strings.Contains(body, "Log out") {
				t.Error("a logout button behind ingress")
			}
			if rec.Header().Get("X-Frame-Options") != "" {
				t.Error("framing forbidden behind ingress, where Home Assistant frames the page")
			}
			cookie := rec.Header().Get("Set-Cookie")
			if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Lax") || !strings.Contains(cookie, "Secure") {
				t.Errorf("session cookie %q", cookie)
			}
		})
	}
}

// TestCSRF: every form needs the session's token.
func TestCSRF(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	mine := h.csrf

	other := newHarness(t, harnessOptions{})
	other.login()

	for _, tc := range []struct {
		name  string
		token string
	}{{"missing", ""}, {"wrong", "WRONGTOKEN"}, {"another session's", other.csrf}} {
		t.Run(tc.name, func(t *testing.T) {
			form := appForm(h)
			if tc.token != "" {
				form.Set(csrfField, tc.token)
			} else {
				form[csrfField] = nil
			}
			r := h.post("/app", form)
			h.expectPage(r, http.StatusForbidden, "CSRF check failed")
		})
	}
	// The login form too.
	anon := newHarness(t, harnessOptions{})
	anon.get("/login")
	anon.expectPage(anon.post("/login", url.Values{"password": {testPassword}, csrfField: {"nope"}}), http.StatusForbidden)

	// The script's header works as well as the field.
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/estimate", strings.NewReader("interval=60&field=Soc"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, mine)
	r := h.do(req)
	h.expectPage(r, http.StatusOK, "signals a month per car")
	req, _ = http.NewRequest(http.MethodPost, h.srv.URL+"/estimate", strings.NewReader("interval=60&field=Soc"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, other.csrf)
	h.expectPage(h.do(req), http.StatusForbidden)
}

// TestStaticTraversal: static assets never reach outside the embedded
// directory, whatever the path says.
func TestStaticTraversal(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	h.doApp() // state.json now holds the client secret
	for _, raw := range []string{
		"/static/../setup/state.json",
		"/static/..%2fsetup%2fstate.json",
		"/static/%2e%2e/%2e%2e/setup/state.json",
		"/static/..%5c..%5cstate.json",
		"/static/../../../../etc/passwd",
		"/static/",
		"/static/.",
		"/static/layout.html",
		"/static/../layout.html",
	} {
		for _, client := range []bool{true, false} {
			var status int
			var body string
			if client {
				req, err := http.NewRequest(http.MethodGet, h.srv.URL+raw, nil)
				if err != nil {
					t.Fatal(err)
				}
				r := h.do(req)
				status, body = r.status, r.body
			} else {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.URL.Path, req.URL.RawPath = decodePath(raw), raw
				rec := httptest.NewRecorder()
				h.w.Handler().ServeHTTP(rec, req)
				status, body = rec.Code, rec.Body.String()
			}
			if strings.Contains(body, h.fake.ClientSecret()) || strings.Contains(body, "root:") || strings.Contains(body, "{{") {
				t.Errorf("%s (client %v): leaked content: %.200s", raw, client, body)
			}
			if status == http.StatusOK && strings.Contains(body, "<html") && !strings.Contains(body, "Log out") {
				t.Errorf("%s (client %v): served a page without the session", raw, client)
			}
		}
	}
}

func decodePath(raw string) string {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return raw
	}
	return p
}

// TestSecurityHeaders: every page forbids foreign assets and caching; the
// session cookie is HttpOnly and SameSite; the login makes a new session.
func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.get("/login")
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := r.header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	cookie := r.header.Get("Set-Cookie")
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Lax") || strings.Contains(cookie, "Path=") {
		t.Errorf("session cookie %q: want HttpOnly, SameSite=Lax and no Path (scoped to the page's directory)", cookie)
	}
	before := sessionID(t, h)
	h.post("/login", url.Values{"password": {testPassword}})
	if after := sessionID(t, h); after == before || after == "" {
		t.Error("the session id did not change at login")
	}
	h.get("/app")
	h.expectRedirect(h.post("/logout", nil), "login")
	h.expectRedirect(h.get("/app"), "login")
}

func sessionID(t *testing.T, h *harness) string {
	t.Helper()
	u, _ := url.Parse(h.srv.URL)
	for _, c := range h.client.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// TestSessionsBounded: a flood of anonymous visitors cannot push the
// logged-in session out.
func TestSessionsBounded(t *testing.T) {
	s := newSessionStore(time.Now)
	owner := s.create(true)
	for range 3 * maxSessions {
		s.create(false)
	}
	if s.get(owner.id) == nil {
		t.Error("the logged-in session was dropped")
	}
	if len(s.m) > maxSessions {
		t.Errorf("%d sessions kept", len(s.m))
	}
}

// TestUnknownPathsNoLoop: without a session, a path the page does not
// have answers 404 at once, however deep, instead of a redirect to a login
// page relative to itself (which redirected again, forever); the pages
// still lead to the real login page.
func TestUnknownPathsNoLoop(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	// A client that follows redirects, as curl -L does, with a bound.
	follow := &http.Client{
		Jar: h.client.Jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("redirect loop")
			}
			return nil
		},
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := follow.Get(h.srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for _, path := range []string{"/.well-known/appspecific/com.tesla.3p.public-key.pem", "/a/b/c", "/static/", "/app/", "/nothing"} {
		if resp, _ := get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d at %s, want 404", path, resp.StatusCode, resp.Request.URL.Path)
		}
	}
	for _, path := range []string{"/", "/app", "/verify", "/pairing-status"} {
		resp, body := get(path)
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" || !strings.Contains(body, `type="password"`) {
			t.Errorf("GET %s: %d at %s, want the login page", path, resp.StatusCode, resp.Request.URL.Path)
		}
	}
	// A wrong method on a page is not an invitation to log in either.
	if r := h.post("/verify", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /verify: %d, want 405", r.status)
	}
}
