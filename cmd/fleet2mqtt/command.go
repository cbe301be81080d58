package main

// Vehicle commands: `fleet2mqtt command`, and in serve the MQTT command
// topics, the broker's ACL for them, the proxy API and the command
// metrics. See docs/commands.md.

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	cmdmqtt "github.com/fleet2mqtt/fleet2mqtt/command/mqtt"
	"github.com/fleet2mqtt/fleet2mqtt/command/proxy"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// runCommand implements `fleet2mqtt command`.
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return vcmd.RunCLI(ctx, args, stdout, stderr, vcmd.CLIEnv{
		Resolve: func(_ context.Context, f vcmd.CLIFlags) (vcmd.Config, error) {
			if f.Config == "" {
				f.Config = os.Getenv("FLEET2MQTT_CONFIG")
			}
			cfg, err := config.Load(f.Config)
			if err != nil {
				return vcmd.Config{}, err
			}
			if err := cfg.Validate(); err != nil {
				return vcmd.Config{}, err
			}
			creds := teslaCredentials{cfg: cfg, keyFile: f.Key, tokenFile: f.TokenFile, api: f.API}
			return creds.engineConfig(cfg.Log.Logger(stderr))
		},
	})
}

// teslaCredentials find what a command needs in the setup page's data:
// the application key, the owner's stored token, the client id, the
// owner's region and the application's domain. Flags override them.
type teslaCredentials struct {
	cfg                     config.Config
	keyFile, tokenFile, api string
	// endpoints are Tesla's unless set (tests).
	endpoints *fleetapi.Endpoints
}

// client returns the client and region to call the Fleet API with,
// and the application's domain, from the setup page's data
// (setup.LoadCredentials).
func (c teslaCredentials) client() (*fleetapi.Client, fleetapi.Region, string, error) {
	creds, err := setup.LoadCredentials(c.cfg.Setup, c.cfg.DataDir)
	if err != nil {
		return nil, "", "", err
	}
	if creds.ClientID == "" {
		return nil, "", "", errors.New("no Tesla application client id: set setup.client_id, or complete the setup page's steps")
	}
	ep := fleetapi.DefaultEndpoints()
	if c.endpoints != nil {
		ep = *c.endpoints
	}
	api := c.api
	if api == "" {
		api = c.cfg.Commands.FleetAPIURL
	}
	if api != "" {
		ep = vcmd.WithAPI(ep, api)
	}
	client, err := fleetapi.New(fleetapi.Config{ClientID: creds.ClientID, Endpoints: ep, AuthRegion: creds.Region})
	if err != nil {
		return nil, "", "", err
	}
	return client, creds.Region, creds.Domain, nil
}

// fleetAPIBase is the Fleet API base URL requests are forwarded to.
func (c teslaCredentials) fleetAPIBase() (*url.URL, error) {
	api := c.api
	if api == "" {
		api = c.cfg.Commands.FleetAPIURL
	}
	if api == "" {
		_, region, _, err := c.client()
		if err != nil {
			return nil, err
		}
		ep := fleetapi.DefaultEndpoints()
		if c.endpoints != nil {
			ep = *c.endpoints
		}
		if api, err = ep.BaseURL(region); err != nil {
			return nil, err
		}
	}
	return url.Parse(api)
}

func (c teslaCredentials) key() (*ecdsa.PrivateKey, error) {
	path := c.keyFile
	if path == "" {
		path = setup.KeyPath(c.cfg.DataDir)
	}
	key, err := fleetapi.LoadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("the application key (%s): %w; the setup page creates it, or pass --key", path, err)
	}
	return key, nil
}

// engineConfig is the engine's configuration from the setup page's data.
func (c teslaCredentials) engineConfig(log *slog.Logger) (vcmd.Config, error) {
	key, err := c.key()
	if err != nil {
		return vcmd.Config{}, err
	}
	client, region, domain, err := c.client()
	if err != nil {
		return vcmd.Config{}, err
	}
	tokenFile := c.tokenFile
	if tokenFile == "" {
		tokenFile = setup.TokenPath(c.cfg.DataDir)
	}
	if _, err := os.Stat(tokenFile); err != nil {
		return vcmd.Config{}, fmt.Errorf("no owner token (%s): log in to Tesla on the setup page, or pass --token-file", tokenFile)
	}
	limit := c.cfg.Commands.RateLimit
	return vcmd.Config{
		Key:           key,
		Transport:     client.Owner(fleetapi.FileTokenStore{Path: tokenFile}, region),
		SessionDir:    filepath.Join(c.cfg.DataDir, "commands"),
		PairingDomain: domain,
		RateLimit:     &limit,
		WakeTimeout:   c.cfg.Commands.WakeTimeout,
		Logger:        log,
	}, nil
}

// lazyEngine builds the engine on first use, and again after a failure:
// the setup page may create the key and log the owner in after fleet2mqtt
// started.
type lazyEngine struct {
	config  func() (vcmd.Config, error)
	metrics vcmd.Metrics

	mu     sync.Mutex
	engine *vcmd.Engine
	// protocol is what fleet_status said of the cars, for an engine not
	// built yet.
	protocol map[string]bool
}

func (l *lazyEngine) get() (*vcmd.Engine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine != nil {
		return l.engine, nil
	}
	cfg, err := l.config()
	if err != nil {
		return nil, err
	}
	cfg.Metrics = l.metrics
	e, err := vcmd.New(cfg)
	if err != nil {
		return nil, err
	}
	for vin, required := range l.protocol {
		e.SetProtocolRequired(vin, required)
	}
	l.engine = e
	return e, nil
}

// SetProtocolRequired passes on what fleet_status says of a car, now or
// when the engine is built.
func (l *lazyEngine) SetProtocolRequired(vin string, required bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.protocol == nil {
		l.protocol = make(map[string]bool)
	}
	l.protocol[vin] = required
	if l.engine != nil {
		l.engine.SetProtocolRequired(vin, required)
	}
}

// Execute implements the executors of command/mqtt and command/proxy.
func (l *lazyEngine) Execute(ctx context.Context, req vcmd.Request) vcmd.Result {
	e, err := l.get()
	if err != nil {
		err = fmt.Errorf("vehicle commands are not ready: %w", err)
		return vcmd.Result{VIN: req.VIN, Command: req.Name, Reason: err.Error(), Err: err}
	}
	return e.Execute(ctx, req)
}

// vehicleCommands are the serve side of vehicle commands.
type vehicleCommands struct {
	cfg      vcmd.Settings
	creds    teslaCredentials
	engine   *lazyEngine
	counters *vcmd.Counters
	handler  *cmdmqtt.Handler // nil when commands are off
	proxy    *http.Server     // nil without commands.proxy.listen
	// proxyAddr is where the proxy API listens, once it does.
	proxyAddr string
	log       *slog.Logger
}

// buildCommands makes the command parts of a (not started): the engine
// (built on first use from the setup page's data), the MQTT handler and
// the broker's ACL for the command topics, the proxy API, the metrics.
func (a *app) buildCommands() error {
	cfg := a.cfg.Commands
	log := a.log.With("component", "commands")
	c := &vehicleCommands{cfg: cfg, creds: teslaCredentials{cfg: a.cfg}, counters: vcmd.NewCounters(nil), log: log}
	c.engine = &lazyEngine{config: func() (vcmd.Config, error) { return c.creds.engineConfig(log) }, metrics: c.counters}
	a.cmd = c
	a.metrics.watchCommands(c.counters)
	if !cfg.Enabled {
		return nil
	}
	var source cmdmqtt.Source = cmdmqtt.External{Subscriber: a.broker}
	if b, ok := a.broker.(*embedded.Broker); ok {
		b.AllowCommands(embedded.CommandACL{Filters: cmdmqtt.Filters(a.cfg.MQTT.Prefix), Users: cfg.MQTTUsers, Anonymous: cfg.AllowAnonymous})
		source = cmdmqtt.Embedded{Broker: b}
	}
	var err error
	c.handler, err = cmdmqtt.New(cmdmqtt.Config{Prefix: a.cfg.MQTT.Prefix, Settings: cfg, Engine: c.engine,
		Source: source, Publisher: a.broker, QoS: a.cfg.MQTT.QoS, Logger: log})
	if err != nil {
		return err
	}
	if cfg.Proxy.Listen != "" {
		// Its handler is made at start, from the setup page's data.
		c.proxy = &http.Server{ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// proxyHandler makes the proxy API's handler; it reads the setup page's
// data for each request (the owner may log in after the start).
func (c *vehicleCommands) proxyHandler() (http.Handler, error) {
	return proxy.New(proxy.Config{Settings: c.cfg, Engine: c.engine, FleetAPI: c.creds.fleetAPIBase, Logger: c.log,
		Via: func(token string) vcmd.Transport {
			client, region, _, err := c.creds.client()
			if err != nil {
				return failingTransport{err}
			}
			return client.Owner(fleetapi.BearerToken(token), region)
		}})
}

// component runs the command topics' subscription and the proxy API's
// listener. It starts after the broker and stops before it.
func (c *vehicleCommands) component(fail func(error)) supervise.Component {
	var srv *http.Server
	return supervise.Component{
		Name: "vehicle commands",
		Start: func(ctx context.Context) error {
			if c.handler == nil {
				return nil
			}
			if err := c.handler.Start(ctx); err != nil {
				return err
			}
			c.log.Info("vehicle commands on", "topics", cmdmqtt.Filters("<prefix>")[0], "users", c.cfg.MQTTUsers, "anonymous", c.cfg.AllowAnonymous)
			if c.proxy == nil {
				return nil
			}
			h, err := c.proxyHandler()
			if err != nil {
				return fmt.Errorf("commands.proxy: %w", err)
			}
			src, err := certs.NewFiles(c.cfg.Proxy.CertFile, c.cfg.Proxy.KeyFile, certs.FilesOptions{Listener: "proxy API",
				CertKey: "commands.proxy.cert_file", KeyKey: "commands.proxy.key_file", Recheck: certs.DefaultRecheck, Log: c.log})
			if err != nil {
				return fmt.Errorf("commands.proxy: %w", err)
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			src.Configure(tc)
			ln, err := net.Listen("tcp", c.cfg.Proxy.Listen)
			if err != nil {
				return fmt.Errorf("commands.proxy.listen: %w", err)
			}
			c.proxyAddr = ln.Addr().String()
			srv = c.proxy
			srv.Handler = h
			go func() {
				if err := srv.Serve(tls.NewListener(ln, tc)); !errors.Is(err, http.ErrServerClosed) {
					fail(fmt.Errorf("proxy API: %w", err))
				}
			}()
			c.log.Info("proxy API listening", "address", c.proxyAddr)
			return nil
		},
		Stop: func(ctx context.Context) error {
			var err error
			if srv != nil {
				err = srv.Shutdown(ctx)
			}
			if c.handler != nil {
				c.handler.Wait()
			}
			return err
		},
	}
}

// failingTransport answers every call with err.
type failingTransport struct{ err error }

func (f failingTransport) SignedCommand(context.Context, string, []byte) ([]byte, error) {
	return nil, f.err
}
func (f failingTransport) WakeUp(context.Context, string) (*fleetapi.Vehicle, error) {
	return nil, f.err
}
func (f failingTransport) Vehicle(context.Context, string) (*fleetapi.Vehicle, error) {
	return nil, f.err
}
func (f failingTransport) Command(context.Context, string, string, json.RawMessage) (*fleetapi.CommandResult, error) {
	return nil, f.err
}

// watchCommands exports the billed command requests and wake-ups per car
// in the current month.
func (m *metrics) watchCommands(c *vcmd.Counters) {
	m.reg.MustRegister(commandCollector{c, m.car})
}

var (
	commandsDesc = prometheus.NewDesc("fleet2mqtt_vehicle_commands_month",
		"Vehicle command requests sent to Tesla's Fleet API this calendar month (UTC), per car, session handshakes included: what Tesla bills.",
		[]string{"car", "month"}, nil)
	wakesDesc = prometheus.NewDesc("fleet2mqtt_vehicle_wakes_month",
		"wake_up requests sent to Tesla's Fleet API this calendar month (UTC), per car: what Tesla bills.",
		[]string{"car", "month"}, nil)
)

type commandCollector struct {
	c   *vcmd.Counters
	car func(vin string) string // the car label
}

func (cc commandCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- commandsDesc
	ch <- wakesDesc
}

func (cc commandCollector) Collect(ch chan<- prometheus.Metric) {
	month := vcmd.Month(time.Now())
	for vin, u := range cc.c.Usage(month) {
		car := cc.car(vin)
		ch <- prometheus.MustNewConstMetric(commandsDesc, prometheus.CounterValue, float64(u.Commands), car, month)
		ch <- prometheus.MustNewConstMetric(wakesDesc, prometheus.CounterValue, float64(u.Wakes), car, month)
	}
}
