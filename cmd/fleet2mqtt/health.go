package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// persister is a broker that keeps retained messages on disk: the embedded
// one.
type persister interface {
	Persistence() embedded.PersistStatus
	RetainedRefused() int64
}

// healthz answers /healthz: "ok", or 503 "degraded" while the broker cannot
// save its retained messages, so that supervisors (Docker's health check
// through `fleet2mqtt healthcheck`, systemd, Home Assistant's watchdog)
// see it. It says nothing else: it is open to anyone who reaches the
// listener.
func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p, ok := a.broker.(persister); ok && p.Persistence().Failing {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "degraded")
		return
	}
	fmt.Fprintln(w, "ok")
}

// finalSaveError reports a broker that could not save its retained
// messages when it stopped: changes since the fault are lost, and the
// process must say so with its exit status.
func (a *app) finalSaveError() error {
	if p, ok := a.broker.(persister); ok {
		if st := p.Persistence(); st.Failing {
			return fmt.Errorf("retained MQTT messages not saved at shutdown (failing since %s): %s",
				st.FailingSince.Format(time.RFC3339), st.LastError)
		}
	}
	return nil
}

// watchStore exports how keeping retained messages on disk goes, and the
// clients' retained messages refused.
func (m *metrics) watchStore(p persister) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_save_failing",
			Help: "1 while the embedded broker cannot save its retained messages (data directory read-only or full); /healthz then says degraded.",
		}, func() float64 {
			if p.Persistence().Failing {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_save_failures_total",
			Help: "Saves of the embedded broker's retained messages that failed.",
		}, func() float64 { return float64(p.Persistence().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_refused_total",
			Help: "Retained messages of MQTT clients refused because the clients' retained messages were at their limit (mqtt.embedded.client_retained_messages, client_retained_bytes).",
		}, func() float64 { return float64(p.RetainedRefused()) }),
	)
}

// webGuard protects /healthz and /metrics on the web listener: it answers
// only requests whose Host names this server (so that a page on another
// site cannot read them through DNS rebinding), and /metrics only to
// clients on this machine or with the metrics token.
type webGuard struct {
	names []string // host names besides IP addresses and localhost, lower case
	token [32]byte // SHA-256 of http.metrics_token
	open  bool     // no token configured
}

func newWebGuard(cfg config.Config) webGuard {
	g := webGuard{open: cfg.HTTP.MetricsToken == ""}
	if !g.open {
		g.token = sha256.Sum256([]byte(cfg.HTTP.MetricsToken))
	}
	if host, _, err := net.SplitHostPort(cfg.HTTP.Listen); err == nil && host != "" {
		g.names = append(g.names, strings.ToLower(host))
	}
	if h := cfg.Setup.PublicHostname; h != "" {
		g.names = append(g.names, strings.ToLower(h))
	}
	return g
}

// hostAllowed reports whether a request's Host names this server: an IP
// address, localhost (or a name under it), or a configured name.
func (g webGuard) hostAllowed(hostport string) bool {
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

// host answers 421 to a request whose Host does not name this server.
func (g webGuard) host(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			http.Error(w, "this server does not answer for host "+fmt.Sprintf("%q", r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// metrics serves next to clients on this machine, and to others that
// give the metrics token.
func (g webGuard) metrics(next http.Handler) http.Handler {
	return g.host(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
