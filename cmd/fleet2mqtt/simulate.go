package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// simFlags are the flags of `fleet2mqtt simulate`.
type simFlags struct {
	server, serverName, ca, certDir string
	cars                            int
	scenario                        string
	speed                           float64
	duration, interval              time.Duration
	legacy                          bool
	seed                            uint64
	network                         string
	verbose                         bool

	load                   bool
	inflight, records      int
	rate                   float64
	inflightSet            bool
	fields                 int
	mqtt, mqttTopic        string
	mqttQoS                uint
	mqttUser, mqttPassword string
	serverPID, brokerPID   int
	settle, hold           time.Duration
}

// simLoadOnly are the flags that only mean something with --load.
var simLoadOnly = []string{"inflight", "records", "rate", "fields", "mqtt", "mqtt-topic", "mqtt-qos", "mqtt-username", "mqtt-password", "server-pid", "broker-pid", "settle", "hold"}

// simScenarioOnly are the flags that only mean something without --load.
var simScenarioOnly = []string{"scenario", "speed", "interval", "legacy-strings", "seed", "network"}

func (f *simFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.server, "server", "127.0.0.1:8443", "vehicle listener to connect to, `host:port` (or a wss:// URL)")
	fl.StringVar(&f.serverName, "server-name", "", "name the server certificate must carry (default: the host of --server)")
	fl.StringVar(&f.ca, "ca", "", "PEM `file` of the CA that signed the server certificate (default: ca.pem in --certs)")
	fl.StringVar(&f.certDir, "certs", "", "development PKI `dir`ectory (from dev-certs, required): car certificates are read\nfrom its vehicles folder or issued on the fly by its vehicle CA")
	fl.IntVar(&f.cars, "cars", 1, "number of cars")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (default: until interrupted); with --load, the longest to wait,\nwith --load --rate, how long to send")
	fl.BoolVar(&f.verbose, "v", false, "log every record, not only every few seconds")

	fl.StringVar(&f.scenario, "scenario", string(simulate.ScenarioMixed), "what the cars do: "+scenarioNames())
	fl.Float64Var(&f.speed, "speed", 1, "speed-up `factor`: 10 plays ten simulated seconds per second")
	fl.DurationVar(&f.interval, "interval", simulate.DefaultInterval, "simulated time between two records of a car")
	fl.BoolVar(&f.legacy, "legacy-strings", false, "send fields below 179 as strings, as older firmware does")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of the simulated values: the same seed plays the same story")
	fl.StringVar(&f.network, "network", simulate.DefaultNetworkInterface, "X-Network-Interface the cars report: wifi or cellular")

	fl.BoolVar(&f.load, "load", false, "load mode: measure the server instead of playing scenarios")
	fl.IntVar(&f.inflight, "inflight", 1, "load: records each car keeps unacknowledged at most")
	fl.IntVar(&f.records, "records", simulate.DefaultLoadRecords, "load: V records each car sends (0: only connect, for memory per car)")
	fl.Float64Var(&f.rate, "rate", 0, "load: open loop, `N` records/s across the cars for --duration, each sent when due\n(--inflight then bounds how far a car falls behind, default 64); replaces --records")
	fl.IntVar(&f.fields, "fields", simulate.DefaultLoadFields, "load: signals per record, of mixed kinds")
	fl.StringVar(&f.mqtt, "mqtt", "", "load: MQTT broker `host:port` on which to count what the server publishes")
	fl.StringVar(&f.mqttTopic, "mqtt-topic", simulate.DefaultMQTTTopic, "load: topic `filter` to count")
	fl.UintVar(&f.mqttQoS, "mqtt-qos", 0, "load: QoS of the counting subscription (0, 1 or 2)")
	fl.StringVar(&f.mqttUser, "mqtt-username", "", "load: MQTT user name")
	fl.StringVar(&f.mqttPassword, "mqtt-password", "", "load: MQTT password (default: $FLEET2MQTT_MQTT_PASSWORD)")
	fl.IntVar(&f.serverPID, "server-pid", 0, "load: `pid` of the server, to report its CPU time per 100k records and its memory")
	fl.IntVar(&f.brokerPID, "broker-pid", 0, "load: `pid` of an external MQTT broker, to report its CPU time per 100k records")
	fl.DurationVar(&f.settle, "settle", simulate.DefaultSettle, "load: how long the MQTT count must stay unchanged to be final")
	fl.DurationVar(&f.hold, "hold", 0, "load: keep the cars connected this long before sending")
}

func scenarioNames() string {
	names := make([]string, len(simulate.Scenarios))
	for i, s := range simulate.Scenarios {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// check reports the first usage error.
func (f *simFlags) check(set map[string]bool) error {
	if f.certDir == "" {
		return errors.New("--certs DIR is required (make one with fleet2mqtt dev-certs)")
	}
	if f.cars < 1 {
		return fmt.Errorf("--cars %d: must be at least 1", f.cars)
	}
	if f.duration < 0 {
		return fmt.Errorf("--duration %v: must not be negative", f.duration)
	}
	mode, other := "--load", simScenarioOnly
	if !f.load {
		mode, other = "scenario mode", simLoadOnly
	}
	for _, name := range other {
		if set[name] {
			return fmt.Errorf("--%s does not apply in %s", name, mode)
		}
	}
	if f.load {
		switch {
		case f.inflight < 1:
			return fmt.Errorf("--inflight %d: must be at least 1", f.inflight)
		case f.records < 0:
			return fmt.Errorf("--records %d: must not be negative", f.records)
		case f.fields < 1:
			return fmt.Errorf("--fields %d: must be at least 1", f.fields)
		case f.rate < 0:
			return fmt.Errorf("--rate %v: must be a positive number of records per second", f.rate)
		case f.rate > 0 && f.duration <= 0:
			return errors.New("--rate needs --duration, how long to send")
		case f.rate > 0 && set["records"]:
			return errors.New("--records does not apply with --rate (records = rate × duration)")
		case f.mqttQoS > 2:
			return fmt.Errorf("--mqtt-qos %d: must be 0, 1 or 2", f.mqttQoS)
		case f.serverPID < 0:
			return fmt.Errorf("--server-pid %d: not a process id", f.serverPID)
		case f.brokerPID < 0:
			return fmt.Errorf("--broker-pid %d: not a process id", f.brokerPID)
		}
		return nil
	}
	if _, err := simulate.ParseScenario(f.scenario); err != nil {
		return fmt.Errorf("--scenario: %w", err)
	}
	if !(f.speed > 0) {
		return fmt.Errorf("--speed %v: must be above 0", f.speed)
	}
	if f.interval <= 0 {
		return fmt.Errorf("--interval %v: must be positive", f.interval)
	}
	return nil
}

// runSimulate implements `fleet2mqtt simulate`: simulated cars that stream
// to a vehicle listener, or, with --load, the load benchmark.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var f simFlags
	f.register(fl)
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: fleet2mqtt simulate --certs DIR [--server HOST:PORT] [--ca FILE] [flags]
       fleet2mqtt simulate --load --certs DIR [--cars N] [--inflight W] [--records M | --rate N --duration D] [--mqtt HOST:PORT] [--server-pid PID]

Simulated Tesla vehicles connect to a fleet-telemetry server (fleet2mqtt or
any compatible one) exactly as real cars do, and play a scenario: drive,
charge, park (fall asleep and wake up), alerts, or mixed (a day of each).

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
	if err := f.check(set); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 2
	}
	f.inflightSet = set["inflight"]

	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	url, tlsConfig, ids, err := f.connection(log)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 1
	}
	if f.duration > 0 && !f.load {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	if f.load {
		return f.runLoad(ctx, url, tlsConfig, ids, log, stdout, stderr)
	}
	return f.runScenario(ctx, url, tlsConfig, ids, log, stdout, stderr)
}

// connection works out where and as whom the cars connect.
func (f *simFlags) connection(log *slog.Logger) (string, *tls.Config, []simulate.Identity, error) {
	url := f.server
	if !strings.HasPrefix(url, "wss://") {
		if _, _, err := net.SplitHostPort(url); err != nil {
			return "", nil, nil, fmt.Errorf("--server %q: want host:port or a wss:// URL", f.server)
		}
		url = "wss://" + url + "/"
	}
	caFile := f.ca
	if caFile == "" {
		caFile = filepath.Join(f.certDir, certs.CAFile)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && f.ca == "" {
			return "", nil, nil, fmt.Errorf("no %s in %s: give the server's CA with --ca", certs.CAFile, f.certDir)
		}
		return "", nil, nil, fmt.Errorf("--ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return "", nil, nil, fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
	}
	bundle, err := certs.LoadDir(f.certDir)
	if err != nil {
		return "", nil, nil, fmt.Errorf("--certs: %w", err)
	}
	ids, reused, err := simulate.Identities(bundle, f.cars)
	if err != nil {
		return "", nil, nil, fmt.Errorf("--certs %s: %w", f.certDir, err)
	}
	if reused {
		log.Warn("fewer car certificates than cars and no vehicle CA key to issue more: cars share identities",
			"certificates", len(bundle.Vehicles), "cars", f.cars)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: f.serverName, MinVersion: tls.VersionTLS12}
	return url, tc, ids, nil
}

func (f *simFlags) runScenario(ctx context.Context, url string, tc *tls.Config, ids []simulate.Identity, log *slog.Logger, stdout, stderr io.Writer) int {
	cars := make([]*simulate.Car, len(ids))
	for i, id := range ids {
		car, err := simulate.NewCar(simulate.CarConfigFor(simulate.CarConfig{
			URL:              url,
			TLS:              tc,
			NetworkInterface: f.network,
			LegacyStrings:    f.legacy,
			Log:              log,
		}, id))
		if err != nil {
			fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
			return 1
		}
		cars[i] = car
	}
	vins := make([]string, 0, 4)
	for _, id := range ids[:min(3, len(ids))] {
		vins = append(vins, id.VIN)
	}
	if len(ids) > 3 {
		vins = append(vins, fmt.Sprintf("and %d more", len(ids)-3))
	}
	fmt.Fprintf(stdout, "Simulating %d car(s) (%s) playing %q at %g× speed against %s. Stop with Ctrl-C.\n",
		len(cars), strings.Join(vins, ", "), f.scenario, f.speed, url)
	err := simulate.PlayFleet(ctx, cars, simulate.PlayConfig{
		Scenario: simulate.Scenario(f.scenario),
		Seed:     f.seed,
		Speed:    f.speed,
		Interval: f.interval,
		Log:      log,
		// About one line a second in all, however many cars.
		LogEvery: simulate.DefaultLogEvery * time.Duration(max(1, len(cars)/5)),
	})
	var total simulate.CarStats
	for _, c := range cars {
		s := c.Stats()
		total.Sent += s.Sent
		total.Acked += s.Acked
		total.Resent += s.Resent
		total.Connects += s.Connects
	}
	fmt.Fprintf(stdout, "Stopped: %d records sent, %d acknowledged, %d resent, over %d connections.\n",
		total.Sent, total.Acked, total.Resent, total.Connects)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 1
	}
	return 0
}

func (f *simFlags) runLoad(ctx context.Context, url string, tc *tls.Config, ids []simulate.Identity, log *slog.Logger, stdout, stderr io.Writer) int {
	password := f.mqttPassword
	if password == "" {
		password = os.Getenv("FLEET2MQTT_MQTT_PASSWORD")
	}
	inflight, duration, maxWait := f.inflight, time.Duration(0), f.duration
	if f.rate > 0 {
		duration, maxWait = f.duration, f.duration+simulate.DefaultLoadMaxWait
		if !f.inflightSet {
			inflight = 0 // the open loop's default window
		}
	}
	res, err := simulate.RunLoad(ctx, simulate.LoadConfig{
		URL:        url,
		TLS:        tc,
		Identities: ids,
		Inflight:   inflight,
		Records:    f.records,
		Rate:       f.rate,
		Duration:   duration,
		Fields:     f.fields,
		MQTT: simulate.MQTTOptions{
			Addr:     f.mqtt,
			Topic:    f.mqttTopic,
			QoS:      byte(f.mqttQoS),
			Username: f.mqttUser,
			Password: password,
		},
		Settle:    f.settle,
		ServerPID: f.serverPID,
		BrokerPID: f.brokerPID,
		Hold:      f.hold,
		MaxWait:   maxWait,
		Log:       log,
	})
	if res != nil {
		_ = res.WriteText(stdout)
		_ = res.WriteJSON(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt simulate:", err)
		return 1
	}
	return 0
}
