package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// registerSimFlags binds the flags of `fleet2mqtt simulate` to o.
func registerSimFlags(fl *flag.FlagSet, o *simulate.Options) {
	fl.StringVar(&o.Server, "server", "127.0.0.1:8443", "vehicle listener to connect to, `host:port` (or a wss:// URL)")
	fl.StringVar(&o.ServerName, "server-name", "", "name the server certificate must carry (default: the host of --server)")
	fl.StringVar(&o.CA, "ca", "", "PEM `file` of the CA that signed the server certificate (default: ca.pem in --certs)")
	fl.StringVar(&o.CertDir, "certs", "", "development PKI `dir`ectory (from dev-certs, required): car certificates are read\nfrom its vehicles folder or issued on the fly by its vehicle CA")
	fl.IntVar(&o.Cars, "cars", 1, "number of cars")
	fl.DurationVar(&o.Duration, "duration", 0, "stop after this long (default: until interrupted); with --load, the longest to wait,\nwith --load --rate, how long to send")

	fl.StringVar(&o.Scenario, "scenario", string(simulate.ScenarioMixed), "what the cars do: "+scenarioNames())
	fl.Float64Var(&o.Speed, "speed", 1, "speed-up `factor`: 10 plays ten simulated seconds per second")
	fl.DurationVar(&o.Interval, "interval", simulate.DefaultInterval, "simulated time between two records of a car")
	fl.BoolVar(&o.LegacyStrings, "legacy-strings", false, "send fields below 179 as strings, as older firmware does")
	fl.Uint64Var(&o.Seed, "seed", 1, "seed of the simulated values: the same seed plays the same story")
	fl.StringVar(&o.Network, "network", simulate.DefaultNetworkInterface, "X-Network-Interface the cars report: wifi or cellular")

	fl.BoolVar(&o.Load, "load", false, "load mode: measure the server instead of playing scenarios")
	fl.IntVar(&o.Inflight, "inflight", 1, "load: records each car keeps unacknowledged at most")
	fl.IntVar(&o.Records, "records", simulate.DefaultLoadRecords, "load: V records each car sends (0: only connect, for memory per car)")
	fl.Float64Var(&o.Rate, "rate", 0, "load: open loop, `N` records/s across the cars for --duration, each sent when due\n(--inflight then bounds how far a car falls behind, default 64); replaces --records")
	fl.IntVar(&o.Fields, "fields", simulate.DefaultLoadFields, "load: signals per record, of mixed kinds")
	fl.StringVar(&o.MQTT, "mqtt", "", "load: MQTT broker `host:port` on which to count what the server publishes")
	fl.StringVar(&o.MQTTTopic, "mqtt-topic", simulate.DefaultMQTTTopic, "load: topic `filter` to count")
	fl.UintVar(&o.MQTTQoS, "mqtt-qos", 0, "load: QoS of the counting subscription (0, 1 or 2)")
	fl.StringVar(&o.MQTTUser, "mqtt-username", "", "load: MQTT user name")
	fl.StringVar(&o.MQTTPassword, "mqtt-password", "", "load: MQTT password (default: $FLEET2MQTT_MQTT_PASSWORD)")
	fl.IntVar(&o.ServerPID, "server-pid", 0, "load: `pid` of the server, to report its CPU time per 100k records and its memory")
	fl.IntVar(&o.BrokerPID, "broker-pid", 0, "load: `pid` of an external MQTT broker, to report its CPU time per 100k records")
	fl.DurationVar(&o.Settle, "settle", simulate.DefaultSettle, "load: how long the MQTT count must stay unchanged to be final")
	fl.DurationVar(&o.Hold, "hold", 0, "load: keep the cars connected this long before sending")
}

func scenarioNames() string {
	names := make([]string, len(simulate.Scenarios))
	for i, s := range simulate.Scenarios {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// runSimulate implements `fleet2mqtt simulate`: simulated cars that stream
// to a vehicle listener, or, with --load, the load benchmark.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o simulate.Options
	registerSimFlags(fl, &o)
	verbose := fl.Bool("v", false, "log every record, not only every few seconds")
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: fleet2mqtt simulate --certs DIR [--server HOST:PORT] [--ca FILE] [flags]
       fleet2mqtt simulate --load --certs DIR [--cars N] [--inflight W] [--records M | --rate N --duration D] [--mqtt HOST:PORT] [--server-pid PID]

Simulated Tesla vehicles connect to a fleet-telemetry server (fleet2mqtt or
any compatible one) exactly as real cars do, and play a scenario: drive,
charge, park (fall asleep and wake up), alerts, mixed (a day of each), or
commute (home to work and back, then charge to the limit at home).

With --load it measures the server instead: every car sends its records
as fast as acknowledgements allow, and it prints records/s, acknowledgement
latency, MQTT messages/s (with --mqtt) and the server's CPU time and memory
(with --server-pid), then one line of JSON.

Flags:
`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fl.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "fleet2mqtt simulate: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	if err := o.Validate(set); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 2
	}
	if o.MQTTPassword == "" {
		o.MQTTPassword = os.Getenv("FLEET2MQTT_MQTT_PASSWORD")
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 1
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	target, err := o.Target(log)
	if err != nil {
		return fail(err)
	}
	if o.Load {
		res, err := simulate.RunLoad(ctx, o.LoadConfig(target, log))
		if res != nil {
			_ = res.WriteText(stdout)
			_ = res.WriteJSON(stdout)
		}
		if err != nil {
			return fail(err)
		}
		return 0
	}

	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	cars, err := o.NewCars(target, log)
	if err != nil {
		return fail(err)
	}
	vins := make([]string, 0, 4)
	for _, id := range target.Identities[:min(3, len(cars))] {
		vins = append(vins, id.VIN)
	}
	if len(cars) > 3 {
		vins = append(vins, fmt.Sprintf("and %d more", len(cars)-3))
	}
	fmt.Fprintf(stdout, "Simulating %d car(s) (%s) playing %q at %g× speed against %s. Stop with Ctrl-C.\n",
		len(cars), strings.Join(vins, ", "), o.Scenario, o.Speed, target.URL)
	err = simulate.PlayFleet(ctx, cars, o.PlayConfig(len(cars), log))
	total := simulate.FleetStats(cars)
	fmt.Fprintf(stdout, "Stopped: %d records sent, %d acknowledged, %d resent, over %d connections.\n",
		total.Sent, total.Acked, total.Resent, total.Connects)
	if err != nil {
		return fail(err)
	}
	return 0
}
