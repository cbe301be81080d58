package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// stdin is where sign-config reads "-" from; tests replace it.
var stdin io.Reader = os.Stdin

// maxConfigSize bounds the config or token read from a file or stdin.
const maxConfigSize = 1 << 20

// runSignConfig is `fleet2mqtt sign-config`: it signs a streaming config
// with the application's key (Tesla.SS256) and prints the token, or checks
// a token with --verify.
func runSignConfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("sign-config", flag.ContinueOnError)
	flags.SetOutput(stderr)
	keyFile := flags.String("key", "", "private key `file` (PEM, PKCS#8 or the SEC1 that openssl ecparam writes; default: the setup page's key in the data directory)")
	configFile := flags.String("config", os.Getenv("FLEET2MQTT_CONFIG"), "fleet2mqtt's configuration `file` (YAML), for data_dir")
	dataDir := flags.String("data-dir", "", "data `directory` holding the setup page's key (overrides data_dir)")
	force := flags.Bool("force", false, "sign even when the config has problems (they are printed as warnings)")
	verify := flags.String("verify", "", "verify this `token` (- for standard input) instead of signing: signature, aud and config")
	pubFile := flags.String("pub", "", "with --verify: the public key `file` (PEM) to verify with, instead of the private key's")
	flags.Usage = func() {
		fmt.Fprint(stderr, `Usage: fleet2mqtt sign-config [--key KEY.pem] [TELEMETRY.json]
       fleet2mqtt sign-config --verify TOKEN [--key KEY.pem | --pub PUBLIC.pem]

Signs a fleet-telemetry config with the application's key (Tesla.SS256) and
prints the token on one line, for POST /api/1/vehicles/fleet_telemetry_config_jws
{"vins": [...], "token": "<token>"}. The telemetry config, read from
TELEMETRY.json or standard input (no file, or -), is the JSON object the car
gets (hostname, port, ca, exp, fields, alert_types, delivery_policy,
prefer_typed); its claims reach the token unchanged, plus iss (the public key)
and aud. It is checked first as Tesla and the car would check it. Without
--key, the key is the setup page's, in the data directory.

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
	telemetryFile := "-"
	switch flags.NArg() {
	case 0:
	case 1:
		telemetryFile = flags.Arg(0)
	default:
		fmt.Fprintf(stderr, "fleet2mqtt sign-config: unexpected argument %q: give one telemetry config file\n", flags.Arg(1))
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "fleet2mqtt sign-config:", err)
		return 1
	}
	// keyPath is --key, else the setup page's key in the data directory
	// (--data-dir, else the configuration's data_dir).
	keyPath := func() (string, error) {
		if *keyFile != "" {
			return *keyFile, nil
		}
		dir := *dataDir
		if dir == "" {
			cfg, err := config.Load(*configFile)
			if err != nil {
				return "", err
			}
			dir = cfg.DataDir
		}
		return setup.KeyPath(dir), nil
	}
	now := time.Now()

	if *verify != "" {
		token := *verify
		if token == "-" {
			raw, err := readInput(token)
			if err != nil {
				return fail(fmt.Errorf("read token: %w", err))
			}
			token = string(raw)
		}
		// The key is --pub, else the private key's public half, else none:
		// the key the token's iss names.
		source, public := *pubFile, true
		var err error
		if source == "" {
			source, err = keyPath()
			public = false
		}
		var pub *ecdsa.PublicKey
		if err == nil {
			pub, err = fleetapi.VerifyingKey(source, public, *keyFile != "")
		}
		if err != nil {
			return fail(err)
		}
		v := fleetapi.VerifyTelemetryToken(strings.TrimSpace(token), pub, source, now)
		stdout.Write(v.Claims)
		for _, f := range v.Findings {
			fmt.Fprintln(stderr, "fleet2mqtt sign-config:", f)
		}
		if !v.OK {
			return 1
		}
		return 0
	}
	if *pubFile != "" {
		return fail(errors.New("--pub only goes with --verify: signing needs the private key"))
	}

	path, err := keyPath()
	if err != nil {
		return fail(err)
	}
	key, err := fleetapi.SigningKey(path, *keyFile != "")
	if err != nil {
		return fail(err)
	}
	claims, err := readInput(telemetryFile)
	if err != nil {
		return fail(fmt.Errorf("read telemetry config: %w", err))
	}
	// Problems do not stop the signing: --force decides.
	token, problems, err := fleetapi.CheckAndSignClaims(key, claims, now)
	if err != nil {
		return fail(err)
	}
	if len(problems) > 0 {
		label := "problem"
		if *force {
			label = "warning"
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "fleet2mqtt sign-config: %s: %s\n", label, p)
		}
		if !*force {
			fmt.Fprintln(stderr, "fleet2mqtt sign-config: not signed; fix the config, or sign anyway with --force")
			return 1
		}
	}
	fmt.Fprintln(stdout, token)
	return 0
}

// readInput reads file name, or standard input for "-", up to
// maxConfigSize.
func readInput(name string) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("more than %d bytes", maxConfigSize)
	}
	return data, nil
}
