package main

import (
	"context"
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

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/announce"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// seenBy tells the setup page about every record the bridge published, so
// that it can show the moment data arrives.
func seenBy(next ingest.Sink, w *setup.Wizard) ingest.Sink {
	return ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		if err := next.Handle(ctx, rec); err != nil {
			return err
		}
		if rec.Topic != telemetry.TopicConnectivity {
			w.RecordSeen(rec.VIN, rec.ReceivedAt)
		}
		return nil
	})
}

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
func (f *serveFlags) load() (Config, error) {
	cfg, err := loadConfig(f.config)
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
	log := cfg.Log.logger(stderr)
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
	bridge.Publisher
	bridge.Subscriber
}

// app is a running fleet2mqtt: broker, bridge, vehicle listener and web
// listener, stopped in the reverse order when ctx ends.
type app struct {
	cfg     Config
	log     *slog.Logger
	broker  broker
	closeFn func() error // closes the broker
	bridge  *bridge.Bridge
	vehicle *ingest.Server
	metrics *metrics
	wizard  *setup.Wizard
	// announcer announces the cars to Home Assistant; nil when discovery
	// is off.
	announcer *announce.Announcer

	vehicleAddr, mqttAddr, httpAddr string

	done chan struct{}
	err  error // why the app stopped; read after done is closed
	http *http.Server
}

// start brings every part up; when it returns nil the listeners accept
// connections.
func start(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	t0 := time.Now()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	a := &app{cfg: cfg, log: log, done: make(chan struct{})}

	vc, err := vehicleTLS(cfg.Vehicle, cfg.DataDir, cfg.Setup.PublicHostname, log)
	if err != nil {
		return nil, err
	}
	a.wizard, err = setup.New(cfg.Setup, cfg.DataDir, setup.Deps{
		ServerCAPEM: vc.ca,
		// The announcer exists by the time the page can push a config.
		OnStreaming: func(vin string, names []string) {
			if a.announcer == nil {
				return
			}
			fields := make([]telemetry.Field, 0, len(names))
			for _, n := range names {
				if f, ok := telemetry.FieldByName(n); ok {
					fields = append(fields, f)
				}
			}
			a.announcer.SetStreaming(vin, fields)
		},
		OnVehicleName: func(vin, name string) {
			if a.announcer != nil {
				a.announcer.SetDisplayName(vin, name)
			}
		},
		PasswordOut: os.Stderr,
	}, log.With("component", "setup"))
	if err != nil {
		return nil, err
	}
	if err := a.startBroker(ctx); err != nil {
		return nil, err
	}
	fail := func(err error) (*app, error) {
		_ = a.closeFn()
		return nil, err
	}

	a.metrics = newMetrics()
	if q, ok := a.broker.(queue); ok {
		a.metrics.watchQueue(q, cfg.MQTT.External.QueueSize)
	}
	a.bridge, err = bridge.New(cfg.MQTT.Config, instrumentedBroker{a.broker, a.metrics}, log)
	if err != nil {
		return fail(err)
	}
	// A replica watches the others until its own offline is published
	// (see bridge.Bridge.RunReplicas), so past the end of ctx.
	replicaCtx, stopReplicas := context.WithCancel(context.WithoutCancel(ctx))
	replicasDone := make(chan struct{})
	go func() {
		defer close(replicasDone)
		if err := a.bridge.RunReplicas(replicaCtx, a.broker); err != nil {
			log.Warn("cannot watch the other replicas; this one says offline for all when it stops", "err", err)
		}
	}()
	endReplicas := func() {
		stopReplicas()
		<-replicasDone
	}
	fail = func(err error) (*app, error) {
		endReplicas()
		_ = a.closeFn()
		return nil, err
	}
	if err := a.bridge.Online(ctx); err != nil {
		return fail(fmt.Errorf("publish bridge state: %w", err))
	}

	var sink ingest.Sink = a.bridge
	if cfg.discoveryEnabled() {
		var states announce.States = a.bridge
		if cfg.MQTT.Replica != "" {
			states = replicaStates{a.bridge}
		}
		a.announcer, err = announce.New(cfg.HomeAssistant, discovery.Bridge{Prefix: cfg.MQTT.Prefix, Version: version()},
			instrumentedBroker{a.broker, a.metrics}, a.broker, states,
			announce.WithLogger(log.With("component", "homeassistant")),
			announce.WithStateFile(filepath.Join(cfg.DataDir, announce.StateFile)))
		if err != nil {
			return fail(err)
		}
		sink = a.announcer.Tee(a.bridge) // the announcer only marks what it sees
	} else if cfg.HomeAssistant.Enabled {
		log.Info("home assistant discovery is off: mqtt.compat.exclusive publishes none of the topics it announces")
	}

	fallback := http.NewServeMux()
	public := a.wizard.PublicHandler() // the public key and the owner login's callback
	fallback.Handle(fleetapi.PublicKeyPath, public)
	fallback.Handle(setup.CallbackPath, public)
	a.vehicle, err = ingest.New(cfg.Vehicle.Config, vc.tls, a.metrics.sink(seenBy(sink, a.wizard)),
		ingest.WithLogger(log.With("component", "vehicle")), ingest.WithFallback(fallback))
	if err != nil {
		return fail(err)
	}
	a.metrics.watchVehicles(a.vehicle)
	vln, err := net.Listen("tcp", cfg.Vehicle.Listen)
	if err != nil {
		return fail(fmt.Errorf("vehicle.listen: %w", err))
	}
	a.vehicleAddr = vln.Addr().String()

	var hln net.Listener
	if cfg.HTTP.Listen != "" {
		if hln, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			vln.Close()
			return fail(fmt.Errorf("http.listen: %w", err))
		}
		a.httpAddr = hln.Addr().String()
		a.http = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	}

	runCtx, stop := context.WithCancel(ctx)
	wizardDone := make(chan struct{})
	go func() {
		defer close(wizardDone)
		if err := a.wizard.Run(runCtx); err != nil {
			log.Warn("setup page background work stopped", "err", err)
		}
	}()
	announceDone := make(chan struct{})
	go func() {
		defer close(announceDone)
		if a.announcer == nil {
			return
		}
		if err := a.announcer.Run(runCtx); err != nil {
			log.Warn("home assistant discovery stopped", "err", err)
		}
	}()
	vehicleDone := make(chan error, 1)
	go func() { vehicleDone <- a.vehicle.Serve(runCtx, vln) }()
	if vc.run != nil {
		go vc.run(runCtx) // ACME: the listener now answers the challenge
	}
	httpDone := make(chan error, 1)
	if hln != nil {
		go func() {
			if err := a.http.Serve(hln); !errors.Is(err, http.ErrServerClosed) {
				httpDone <- fmt.Errorf("web listener: %w", err)
			}
		}()
	}
	log.Info("fleet2mqtt ready", "version", version(), "startup", time.Since(t0).Round(time.Microsecond),
		"vehicle", a.vehicleAddr, "mqtt", a.mqttAddr, "http", a.httpAddr)

	go func() {
		defer close(a.done)
		select {
		case a.err = <-vehicleDone:
		case a.err = <-httpDone:
			stop()
			<-vehicleDone
		}
		stop()
		<-wizardDone
		<-announceDone
		// The cars are gone (their last frames published); then the web
		// listener, the bridge state and the broker.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if a.http != nil {
			_ = a.http.Shutdown(stopCtx)
		}
		if err := a.bridge.Offline(stopCtx); err != nil {
			log.Warn("publish bridge state", "err", err)
		}
		endReplicas()
		if err := a.closeFn(); err != nil {
			log.Warn("close broker", "err", err)
		}
		log.Info("fleet2mqtt stopped")
	}()
	return a, nil
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

func (a *app) startBroker(ctx context.Context) error {
	m := a.cfg.MQTT
	switch m.Broker {
	case brokerExternal:
		c, err := external.New(m.External,
			external.WithLogger(a.log.With("component", "mqtt")),
			external.WithStateTopic(m.BridgeStateTopic()))
		if err != nil {
			return err
		}
		// The client outlives ctx: the cars' last records and the bridge
		// state are published after ctx has ended, then closeFn ends it.
		clientCtx, stopClient := context.WithCancel(context.WithoutCancel(ctx))
		if err := c.Start(clientCtx); err != nil {
			stopClient()
			return fmt.Errorf("external broker: %w", err)
		}
		a.broker = c
		a.closeFn = func() error { stopClient(); <-c.Done(); return nil }
		a.mqttAddr = m.External.URL
		return nil
	default:
		b, err := embedded.New(m.Embedded, filepath.Join(a.cfg.DataDir, "mqtt"), m.Prefix, a.log.With("component", "mqtt"))
		if err != nil {
			return err
		}
		if m.Compat.Enabled {
			b.Protect(m.Compat.Base)
		}
		if err := b.Start(ctx); err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		a.broker = b
		a.closeFn = b.Close
		a.mqttAddr = b.Addr(embedded.ListenerTCP)
		return nil
	}
}

// wait blocks until the app has stopped and returns why, nil for a clean
// shutdown.
func (a *app) wait() error {
	<-a.done
	return a.err
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.Handle("/", a.wizard.Handler())
	return mux
}

// banner tells a person what is running and what to do next.
func (a *app) banner(w io.Writer) {
	prefix := a.cfg.MQTT.Prefix
	fmt.Fprintf(w, "\nfleet2mqtt %s is running.\n\n", version())
	if a.cfg.MQTT.Broker == brokerExternal {
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
	if (a.cfg.Vehicle.CertFile == "" && !a.cfg.Vehicle.ACME.Enabled) || len(a.cfg.Vehicle.ClientCAFiles) == 0 {
		dir := devPKIDir(a.cfg.DataDir)
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
