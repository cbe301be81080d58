package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// runCheckCert is `fleet2mqtt check-cert`: it connects to the vehicle
// listener's public address as a car would and says what a car would
// object to. Exit code 0 when a car would connect (warnings allowed), 1
// when not, 2 for bad flags.
func runCheckCert(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("check-cert", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configFile := flags.String("config", os.Getenv("FLEET2MQTT_CONFIG"), "configuration `file` (YAML), for the defaults below")
	dataDir := flags.String("data-dir", "", "data `directory` (overrides data_dir)")
	host := flags.String("host", "", "host `name` cars connect to (default: setup.public_hostname)")
	port := flags.Int("port", 0, "`port` cars connect to (default: setup.port, 443)")
	connect := flags.String("connect", "", "connect to this `host:port` instead, still checking for --host (before DNS points here, or from inside the network)")
	caFile := flags.String("ca", "", "the ca cars get, a PEM `file` (default: the one fleet2mqtt computes from its configuration)")
	warnDays := flags.Int("warn-days", int(acme.DefaultExpiryWarning/(24*time.Hour)), "warn when the certificate expires within this many `days`")
	timeout := flags.Duration("timeout", 15*time.Second, "give up connecting after this long")
	flags.Usage = func() {
		fmt.Fprint(stderr, `Usage: fleet2mqtt check-cert [--host NAME] [--port 443] [flags]

Connects to the vehicle listener as a car would and checks its certificate:
the name is a Subject Alternative Name, the chain is complete, the ca cars get
validates it, it is not (nearly) expired, and a client certificate is asked
for (nothing in front of fleet2mqtt terminates TLS).

Flags:
`)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "fleet2mqtt check-cert: unexpected argument %q\n", flags.Arg(0))
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "fleet2mqtt check-cert:", err)
		return 1
	}
	cfg, err := config.Load(*configFile)
	if err != nil {
		return fail(err)
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *host == "" {
		*host = cfg.Setup.PublicHostname
	}
	if *host == "" {
		fmt.Fprintln(stderr, "fleet2mqtt check-cert: no host: give --host, or set setup.public_hostname")
		return 2
	}
	if *port == 0 {
		*port = cfg.Setup.Port
	}

	var ca []byte
	var source string
	if *caFile != "" {
		if ca, err = os.ReadFile(*caFile); err != nil {
			return fail(fmt.Errorf("read ca: %w", err))
		}
		source = *caFile
	} else if ca, source, err = cfg.VehicleCerts().CA(); err != nil {
		return fail(err)
	}
	if len(ca) == 0 {
		ca, source = nil, ""
	}

	r, err := acme.Check(ctx, acme.CheckOptions{
		Host:          *host,
		Port:          *port,
		Addr:          *connect,
		CA:            ca,
		ExpiryWarning: time.Duration(*warnDays) * 24 * time.Hour,
		Timeout:       *timeout,
	})
	if err != nil {
		return fail(err)
	}
	_ = r.WriteText(stdout, source)
	if !r.OK() {
		return 1
	}
	return 0
}
