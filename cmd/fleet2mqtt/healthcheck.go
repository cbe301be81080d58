package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// defaultHealthTimeout bounds one health check. Docker's HEALTHCHECK has
// its own timeout (30s by default); ours is shorter so that a hung server
// is reported by us, with a reason, rather than killed by Docker.
const defaultHealthTimeout = 3 * time.Second

// runHealthcheck is `fleet2mqtt healthcheck`: it asks the running
// fleet2mqtt's web listener for /healthz and exits 0 when it answers 200
// OK, 1 otherwise (Docker reserves exit code 2). It reads the same
// configuration and flags as serve, so that it finds http.listen wherever
// serve was told to listen; a wildcard listen address (":8080",
// "0.0.0.0:8080") is checked on loopback. Images run it from HEALTHCHECK,
// since distroless and scratch images have no curl.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	target := fs.String("url", "", "check this `URL` instead of http://<http.listen>/healthz")
	timeout := fs.Duration("timeout", defaultHealthTimeout, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: fleet2mqtt healthcheck [flags]\n\nAsks a running fleet2mqtt for /healthz on its web listener (http.listen);\nexits 0 when healthy, 1 otherwise. Give it the configuration and flags serve got.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fleet2mqtt healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	url := *target
	if url == "" {
		cfg, err := f.load()
		if err != nil {
			fmt.Fprintln(stderr, "fleet2mqtt healthcheck:", err)
			return 1
		}
		if cfg.HTTP.Listen == "" {
			fmt.Fprintln(stderr, "fleet2mqtt healthcheck: http.listen is empty: the web listener is off, so there is nothing to ask")
			return 1
		}
		url = healthURL(cfg.HTTP.Listen)
	}
	if err := checkHealth(ctx, url, *timeout); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt healthcheck: unhealthy:", err)
		return 1
	}
	fmt.Fprintln(stdout, "healthy:", url)
	return 0
}

// healthURL is the /healthz URL of a web listener address; wildcard hosts
// are reached on loopback.
func healthURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		// Validate has checked http.listen; keep the address as it is.
		return "http://" + listen + "/healthz"
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// healthClient talks to our own listener directly, never through a proxy
// the container's environment might name.
var healthClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// checkHealth GETs url and wants 200 OK within timeout.
func checkHealth(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
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
