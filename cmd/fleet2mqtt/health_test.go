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
	"github.com/fleet2mqtt/fleet2mqtt/internal/health"
)

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
		health.Handler(a.degraded).ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
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
	if err := a.persistence().Err(); err == nil {
		t.Error("persistence().Err() = nil after a failed final save")
	}
}
