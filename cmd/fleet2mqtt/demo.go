package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/service"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
	"github.com/fleet2mqtt/fleet2mqtt/simulate/follow"
)

// runDemo implements `fleet2mqtt demo`: fleet2mqtt on its embedded defaults
// with simulated cars streaming into it, the quickest way to see topics
// fill.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	cars := fs.Int("cars", 1, "number of simulated cars")
	scenario := fs.String("scenario", string(simulate.ScenarioMixed), "what the cars do: "+scenarioNames())
	speed := fs.Float64("speed", 10, "speed-up factor of the simulated time")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: fleet2mqtt demo [flags]\n\nRuns fleet2mqtt on its embedded defaults together with simulated cars,\nand tells you where to look. Its data (certificates, retained state) is\nkept in the demo folder of the data directory. Stop it with Ctrl-C.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	sc, err := simulate.ParseScenario(*scenario)
	if err != nil || *cars < 1 || !(*speed > 0) {
		switch {
		case err != nil:
			fmt.Fprintln(stderr, "fleet2mqtt demo: --scenario:", err)
		case *cars < 1:
			fmt.Fprintf(stderr, "fleet2mqtt demo: --cars %d: must be at least 1\n", *cars)
		default:
			fmt.Fprintf(stderr, "fleet2mqtt demo: --speed %v: must be positive\n", *speed)
		}
		return 2
	}
	cfg, err := f.load()
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt demo:", err)
		return 1
	}
	if f.dataDir == "" {
		cfg.DataDir = filepath.Join(cfg.DataDir, "demo")
	}
	// The demo's cars carry development certificates: trust those, whatever
	// a configuration file says about real cars.
	cfg.Vehicle.TLS.CertFile, cfg.Vehicle.TLS.KeyFile, cfg.Vehicle.TLS.ClientCAFiles = "", "", nil
	demoActivity(&cfg, *speed)

	// Commands go to a fake Tesla whose cars are the simulated cars;
	// anonymous clients from this machine may command, as they may connect.
	cfg.Commands.Enabled, cfg.Commands.AllowAnonymous = true, true
	log := cfg.Log.Logger(stderr)
	fake, err := follow.Start(ctx, filepath.Join(cfg.DataDir, "fake-tesla"))
	if err != nil {
		log.Error("cannot start the fake Fleet API for commands", "err", err)
		return 1
	}
	defer fake.Close()
	a, err := start(ctx, cfg, log, func(a *app) {
		a.cmd.UseEngine(func() (vcmd.Config, error) {
			return fake.EngineConfig(service.SessionDir(cfg.DataDir), cfg.Commands.RateLimit), nil
		})
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	fleet, err := demoCars(a, *cars)
	if err != nil {
		log.Error("cannot create the simulated cars", "err", err)
		return 1
	}
	for _, c := range fleet {
		fake.Add(c.VIN())
	}
	a.demoBanner(stdout, fleet, sc, *speed)

	err = simulate.PlayFleet(ctx, fleet, simulate.PlayConfig{Scenario: sc, Speed: *speed, Log: log.With("component", "simulator"), Remote: fake.Remote})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("simulated cars stopped", "err", err)
	}
	if err := a.wait(); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// demoCars makes n simulated cars with certificates from the development
// vehicle CA of a's data directory.
func demoCars(a *app, n int) ([]*simulate.Car, error) {
	o := simulate.Options{Server: a.vehicleAddr, ServerName: "127.0.0.1", CertDir: a.cfg.DevPKIDir(), Cars: n, Network: "wifi"}
	target, err := o.Target(a.log)
	if err != nil {
		return nil, err
	}
	return o.NewCars(target, nil)
}

func (a *app) demoBanner(w io.Writer, cars []*simulate.Car, sc simulate.Scenario, speed float64) {
	prefix := a.cfg.MQTT.Prefix
	fmt.Fprintf(w, "\nfleet2mqtt %s demo: %d simulated car(s) playing %q at %gx speed.\n\n", version(), len(cars), sc, speed)
	fmt.Fprintf(w, "  MQTT broker:  %s (anonymous from this machine)\n", a.mqttAddr)
	fmt.Fprintf(w, "  Watch:        mosquitto_sub -h %s -p %s -t '%s/#' -v\n", hostOf(a.mqttAddr), portOf(a.mqttAddr), prefix)
	fmt.Fprintf(w, "  One signal:   %s/%s/Soc   everything: %s/%s/state\n", prefix, cars[0].VIN(), prefix, cars[0].VIN())
	fmt.Fprintf(w, "  Command:      mosquitto_pub -h %s -p %s -t '%s/%s/set/charging' -m ON   (a fake Tesla signs and obeys; see docs/commands.md)\n",
		hostOf(a.mqttAddr), portOf(a.mqttAddr), prefix, cars[0].VIN())
	if a.activity.Derives() {
		fmt.Fprintf(w, "  Activity:     %s/%s/status, place, drive/last, charge/last (scenario commute shows them all)\n", prefix, cars[0].VIN())
		if a.cfg.MQTT.TeslaMate.Enabled {
			fmt.Fprintf(w, "  TeslaMate:    teslamate/cars/#\n")
		}
	}
	if a.httpAddr != "" {
		fmt.Fprintf(w, "  Metrics:      http://%s/metrics\n", a.httpAddr)
	}
	fmt.Fprintf(w, "  Data:         %s\n\nPress Ctrl-C to stop.\n\n", a.cfg.DataDir)
}
