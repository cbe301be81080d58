package health

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/internal/secret"
)

// Handler answers Path: "ok", or 503 "degraded" while degraded reports
// true (the embedded broker cannot save its retained messages), so that
// supervisors (Docker's health check through `fleet2mqtt healthcheck`,
// systemd, Home Assistant's watchdog) see it. It says nothing else: it is
// open to anyone who reaches the listener. A nil degraded is never
// degraded.
func Handler(degraded func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if degraded != nil && degraded() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "degraded")
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Guard protects Path and /metrics on the web listener: it answers only
// requests whose Host names this server (so that a page on another site
// cannot read them through DNS rebinding), and /metrics only to clients
// on this machine or with the metrics token.
type Guard struct {
	names []string // host names besides IP addresses and localhost, lower case
	token [32]byte // SHA-256 of the metrics token
	open  bool     // no token configured
}

// NewGuard makes the guard of a web listener on listen (http.listen),
// also reached as publicHostname (setup.public_hostname, may be empty),
// whose /metrics answers other machines with metricsToken
// (http.metrics_token; empty: it does not).
func NewGuard(listen, publicHostname string, metricsToken secret.Secret) Guard {
	g := Guard{open: metricsToken == ""}
	if !g.open {
		g.token = sha256.Sum256([]byte(metricsToken.Reveal()))
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		g.names = append(g.names, strings.ToLower(host))
	}
	if publicHostname != "" {
		g.names = append(g.names, strings.ToLower(publicHostname))
	}
	return g
}

// hostAllowed reports whether a request's Host names this server: an IP
// address, localhost (or a name under it), or a configured name.
func (g Guard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, n := range g.names {
		if host == strings.TrimSuffix(n, ".") {
			return true
		}
	}
	return false
}

// Host answers 421 to a request whose Host does not name this server.
func (g Guard) Host(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			http.Error(w, "this server does not answer for host "+fmt.Sprintf("%q", r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Metrics serves next to clients on this machine, and to others that
// give the metrics token; like Host, only for this server's names.
func (g Guard) Metrics(next http.Handler) http.Handler {
	return g.Host(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fromLoopback(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		if g.open {
			http.Error(w, "/metrics answers only clients on this machine: set http.metrics_token to read it from the network", http.StatusForbidden)
			return
		}
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(sum[:], g.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleet2mqtt metrics"`)
			http.Error(w, "/metrics needs the token of http.metrics_token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// fromLoopback reports whether a request's remote address is on this
// machine.
func fromLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
