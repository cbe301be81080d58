package health

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestGuardHost(t *testing.T) {
	g := NewGuard("fleet.lan:8080", "Tesla.Example.com", "")
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "192.168.1.20:8080": true, "localhost:8080": true,
		"app.localhost": true, "fleet.lan:8080": true, "tesla.example.com": true, "TESLA.EXAMPLE.COM.:443": true,
		"evil.example:8080": false, "": false, "fleet.lan.evil.example": false, "localhost.evil.example": false,
	} {
		if got := g.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestGuard: /healthz and /metrics answer only for this server's names
// (DNS rebinding); /metrics only to loopback clients or with the token.
func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("data")) })
	get := func(h http.Handler, remote, host, auth string) int {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr, r.Host = remote, host
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	open := NewGuard(":8080", "", "")
	withToken := NewGuard(":8080", "", "s3cret-token")
	for _, tc := range []struct {
		name               string
		h                  http.Handler
		remote, host, auth string
		want               int
	}{
		{"loopback", open.Metrics(ok), "127.0.0.1:5000", "127.0.0.1:8080", "", 200},
		{"loopback, rebinding host", open.Metrics(ok), "127.0.0.1:5000", "evil.example:8080", "", 421},
		{"LAN without a token configured", open.Metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 403},
		{"LAN without the token", withToken.Metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 401},
		{"LAN with a wrong token", withToken.Metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "Bearer nope", 401},
		{"LAN with the token", withToken.Metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "Bearer s3cret-token", 200},
		{"health from the LAN", open.Host(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 200},
		{"health, rebinding host", open.Host(ok), "192.168.1.9:5000", "evil.example", "", 421},
	} {
		if got := get(tc.h, tc.remote, tc.host, tc.auth); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestHandler: ok while healthy, 503 degraded while degraded says so.
func TestHandler(t *testing.T) {
	degraded := false
	h := Handler(func() bool { return degraded })
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", Path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("healthy: %d %q", code, body)
	}
	degraded = true
	if code, body := get(); code != http.StatusServiceUnavailable || body != "degraded\n" {
		t.Errorf("degraded: %d %q", code, body)
	}
	w := httptest.NewRecorder()
	Handler(nil).ServeHTTP(w, httptest.NewRequest("GET", Path, nil))
	if w.Code != 200 {
		t.Errorf("nil degraded: %d", w.Code)
	}
}
