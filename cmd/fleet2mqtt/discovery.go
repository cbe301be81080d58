package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/announce"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
)

const discoveryUsage = `Usage: fleet2mqtt discovery remove [flags] <VIN>...

Removes cars and all their entities from Home Assistant: empties their
retained discovery configs on the configured broker (the embedded broker of
a running fleet2mqtt, or the external one) and forgets them in data_dir, so
that Home Assistant's next start does not bring them back. A car that still
streams is announced again with its next records.

Flags:
`

// runDiscovery is `fleet2mqtt discovery`.
func runDiscovery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("discovery remove", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	fs.StringVar(&f.config, "config", os.Getenv("FLEET2MQTT_CONFIG"), "configuration `file` (YAML; default: built-in defaults, or $FLEET2MQTT_CONFIG)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `directory` (overrides data_dir)")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the broker")
	fs.Usage = func() {
		fmt.Fprint(stderr, discoveryUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "remove" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fs.Usage()
			return 0
		}
		if len(args) > 0 {
			fmt.Fprintf(stderr, "fleet2mqtt discovery: unknown subcommand %q\n\n", args[0])
		}
		fs.Usage()
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	vins := fs.Args()
	if len(vins) == 0 {
		fmt.Fprint(stderr, "fleet2mqtt discovery remove: name at least one VIN\n\n")
		fs.Usage()
		return 2
	}
	for _, vin := range vins {
		if vin == "" || strings.ContainsAny(vin, "/+#\x00") || strings.HasPrefix(vin, "-") {
			fmt.Fprintf(stderr, "fleet2mqtt discovery remove: %q is not a VIN (flags go before the VINs)\n", vin)
			return 2
		}
	}
	cfg, _, err := loadServeConfig(ctx, &f)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt:", err)
		return 1
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := removeCars(ctx, cfg, vins); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt discovery remove:", err)
		return 1
	}
	for _, vin := range vins {
		fmt.Fprintf(stdout, "removed %s from Home Assistant (emptied %s)\n", vin, discovery.Topic(cfg.HomeAssistant, vin))
	}
	forgotten, err := announce.Forget(filepath.Join(cfg.DataDir, announce.StateFile), vins...)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt discovery remove: the configs are removed, but", err)
		return 1
	}
	if len(forgotten) > 0 {
		fmt.Fprintf(stdout, "forgot %s in %s\n", strings.Join(forgotten, ", "), cfg.DataDir)
	}
	return 0
}

// removeCars publishes the messages that remove the cars' discovery
// configs, retained, to the configured broker.
func removeCars(ctx context.Context, cfg config.Config, vins []string) error {
	ec, where, err := cfg.BrokerClient("fleet2mqtt-discovery-")
	if err != nil {
		return err
	}
	c, err := external.New(ec, slog.Default())
	if err != nil {
		return err
	}
	return c.PublishOnce(ctx, where, announce.Removal(cfg.HomeAssistant, vins...))
}
