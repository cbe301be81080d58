package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fleet2mqtt/fleet2mqtt/internal/health"
)

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
	timeout := fs.Duration("timeout", health.DefaultTimeout, "give up after this long")
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
		url = health.URL(cfg.HTTP.Listen)
	}
	if err := health.Check(ctx, url, *timeout); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt healthcheck: unhealthy:", err)
		return 1
	}
	fmt.Fprintln(stdout, "healthy:", url)
	return 0
}
