package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ listen, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080/healthz"},
		{":8080", "http://127.0.0.1:8080/healthz"},
		{"0.0.0.0:8099", "http://127.0.0.1:8099/healthz"},
		{"[::]:8080", "http://127.0.0.1:8080/healthz"},
		{"[::1]:8080", "http://[::1]:8080/healthz"},
		{"fleet.lan:80", "http://fleet.lan:80/healthz"},
	}
	for _, tt := range tests {
		if got := URL(tt.listen); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.listen, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case Path:
			w.Write([]byte("ok"))
		case "/moved":
			http.Redirect(w, r, Path, http.StatusFound)
		default:
			http.Error(w, "broker down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct{ path, want string }{
		{Path, ""},
		{"/moved", "302 Found"},
		{"/sick", "503 Service Unavailable"},
	}
	for _, tt := range tests {
		err := Check(context.Background(), srv.URL+tt.path, DefaultTimeout)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.want)) {
			t.Errorf("Check(%s): %v, want %q", tt.path, err, tt.want)
		}
	}
}
