package command

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// CLIFlags are the options of `fleet2mqtt command`, as given (empty when
// not given: Resolve applies the defaults).
type CLIFlags struct {
	// Config is fleet2mqtt's configuration file.
	Config string
	// Key is the application's private key (PEM); default: the setup
	// page's key in the data directory.
	Key string
	// TokenFile is the owner's token (JSON, refreshed and saved back);
	// default: the setup page's stored owner token.
	TokenFile string
	// API overrides the Fleet API base URL (tests, proxies, unusual
	// regions); default: the token's region.
	API string
	// OnlyIfAwake never wakes the car.
	OnlyIfAwake bool
}

// CLIEnv is what cmd/fleet2mqtt hands the command line.
type CLIEnv struct {
	// Resolve loads the configuration named by the flags, applies the
	// defaults and returns the engine's configuration: Key, Transport
	// (client.Owner(fleetapi.FileTokenStore{Path: token file}, region),
	// with WithAPI when API is set), SessionDir (<data_dir>/commands),
	// PairingDomain and RateLimit; and the logger the configuration's log
	// section asks for (nil discards), which the engine and the counters
	// write to. Without Metrics, the command is counted in
	// <SessionDir>/usage.json (OpenCounters), the counts serve shows.
	Resolve func(ctx context.Context, flags CLIFlags) (Config, *slog.Logger, error)
}

const cliUsage = `usage: fleet2mqtt command [--config F] [--key KEY.pem] [--token-file F] [--api URL] [--only-if-awake] VIN NAME [JSON]

Sends one command to a car, signed with the application key, and prints the
result as one JSON object. NAME and JSON are those of Tesla's REST commands,
e.g. charge_start, set_charge_limit '{"percent":80}'.
Exit status: 0 the car executed it, 1 the car or Tesla refused it (the reason
on standard error), 2 usage error.
`

// RunCLI is `fleet2mqtt command`: it parses args (after the subcommand's
// name), sends the command and prints the Result as JSON on stdout. It
// returns the exit status: 0 executed, 1 refused (the reason on stderr),
// 2 usage error.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer, env CLIEnv) int {
	fs := flag.NewFlagSet("command", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, cliUsage)
		fs.PrintDefaults()
	}
	var f CLIFlags
	fs.StringVar(&f.Config, "config", "", "fleet2mqtt's configuration `file` (YAML)")
	fs.StringVar(&f.Key, "key", "", "the application's private `key` (PEM); default: the setup page's key")
	fs.StringVar(&f.TokenFile, "token-file", "", "the owner's token `file`; default: the setup page's stored token")
	fs.StringVar(&f.API, "api", "", "Fleet API base `URL`; default: the token's region")
	fs.BoolVar(&f.OnlyIfAwake, "only-if-awake", false, "never wake the car (a sleeping car refuses the command)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) < 2 || len(rest) > 3 {
		fmt.Fprintln(stderr, "fleet2mqtt command: want VIN NAME [JSON]")
		fs.Usage()
		return 2
	}
	req := Request{VIN: rest[0], Name: rest[1], Who: "cli", OnlyIfAwake: f.OnlyIfAwake}
	if len(rest) == 3 {
		req.Args = json.RawMessage(rest[2])
	}
	if _, err := Build(req.Name, req.Args); err != nil {
		fmt.Fprintf(stderr, "fleet2mqtt command: %v\n", err)
		return 2
	}
	if env.Resolve == nil {
		fmt.Fprintln(stderr, "fleet2mqtt command: not wired (no Resolve)")
		return 1
	}
	cfg, log, err := env.Resolve(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "fleet2mqtt command: %v\n", err)
		return 1
	}
	if cfg.Metrics == nil && cfg.SessionDir != "" {
		// Count what Tesla bills into the counts serve shows.
		counters := OpenCounters(filepath.Join(cfg.SessionDir, UsageFileName), log, CountersOptions{})
		cfg.Metrics = counters
		defer func() {
			if err := counters.Close(); err != nil {
				fmt.Fprintf(stderr, "fleet2mqtt command: the command was sent but not counted: %v\n", err)
			}
		}()
	}
	e, err := New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "fleet2mqtt command: %v\n", err)
		return 1
	}
	res := e.Execute(ctx, req)
	out, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(stderr, "fleet2mqtt command: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", out)
	switch {
	case res.OK:
		return 0
	case errors.Is(res.Err, ErrInvalidCommand):
		fmt.Fprintf(stderr, "fleet2mqtt command: %s\n", res.Reason)
		return 2
	default:
		fmt.Fprintf(stderr, "fleet2mqtt command: %s\n", res.Reason)
		return 1
	}
}

// WithAPI returns endpoints whose Fleet API base URL is apiURL in every
// region (the --api flag, tesla.fleet_api_url).
func WithAPI(e fleetapi.Endpoints, apiURL string) fleetapi.Endpoints {
	out := e
	out.APIBase = make(map[fleetapi.Region]string, len(fleetapi.Regions))
	for _, r := range fleetapi.Regions {
		out.APIBase[r] = apiURL
	}
	return out
}
