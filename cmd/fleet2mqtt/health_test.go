package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

func TestWebGuardHost(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP.Listen = "fleet.lan:8080"
	cfg.Setup.PublicHostname = "Tesla.Example.com"
	g := newWebGuard(cfg)
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

// TestWebGuard: /healthz and /metrics answer only for this server's
// names (DNS rebinding); /metrics only to loopback clients or with the
// token.
func TestWebGuard(t *testing.T) {
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
	cfg := config.Default()
	cfg.HTTP.Listen = ":8080"
	open := newWebGuard(cfg)
	cfg.HTTP.MetricsToken = "s3cret-token"
	withToken := newWebGuard(cfg)
	for _, tc := range []struct {
		name               string
		h                  http.Handler
		remote, host, auth string
		want               int
	}{
		{"loopback", open.metrics(ok), "127.0.0.1:5000", "127.0.0.1:8080", "", 200},
		{"loopback, rebinding host", open.metrics(ok), "127.0.0.1:5000", "evil.example:8080", "", 421},
		{"LAN without a token configured", open.metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 403},
		{"LAN without the token", withToken.metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 401},
		{"LAN with a wrong token", withToken.metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "Bearer nope", 401},
		{"LAN with the token", withToken.metrics(ok), "192.168.1.9:5000", "192.168.1.20:8080", "Bearer s3cret-token", 200},
		{"health from the LAN", open.host(ok), "192.168.1.9:5000", "192.168.1.20:8080", "", 200},
		{"health, rebinding host", open.host(ok), "192.168.1.9:5000", "evil.example", "", 421},
	} {
		if got := get(tc.h, tc.remote, tc.host, tc.auth); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestHealthzDegraded: /healthz says degraded (503) while the embedded
// broker cannot save its retained messages, and the app's stop reports
// the failed final save.
func TestHealthzDegraded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mqtt")
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.PersistInterval = time.Second
	b, err := embedded.New(cfg, dir, "tesla", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := &app{broker: b}
	health := func() (int, string) {
		w := httptest.NewRecorder()
		a.healthz(w, httptest.NewRequest("GET", "/healthz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := health(); code != 200 || body != "ok\n" {
		t.Fatalf("healthy broker: %d %q", code, body)
	}
	// The data directory goes away; a file takes its place.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), []pubsub.Message{{Topic: "tesla/V/Soc", Payload: []byte("80"), QoS: 1, Retain: true}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !b.Persistence().Failing {
		if time.Now().After(deadline) {
			t.Fatal("the failing save was not reported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := health(); code != http.StatusServiceUnavailable || body != "degraded\n" {
		t.Errorf("broker that cannot save: %d %q, want 503 degraded", code, body)
	}
	if err := b.Close(); err == nil {
		t.Error("Close succeeded though the final save failed")
	}
	if err := a.finalSaveError(); err == nil {
		t.Error("finalSaveError = nil after a failed final save")
	}
}
