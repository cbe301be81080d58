package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHealthcheckRealApp checks the /healthz of a running fleet2mqtt,
// found through the same flags serve takes.
func TestHealthcheckRealApp(t *testing.T) {
	a := startTestApp(t, nil)
	var out, errOut bytes.Buffer
	code := runHealthcheck(context.Background(), []string{"-http-listen", a.httpAddr}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if !strings.Contains(out.String(), "healthy: http://"+a.httpAddr+"/healthz") {
		t.Errorf("stdout %q", out.String())
	}

	// A wildcard listen address, as in the container image, is asked on
	// loopback.
	_, port, _ := net.SplitHostPort(a.httpAddr)
	out.Reset()
	errOut.Reset()
	if code := runHealthcheck(context.Background(), []string{"-http-listen", ":" + port}, &out, &errOut); code != 0 {
		t.Fatalf("wildcard listen: exit %d, stderr %q", code, errOut.String())
	}
}

func TestHealthcheckUnhealthy(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		http.Error(w, "broker down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	redirecting := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
	defer redirecting.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	dir := t.TempDir()
	noHTTP := filepath.Join(dir, "no-http.yaml")
	if err := os.WriteFile(noHTTP, []byte("http:\n  listen: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("http:\n  listn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"503", []string{"-http-listen", failing.Listener.Addr().String()}, "503 Service Unavailable"},
		{"redirect is not healthy", []string{"-url", redirecting.URL + "/healthz"}, "302 Found"},
		{"nothing listening", []string{"-http-listen", closedAddr}, "connection refused"},
		{"web listener off", []string{"-config", noHTTP}, "http.listen is empty"},
		{"bad config", []string{"-config", bad}, `unknown key "listn"`},
		{"stray argument", []string{"now"}, `unexpected argument "now"`},
		{"bad flag", []string{"-nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runHealthcheck(context.Background(), tt.args, &out, &errOut)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr %q does not say %q", errOut.String(), tt.want)
			}
		})
	}
}
