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
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/announce"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
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

// broker is what the bridge publishes to and listens on.
type broker interface {
	pubsub.Publisher
	pubsub.Subscriber
}

// app is a running fleet2mqtt: its components (see components), stopped
// in the reverse order of their start when ctx ends or one of them fails.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	broker  broker
	bridge  *bridge.Bridge
	vehicle *ingest.Server
	metrics *metrics
	wizard  *setup.Wizard
	// announcer announces the cars to Home Assistant; nil when discovery
	// is off.
	announcer *announce.Announcer
	// cert is where the vehicle listener's certificate comes from.
	cert certs.Source
	// cmd is vehicle commands (command.go).
	cmd *vehicleCommands
	// activity is the derived state (activity.go).
	activity derivedState
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
	for _, f := range adjust { // the demo's parts (demo_commands.go)
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
		if err := a.finalSaveError(); err != nil && a.err == nil {
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
	removeLeftovers(cfg.DataDir, log) // temporary files of writes a crash interrupted (leftovers.go)
	a := &app{cfg: cfg, log: log, metrics: newMetrics(cfg.HTTP.MetricsVINs), done: make(chan struct{})}
	var err error
	if a.broker, a.mqttAddr, err = newBroker(cfg, log); err != nil {
		return nil, err
	}
	if q, ok := a.broker.(queue); ok {
		a.metrics.watchQueue(q, cfg.MQTT.External.WithDefaults().QueueSize)
	}
	if p, ok := a.broker.(persister); ok {
		a.metrics.watchStore(p)
	}
	if eb, ok := a.broker.(*embedded.Broker); ok {
		a.metrics.watchEmbedded(eb)
	}
	published := instrumentedBroker{a.broker, a.metrics}
	if a.bridge, err = bridge.New(cfg.MQTT.Config, published, log); err != nil {
		return nil, err
	}
	if err := a.buildCommands(); err != nil {
		return nil, err
	}
	a.metrics.watchBridge(a.bridge)
	if err := a.buildActivity(); err != nil {
		return nil, err
	}
	var announcer setup.Announcer // a nil interface when discovery is off
	if cfg.DiscoveryEnabled() {
		var states announce.States = a.bridge
		if cfg.MQTT.Replica != "" {
			states = replicaStates{a.bridge}
		}
		a.announcer, err = announce.New(cfg.Discovery(), discovery.Bridge{Prefix: cfg.MQTT.Prefix, Availability: cfg.MQTT.AvailabilityTopic(), Version: version(),
			Activity: cfg.Activity.Enabled, Currency: cfg.Activity.Currency, StreamingCost: true},
			published, a.broker, states,
			announce.WithLogger(log.With("component", "homeassistant")),
			announce.WithStateFile(filepath.Join(cfg.DataDir, announce.StateFile)))
		if err != nil {
			return nil, err
		}
		announcer = a.announcer
	} else if cfg.HomeAssistant.Enabled {
		log.Info("home assistant discovery is off: mqtt.compat.exclusive publishes none of the topics it announces")
	}
	tc, err := a.vehicleTLS()
	if err != nil {
		return nil, err
	}
	a.haStatus = announce.NewStatusWatch(a.broker, cfg.Discovery().StatusTopicOrDefault(), nil)
	a.wizard, err = setup.New(cfg.Setup, cfg.DataDir, setup.Deps{
		ServerCAPEM:       a.cert.CA,
		Announcer:         announcer,
		PasswordOut:       os.Stderr,
		Commands:          a.cmd.forSetup(),
		HomeAssistantSeen: a.haStatus.Seen,
		Activity:          a.setupActivity(),
	}, log.With("component", "setup"))
	if err != nil {
		return nil, err
	}
	a.cmd.useSetupSession(a.wizard)
	fallback := http.NewServeMux()
	public := a.wizard.PublicHandler() // the public key and the owner login's callback
	fallback.Handle(fleetapi.PublicKeyPath, public)
	fallback.Handle(setup.CallbackPath, public)
	a.vehicle, err = ingest.New(cfg.Vehicle.Config, tc, a.recordPath(),
		ingest.WithLogger(log.With("component", "vehicle")), ingest.WithFallback(fallback))
	if err != nil {
		return nil, err
	}
	a.metrics.watchVehicles(a.vehicle)
	return a, nil
}

// recordPath is the way every record takes from the vehicle listener to
// the broker, in delivery order. The vehicle listener (ingest) has read
// a frame and decoded it into a record; each stage hands the record on
// and acts once the stages after it have succeeded, so that what is
// counted, shown and announced has been published.
func (a *app) recordPath() ingest.Sink {
	return stages{
		a.metrics.count,   // records by topic and outcome (fleet2mqtt_records_total)
		a.meterStream,     // records and signals per car, the streaming bill's estimate (streamcost.go)
		a.seenBySetupPage, // the setup page shows the moment data arrives
		a.announce,        // Home Assistant discovery marks the cars and signals it sees
	}.to(a.bridge) // the bridge: record → messages → broker (metered by instrumentedBroker)
}

// stages are steps of the record path, in delivery order; each wraps the
// steps after it.
type stages []func(next ingest.Sink) ingest.Sink

// to joins the stages, ending in last.
func (s stages) to(last ingest.Sink) ingest.Sink {
	for i := len(s) - 1; i >= 0; i-- {
		last = s[i](last)
	}
	return last
}

// seenBySetupPage tells the setup page about every record the bridge
// published.
func (a *app) seenBySetupPage(next ingest.Sink) ingest.Sink {
	return ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		if err := next.Handle(ctx, rec); err != nil {
			return err
		}
		if rec.Topic != telemetry.TopicConnectivity {
			a.wizard.RecordSeen(rec.VIN, rec.ReceivedAt)
		}
		return nil
	})
}

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
		a.brokerComponent(),
		// A replica watches the others until its own offline is published
		// (see bridge.Bridge.RunReplicas): it stops after the bridge state.
		supervise.Background("replicas", func(ctx context.Context) error {
			if err := a.bridge.RunReplicas(ctx, a.broker); err != nil {
				a.log.Warn("cannot watch the other replicas; this one says offline for all when it stops", "err", err)
			}
			return nil
		}, nil),
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
		a.activityComponent(), // derived state: ticks, history; saved before the bridge says offline
		a.webListener(fail),
		a.cmd.component(fail), // vehicle commands: MQTT topics, proxy API
		supervise.Background("home assistant discovery", func(ctx context.Context) error {
			if a.announcer == nil {
				return nil
			}
			if err := a.announcer.Run(ctx); err != nil {
				a.log.Warn("home assistant discovery stopped", "err", err)
			}
			return nil
		}, nil),
		supervise.Background("home assistant status", a.watchHomeAssistant, nil), // for the setup page
		supervise.Background("setup page", func(ctx context.Context) error {
			if err := a.wizard.Run(ctx); err != nil {
				a.log.Warn("setup page background work stopped", "err", err)
			}
			return nil
		}, nil),
		a.vehicleListener(fail),
		// ACME obtains the certificate once the listener answers its
		// challenge.
		supervise.Background("vehicle certificate", a.cert.Run, nil),
	}
}

// brokerComponent starts and closes the broker. The external client
// outlives the context it was started with: the cars' last records and
// the bridge state are published after it ended.
func (a *app) brokerComponent() supervise.Component {
	switch b := a.broker.(type) {
	case *external.Client:
		var stop context.CancelFunc
		return supervise.Component{
			Name: "external broker",
			Start: func(ctx context.Context) error {
				var clientCtx context.Context
				clientCtx, stop = context.WithCancel(context.WithoutCancel(ctx))
				if err := b.Start(clientCtx); err != nil {
					stop()
					return fmt.Errorf("external broker: %w", err)
				}
				return nil
			},
			Stop: func(context.Context) error { stop(); <-b.Done(); return nil },
		}
	case *embedded.Broker:
		return supervise.Component{
			Name: "embedded broker",
			Start: func(ctx context.Context) error {
				if err := b.Start(ctx); err != nil {
					return fmt.Errorf("embedded broker: %w", err)
				}
				a.mqttAddr = b.Addr(embedded.ListenerTCP)
				return nil
			},
			Stop: func(context.Context) error { return b.Close() },
		}
	}
	panic(fmt.Sprintf("unknown broker %T", a.broker))
}

// vehicleListener listens on vehicle.listen and serves the cars until
// stopped.
func (a *app) vehicleListener(fail func(error)) supervise.Component {
	var serve supervise.Component
	return supervise.Component{
		Name: "vehicle listener",
		Start: func(ctx context.Context) error {
			ln, err := net.Listen("tcp", a.cfg.Vehicle.Listen)
			if err != nil {
				return fmt.Errorf("vehicle.listen: %w", err)
			}
			a.vehicleAddr = ln.Addr().String()
			serve = supervise.Background("vehicle listener", func(ctx context.Context) error {
				return a.vehicle.Serve(ctx, ln)
			}, fail)
			return serve.Start(ctx)
		},
		Stop: func(ctx context.Context) error { return serve.Stop(ctx) },
	}
}

// webListener serves the setup page, health and metrics on http.listen;
// it does nothing when that is empty.
func (a *app) webListener(fail func(error)) supervise.Component {
	if a.cfg.HTTP.Listen == "" {
		return supervise.Component{Name: "web listener"}
	}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	return supervise.Component{
		Name: "web listener",
		Start: func(context.Context) error {
			ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
			if err != nil {
				return fmt.Errorf("http.listen: %w", err)
			}
			a.httpAddr = ln.Addr().String()
			go func() {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					fail(fmt.Errorf("web listener: %w", err))
				}
			}()
			return nil
		},
		Stop: srv.Shutdown,
	}
}

// replicaStates is what a replica's announcer drives: after Home
// Assistant's birth message it republishes the values of the cars that
// stream to this replica only. A car that moved to another replica has
// newer values there, which this replica's would overwrite (and its
// connected would read false).
type replicaStates struct{ *bridge.Bridge }

func (s replicaStates) Republish(ctx context.Context, vin string) error {
	if !s.Streams(vin) {
		return nil
	}
	return s.Bridge.Republish(ctx, vin)
}

// newBroker makes the configured broker, not started yet, and says where
// it is for the banner (the embedded broker's address is known once it
// listens).
func newBroker(cfg config.Config, log *slog.Logger) (broker, string, error) {
	m := cfg.MQTT
	log = log.With("component", "mqtt")
	if m.Broker == config.BrokerExternal {
		c, err := external.New(m.External, external.WithLogger(log), external.WithStateTopic(m.BridgeStateTopic()))
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

// vehicleTLS builds the TLS configuration of the vehicle listener and
// sets a.cert: a certificate obtained by ACME (vehicle.acme), or the
// configured certificate files (followed when renewed), and the vehicle
// CA bundles, or else a development PKI kept in the data directory, so
// that fleet2mqtt starts with no configuration at all and simulated cars
// can connect to it.
func (a *app) vehicleTLS() (*tls.Config, error) {
	cfg, log := a.cfg, a.log
	var dev *certs.Bundle
	devBundle := func() (*certs.Bundle, error) {
		var err error
		if dev == nil {
			dev, err = certs.EnsureDevDir(cfg.DevPKIDir(), log)
		}
		return dev, err
	}
	switch {
	case cfg.Vehicle.ACME.Enabled:
		ac := cfg.ACME()
		m, err := acme.New(ac, acme.WithLogger(log.With("component", "acme")))
		if err != nil {
			return nil, configerr.Prefix("vehicle.acme", err)
		}
		log.Info("vehicle certificate by ACME", "hosts", strings.Join(m.Hosts(), ","), "directory", ac.Directory(), "cache", ac.CacheDir)
		a.cert = m
	case cfg.Vehicle.TLS.CertFile != "":
		f, err := certs.NewFiles(cfg.Vehicle.TLS.CertFile, cfg.Vehicle.TLS.KeyFile, certs.FilesOptions{
			Listener: "vehicle listener", CertKey: "vehicle.cert_file", KeyKey: "vehicle.key_file",
			Recheck: certs.DefaultRecheck, Log: log,
		})
		if err != nil {
			return nil, configerr.Prefix("vehicle", err)
		}
		a.cert = f
	default:
		b, err := devBundle()
		if err != nil {
			return nil, err
		}
		a.cert = &certs.Static{Cert: b.Server, CAPEM: b.ServerCA.CertPEM}
		log.Warn("no vehicle.cert_file: serving a development certificate that real cars do not accept",
			"ca", filepath.Join(cfg.DevPKIDir(), certs.CAFile))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	a.cert.Configure(tc)
	pool, err := cfg.Vehicle.TLS.ClientCAs()
	if err != nil {
		return nil, configerr.Prefix("vehicle", err)
	}
	if pool == nil {
		b, err := devBundle()
		if err != nil {
			return nil, err
		}
		pool = b.VehicleCA.Pool()
		log.Warn("no vehicle.client_ca_files: only simulated cars with development certificates can connect; add Tesla's vehicle CA bundle for real cars",
			"vehicle_ca", filepath.Join(cfg.DevPKIDir(), certs.VehicleCAFile))
	}
	tc.ClientCAs = pool
	return tc, nil
}

// wait blocks until the app has stopped and returns why, nil for a clean
// shutdown.
func (a *app) wait() error {
	<-a.done
	return a.err
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	guard := newWebGuard(a.cfg) // Host check; /metrics for loopback or the token (health.go)
	mux.Handle("GET /healthz", guard.host(http.HandlerFunc(a.healthz)))
	mux.Handle("GET /metrics", guard.metrics(a.metrics.handler()))
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
