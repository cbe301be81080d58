package setup

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestLoginFormSurvivesVisitorFlood: strangers opening the login page in
// bulk do not end the owner's pending login form (its CSRF token keeps
// working) and are not kept in memory.
func TestLoginFormSurvivesVisitorFlood(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.get("/login") // the owner's form and token
	for range 3 * maxSessions {
		stranger := newClient()
		resp, err := stranger.Get(h.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	h.w.site.sessions.mu.Lock()
	kept := len(h.w.site.sessions.m)
	h.w.site.sessions.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d sessions kept for visitors who did not log in", kept)
	}
	h.expectRedirect(h.post("/login", url.Values{"password": {testPassword}}), "")
	h.expectPage(h.get("/app"), http.StatusOK, "Log out")
}

// TestAnonymousCSRF: the login form's token belongs to its cookie and to
// this process; a made-up cookie or another process's token is refused.
func TestAnonymousCSRF(t *testing.T) {
	a, b := newSessionStore(time.Now), newSessionStore(time.Now)
	s1 := a.newAnonymous()
	if again := a.anonymous(s1.id); again == nil || again.csrf != s1.csrf {
		t.Fatal("the same cookie does not give the same token")
	}
	if other := b.anonymous(s1.id); other.csrf == s1.csrf {
		t.Error("another process computes the same token")
	}
	if s2 := a.newAnonymous(); s2.csrf == s1.csrf {
		t.Error("two cookies share a token")
	}
	for _, id := range []string{"", "x", s1.id + "A", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"} {
		if a.anonymous(id) != nil {
			t.Errorf("cookie %q accepted as a session id", id)
		}
	}
}

// TestPasswordLimitPerClient: 40 wrong passwords from eight other
// addresses lock those addresses, not the owner's, which has not failed;
// past the global ceiling a client that fails once waits as well; an IPv6
// client counts as its /64.
func TestPasswordLimitPerClient(t *testing.T) {
	clk := newClock(0)
	l := newLimiter(clk.Now)
	for i := range 40 {
		l.fail(fmt.Sprintf("127.0.0.%d", 2+i%8))
	}
	if w := l.wait("127.0.0.1"); w != 0 {
		t.Errorf("the owner's address, which never failed, waits %v", w)
	}
	if w := l.wait("127.0.0.2"); w <= 0 {
		t.Error("an address with five failures does not wait")
	}
	// Past the ceiling one failure is enough to wait.
	l.fail("127.0.0.1")
	if w := l.wait("127.0.0.1"); w <= 0 {
		t.Error("past the global ceiling a failing address does not wait")
	}
	l.succeed("127.0.0.1")
	if w := l.wait("127.0.0.1"); w != 0 {
		t.Errorf("after a success the address waits %v", w)
	}
	// The lockouts end.
	clk.Add(maxLockout + time.Second)
	if w := l.wait("127.0.0.2"); w != 0 {
		t.Errorf("after the longest lockout the address waits %v", w)
	}

	v6 := newLimiter(clk.Now)
	for i := range freeFailures {
		v6.fail(fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if v6.wait("2001:db8:1:2::ffff") <= 0 {
		t.Error("addresses of one IPv6 /64 count apart")
	}
	if w := v6.wait("2001:db8:1:3::1"); w != 0 {
		t.Errorf("another /64 waits %v", w)
	}
}

// TestPasswordLimitBounded: a stranger with endless addresses does not
// grow the limiter without bound.
func TestPasswordLimitBounded(t *testing.T) {
	l := newLimiter(newClock(time.Millisecond).Now)
	for i := range 2 * maxClients {
		l.fail(fmt.Sprintf("10.%d.%d.1", i/256, i%256))
	}
	if len(l.m) > maxClients {
		t.Errorf("%d clients remembered, bound %d", len(l.m), maxClients)
	}
}

// TestPasswordLimitForwardedClient: behind the Supervisor (trusted, no
// ingress header) each forwarded client has its own limit; elsewhere
// X-Forwarded-For is not believed.
func TestPasswordLimitForwardedClient(t *testing.T) {
	h := newHarness(t, harnessOptions{cfg: Config{TrustIngress: true, IngressAddress: "127.0.0.1"}})
	post := func(client *http.Client, xff, password string) int {
		t.Helper()
		resp, err := client.Get(h.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfRE.FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no login form: %s", excerpt(string(body)))
		}
		form := url.Values{"csrf": {m[1]}, "password": {password}}.Encode()
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/login", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", xff)
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stranger := newClient()
	for range freeFailures {
		if code := post(stranger, "192.0.2.66", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code := post(stranger, "192.0.2.66", "guess"); code != http.StatusTooManyRequests {
		t.Errorf("the stranger is not slowed down: %d", code)
	}
	if code := post(newClient(), "198.51.100.1, 192.0.2.7", testPassword); code != http.StatusSeeOther {
		t.Errorf("another client behind the Supervisor cannot log in: %d", code)
	}
	if w := h.w.site.limiter.wait("127.0.0.1"); w != 0 {
		t.Errorf("the Supervisor's own address waits %v", w)
	}
}
