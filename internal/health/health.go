// Package health is fleet2mqtt's health endpoint, both sides. The server
// side answers Path on the web listener (Handler) and guards it and
// /metrics against other sites and other machines (Guard). The client
// side is the `healthcheck` command's: it asks a running fleet2mqtt's web
// listener for Path (Check), so that container images without curl can
// have a HEALTHCHECK.
package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Path is where the web listener answers 200 OK while fleet2mqtt is
// healthy.
const Path = "/healthz"

// DefaultTimeout bounds one check. Docker's HEALTHCHECK has its own
// timeout (30s by default); this one is shorter so that a hung server is
// reported by the check, with a reason, rather than killed by Docker.
const DefaultTimeout = 3 * time.Second

// URL is the health URL of a web listener address (http.listen); a
// wildcard host (":8080", "0.0.0.0:8080", "[::]:8080") is reached on
// loopback.
func URL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		// The configuration has checked the address; keep it as it is.
		return "http://" + listen + Path
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + Path
}

// client talks to fleet2mqtt's own listener directly, never through a
// proxy the container's environment might name, and follows no redirect:
// a redirect is not a healthy answer.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// Check GETs url and wants 200 OK within timeout; the error says what came
// back instead.
func Check(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
