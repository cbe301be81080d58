package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	activitysvc "github.com/fleet2mqtt/fleet2mqtt/activity/service"
	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/announce"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/command/service"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/health"
	"github.com/fleet2mqtt/fleet2mqtt/internal/metrics"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// serveFlags are the flags of serve and demo: a config file and the
// settings people most often change without one.
type serveFlags struct {
	config        string
	dataDir       string
	vehicleListen string
	mqttListen    string
	httpListen    string
	logLevel      string
	logFormat     string
	check         bool
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", os.Getenv("FLEET2MQTT_CONFIG"), "configuration `file` (YAML; default: built-in defaults, or $FLEET2MQTT_CONFIG)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `directory` (overrides data_dir)")
	fs.StringVar(&f.vehicleListen, "vehicle-listen", "", "vehicle listener `address` (overrides vehicle.listen)")
	fs.StringVar(&f.mqttListen, "mqtt-listen", "", "embedded MQTT broker `address` (overrides mqtt.embedded.listen)")
	fs.StringVar(&f.httpListen, "http-listen", "", "web listener `address` (overrides http.listen)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	fs.StringVar(&f.logFormat, "log-format", "", "text or json (overrides log.format)")
}

// load reads the configuration and applies the flags over it.
func (f *serveFlags) load() (config.Config, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return cfg, err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, f.dataDir)
	set(&cfg.Vehicle.Listen, f.vehicleListen)
	set(&cfg.MQTT.Embedded.Listen, f.mqttListen)
	set(&cfg.HTTP.Listen, f.httpListen)
	set(&cfg.Log.Level, f.logLevel)
	set(&cfg.Log.Format, f.logFormat)
	return cfg, cfg.Validate()
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	fs.BoolVar(&f.check, "check-config", false, "check the configuration and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: fleet2mqtt [serve] [flags]\n\nRuns fleet2mqtt: the vehicle listener, the MQTT bridge and its broker.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fleet2mqtt: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, notes, err := loadServeConfig(ctx, &f)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt:", err)
		return 1
	}
	if f.check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	log := cfg.Log.Logger(stderr)
	for _, n := range notes {
		log.Info(n, "component", "addon")
	}
	a, err := start(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	a.banner(stdout)
	if err := a.wait(); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// broker is what the bridge publishes to and listens on, and the
// component that starts and closes it: the embedded broker or the
// external client (which outlives the context it was started with, so
// that the cars' last records and the bridge state are published after
// it ended).
type broker interface {
	pubsub.Publisher
	pubsub.Subscriber
	Component() supervise.Component
}

// app is a running fleet2mqtt: its components (see components), stopped
// in the reverse order of their start when ctx ends or one of them fails.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	broker  broker
	bridge  *bridge.Bridge
	vehicle *ingest.Server
	metrics *metrics.Registry
	wizard  *setup.Wizard
	// announcer announces the cars to Home Assistant; nil when discovery
	// is off.
	announcer *announce.Announcer
	// cert is where the vehicle listener's certificate comes from.
	cert certs.Source
	// cmd is vehicle commands (command.go).
	cmd *service.Service
	// activity is the derived state (activity/service, built in activity.go).
	activity *activitysvc.Service
	// haStatus follows Home Assistant's status topic for the setup page.
	haStatus *announce.StatusWatch

	vehicleAddr, mqttAddr, httpAddr string

	done chan struct{}
	err  error // why the app stopped; read after done is closed
}

// start builds every part, adjusts them (the demo), then starts them in
// order (see components); when it returns nil the listeners accept
// connections.
func start(ctx context.Context, cfg config.Config, log *slog.Logger, adjust ...func(*app)) (*app, error) {
	t0 := time.Now()
	a, err := build(cfg, log)
	if err != nil {
		return nil, err
	}
	for _, f := range adjust { // the demo's parts (demo.go)
		f(a)
	}
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default: // the first failure stops the app
		}
	}
	g, err := supervise.Start(ctx, a.components(fail)...)
	if err != nil {
		return nil, err
	}
	if b, ok := a.broker.(*embedded.Broker); ok {
		a.mqttAddr = b.Addr(embedded.ListenerTCP) // known once it listens
	}
	log.Info("fleet2mqtt ready", "version", version(), "startup", time.Since(t0).Round(time.Microsecond),
		"vehicle", a.vehicleAddr, "mqtt", a.mqttAddr, "http", a.httpAddr)
	go func() {
		defer close(a.done)
		select {
		case <-ctx.Done():
		case a.err = <-failed:
		}
		// The cars' last frames are published before the bridge says
		// offline and the broker closes: see components.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := g.Stop(stopCtx); err != nil {
			log.Warn("stopping", "err", err)
		}
		if err := a.persistence().Err(); err != nil && a.err == nil {
			a.err = err // exit non-zero: changes since the fault are lost
		}
		log.Info("fleet2mqtt stopped")
	}()
	return a, nil
}

// build makes every part of fleet2mqtt without starting any: nothing
// listens, connects or runs in the background yet.
func build(cfg config.Config, log *slog.Logger) (*app, error) {
	if err := atomicfile.CheckDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data_dir %s must be writable: fleet2mqtt keeps its keys, the owner's login, retained messages and history there; mount it read-write, or set data_dir to a writable directory: %w", cfg.DataDir, err)
	}
	atomicfile.RemoveLeftovers(cfg.DataDir, log) // temporary files of writes a crash interrupted
	a := &app{cfg: cfg, log: log, metrics: metrics.New(cfg.HTTP.MetricsVINs), done: make(chan struct{})}
	var err error
	if a.broker, a.mqttAddr, err = newBroker(cfg, log); err != nil {
		return nil, err
	}
	a.metrics.WatchBroker(a.broker, cfg.MQTT.External.WithDefaults().QueueSize)
	published := a.metrics.Publisher(a.broker)
	if a.bridge, err = bridge.New(cfg.MQTT.Config, published, log); err != nil {
		return nil, err
	}
	if err := a.buildCommands(); err != nil {
		return nil, err
	}
	a.metrics.WatchBridge(a.bridge)
	if err := a.buildActivity(published); err != nil {
		return nil, err
	}
	var announcer setup.Announcer // a nil interface when discovery is off
	if cfg.DiscoveryEnabled() {
		var states announce.States = a.bridge
		if cfg.MQTT.Replica != "" {
			states = bridge.ReplicaStates{Bridge: a.bridge} // only the cars streaming to this replica
		}
		a.announcer, err = announce.New(cfg.Discovery(), discovery.Bridge{Prefix: cfg.MQTT.Prefix, Availability: cfg.MQTT.AvailabilityTopic(), Version: version(),
			Activity: cfg.Activity.Enabled, Currency: cfg.Activity.Currency, StreamingCost: true},
			published, a.broker, states,
			log.With("component", "homeassistant"),
			announce.WithStateFile(filepath.Join(cfg.DataDir, announce.StateFile)))
		if err != nil {
			return nil, err
		}
		announcer = a.announcer
	} else if cfg.HomeAssistant.Enabled {
		log.Info("home assistant discovery is off: mqtt.compat.exclusive publishes none of the topics it announces")
	}
	var tc *tls.Config
	if a.cert, tc, err = cfg.VehicleCerts().Listener(log); err != nil {
		return nil, err
	}
	a.haStatus = announce.NewStatusWatch(a.broker, cfg.Discovery().StatusTopicOrDefault(), nil)
	a.wizard, err = setup.New(cfg.Setup, cfg.DataDir, setup.Deps{
		ServerCAPEM:       a.cert.CA,
		Announcer:         announcer,
		PasswordOut:       os.Stderr,
		Commands:          a.cmd.ForSetup(),
		HomeAssistantSeen: a.haStatus.Seen,
		Activity:          a.activity.ForSetup(),
	}, log.With("component", "setup"))
	if err != nil {
		return nil, err
	}
	a.cmd.UseSetupSession(a.wizard)
	fallback := http.NewServeMux()
	public := a.wizard.PublicHandler() // the public key and the owner login's callback
	fallback.Handle(fleetapi.PublicKeyPath, public)
	fallback.Handle(setup.CallbackPath, public)
	a.vehicle, err = ingest.New(cfg.Vehicle.Config, tc, a.recordPath(),
		log.With("component", "vehicle"), ingest.WithFallback(fallback))
	if err != nil {
		return nil, err
	}
	a.metrics.WatchVehicles(a.vehicle)
	return a, nil
}

// recordPath is the way every record takes from the vehicle listener to
// the broker, in delivery order. The vehicle listener (ingest) has read
// a frame and decoded it into a record; each stage hands the record on
// and acts once the stages after it have succeeded, so that what is
// counted, shown and announced has been published.
func (a *app) recordPath() ingest.Sink {
	return ingest.Stages{
		a.metrics.Count,   // records by topic and outcome (fleet2mqtt_records_total)
		a.activity.Stage,  // records and signals per car, the streaming bill's estimate (activity/service)
		a.seenBySetupPage, // the setup page shows the moment data arrives
		a.announce,        // Home Assistant discovery marks the cars and signals it sees
	}.To(a.bridge) // the bridge: record → messages → broker (metered by metrics.Publisher)
}

// seenBySetupPage tells the setup page about every record the bridge
// published.
func (a *app) seenBySetupPage(next ingest.Sink) ingest.Sink { return a.wizard.Tee(next) }

// announce lets the announcer mark the cars and signals it sees; it
// passes records through when discovery is off.
func (a *app) announce(next ingest.Sink) ingest.Sink {
	if a.announcer == nil {
		return next
	}
	return a.announcer.Tee(next)
}

// components are the parts of a running fleet2mqtt in the order they
// start; they stop in the reverse order, so that the cars are gone
// (their last frames published) before the bridge says offline, and the
// broker closes last. fail stops the app with an error.
func (a *app) components(fail func(error)) []supervise.Component {
	return []supervise.Component{
		a.broker.Component(),
		// A replica watches the others until its own offline is published
		// (see bridge.Bridge.RunReplicas): it stops after the bridge state.
		supervise.Background("replicas", func(ctx context.Context) error { return a.bridge.RunReplicas(ctx, a.broker) },
			a.warn("cannot watch the other replicas; this one says offline for all when it stops")),
		{
			Name: "bridge state",
			Start: func(ctx context.Context) error {
				if err := a.bridge.Online(ctx); err != nil {
					return fmt.Errorf("publish bridge state: %w", err)
				}
				return nil
			},
			Stop: a.bridge.Offline,
		},
		a.activity.Component(), // derived state: ticks, history; saved before the bridge says offline
		a.webListener(fail),
		a.cmd.Component(fail), // vehicle commands: MQTT topics, proxy API
		supervise.Background("home assistant discovery", func(ctx context.Context) error {
			if a.announcer == nil {
				return nil
			}
			return a.announcer.Run(ctx)
		}, a.warn("home assistant discovery stopped")),
		supervise.Background("home assistant status", a.haStatus.Run, // for the setup page
			a.warn("cannot follow home assistant's status topic; the setup page cannot tell whether it is connected")),
		supervise.Background("setup page", a.wizard.Run, a.warn("setup page background work stopped")),
		a.vehicleListener(fail),
		// ACME obtains the certificate once the listener answers its
		// challenge.
		supervise.Background("vehicle certificate", a.cert.Run, nil),
	}
}

// warn logs the error of a component that fleet2mqtt runs on without.
func (a *app) warn(msg string) func(error) {
	return func(err error) { a.log.Warn(msg, "err", err) }
}

// vehicleListener listens on vehicle.listen and serves the cars until
// stopped.
func (a *app) vehicleListener(fail func(error)) supervise.Component {
	l := supervise.Listener{Addr: a.cfg.Vehicle.Listen, Key: "vehicle.listen", Listening: func(addr string) { a.vehicleAddr = addr }}
	return supervise.Serve("vehicle listener", l, a.vehicle.Serve, fail)
}

// webListener serves the setup page, health and metrics on http.listen;
// it does nothing when that is empty.
func (a *app) webListener(fail func(error)) supervise.Component {
	if a.cfg.HTTP.Listen == "" {
		return supervise.Component{Name: "web listener"}
	}
	l := supervise.Listener{Addr: a.cfg.HTTP.Listen, Key: "http.listen", Listening: func(addr string) { a.httpAddr = addr }}
	return supervise.HTTP("web listener", l, &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}, fail)
}

// newBroker makes the configured broker, not started yet, and says where
// it is for the banner (the embedded broker's address is known once it
// listens).
func newBroker(cfg config.Config, log *slog.Logger) (broker, string, error) {
	m := cfg.MQTT
	log = log.With("component", "mqtt")
	if m.Broker == config.BrokerExternal {
		c, err := external.New(m.External, log, external.WithStateTopic(m.BridgeStateTopic()))
		return c, m.External.URL, err
	}
	b, err := embedded.New(m.Embedded, filepath.Join(cfg.DataDir, "mqtt"), m.Prefix, log)
	if _, ok := err.(*configerr.Error); ok {
		return nil, "", configerr.Prefix("mqtt.embedded", err) // a key of its section
	}
	if err != nil {
		return nil, "", err
	}
	if m.Compat.Enabled {
		b.Protect(m.Compat.Base)
	}
	if cfg.DiscoveryEnabled() {
		ha := cfg.HomeAssistant // the cars' discovery configs are the bridge's, like their topics
		b.ProtectTopics(func(topic string) bool { return discovery.Owns(ha, topic) })
	}
	return b, "", nil
}

// wait blocks until the app has stopped and returns why, nil for a clean
// shutdown.
func (a *app) wait() error {
	<-a.done
	return a.err
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	guard := health.NewGuard(a.cfg.HTTP.Listen, a.cfg.Setup.PublicHostname, a.cfg.HTTP.MetricsToken) // Host check; /metrics for loopback or the token
	mux.Handle("GET "+health.Path, guard.Host(health.Handler(a.degraded)))
	mux.Handle("GET /metrics", guard.Metrics(a.metrics.Handler()))
	mux.Handle("/", a.wizard.Handler())
	return mux
}

// banner tells a person what is running and what to do next.
func (a *app) banner(w io.Writer) {
	prefix := a.cfg.MQTT.Prefix
	fmt.Fprintf(w, "\nfleet2mqtt %s is running.\n\n", version())
	if a.cfg.MQTT.Broker == config.BrokerExternal {
		fmt.Fprintf(w, "  MQTT:     publishing to %s, topics %s/<VIN>/<Field>\n", a.mqttAddr, prefix)
		if r := a.cfg.MQTT.Replica; r != "" {
			fmt.Fprintf(w, "  Replica:  %s, its state on %s\n", r, a.cfg.MQTT.BridgeStateTopic())
		}
	} else if a.mqttAddr != "" {
		fmt.Fprintf(w, "  MQTT:     embedded broker on %s, topics %s/<VIN>/<Field>\n", a.mqttAddr, prefix)
		fmt.Fprintf(w, "            try: mosquitto_sub -h %s -p %s -t '%s/#' -v\n", hostOf(a.mqttAddr), portOf(a.mqttAddr), prefix)
	}
	fmt.Fprintf(w, "  Vehicles: mTLS WebSocket on %s\n", a.vehicleAddr)
	if a.httpAddr != "" {
		fmt.Fprintf(w, "  Setup:    http://%s/ (walks you through Tesla's steps)\n", a.httpAddr)
		fmt.Fprintf(w, "  Health:   http://%s/healthz, metrics: http://%s/metrics\n", a.httpAddr, a.httpAddr)
	}
	if (a.cfg.Vehicle.TLS.CertFile == "" && !a.cfg.Vehicle.ACME.Enabled) || len(a.cfg.Vehicle.TLS.ClientCAFiles) == 0 {
		dir := a.cfg.DevPKIDir()
		fmt.Fprintf(w, "\nNo vehicle certificate or vehicle CA configured: development certificates are in %s.\n", dir)
		fmt.Fprintf(w, "Stream a simulated car with:\n  fleet2mqtt simulate --server %s --ca %s --certs %s\n",
			a.vehicleAddr, filepath.Join(dir, certs.CAFile), dir)
		fmt.Fprint(w, "Real cars need a public DNS name, a certificate for it and Tesla's vehicle CA bundle (see README).\n")
	}
	fmt.Fprintln(w)
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil || h == "" || h == "::" || h == "0.0.0.0" {
		return "127.0.0.1"
	}
	return h
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
