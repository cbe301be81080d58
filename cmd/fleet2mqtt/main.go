// Command fleet2mqtt accepts Tesla vehicles streaming fleet telemetry,
// publishes every signal to MQTT and announces it to Home Assistant.
//
// Run without arguments it serves on its embedded defaults; see
// `fleet2mqtt help` for the other commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand of the fleet2mqtt binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run fleet2mqtt (the default command)", runServe},
		{"demo", "run fleet2mqtt with simulated cars streaming into it", runDemo},
		{"simulate", "simulated cars for any fleet-telemetry server, and the load benchmark", runSimulate},
		{"dev-certs", "write a development PKI (CA, server and vehicle certificates)", func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return runDevCerts(args, stdout, stderr)
		}},
		{"decode", "decode captured vehicle frames to JSON lines", func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return runDecode(args, stdout, stderr)
		}},
		{"healthcheck", "check a running fleet2mqtt's /healthz (for container health checks)", runHealthcheck},
		{"check-cert", "check the vehicle listener's certificate as a car would", runCheckCert},
		{"command", "send a car a command, signed with the application's key", runCommand},
		{"sign-config", "sign a fleet-telemetry config with the application's key (or --verify a token)", runSignConfig},
		{"discovery", "Home Assistant discovery: remove a car (discovery remove <VIN>...)", runDiscovery},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "fleet2mqtt", version())
			return 0
		}},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	name := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		usage(stdout)
		return 0
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") && name == "serve" {
		name, args = "version", nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "fleet2mqtt: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: fleet2mqtt [command] [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'fleet2mqtt <command> -h' for a command's flags.\n")
}

// Version is set at build time with -ldflags "-X main.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
