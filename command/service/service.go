// Package service is vehicle commands inside a running fleet2mqtt: the
// engine, built from the setup page's data on first use (Credentials),
// the MQTT command topics (command/mqtt) with the embedded broker's
// access rules for them, the Tesla-proxy-compatible API on its own TLS
// listener (command/proxy), the billed requests on /metrics (Collector),
// and what the setup page's Commands section sees (ForSetup). cmd wires
// it: New when building, Component among the running parts.
package service

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	cmdmqtt "github.com/fleet2mqtt/fleet2mqtt/command/mqtt"
	"github.com/fleet2mqtt/fleet2mqtt/command/proxy"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Broker is the broker the command topics are read from and the results
// published to. The embedded broker (*embedded.Broker) is also given the
// access rules of the command topics.
type Broker interface {
	pubsub.Publisher
	pubsub.Subscriber
}

// Config is what the service is built from.
type Config struct {
	// Credentials find the key, token and Fleet API in the setup page's
	// data; Credentials.Settings is the commands section.
	Credentials Credentials
	// Section is where the commands section sits in the configuration
	// ("commands"), to name its keys in errors and logs.
	Section string
	// Prefix and QoS are the MQTT topic prefix and the QoS of the results.
	Prefix string
	QoS    byte
	// Broker carries the command topics and the results.
	Broker Broker
}

// Service is vehicle commands in a running fleet2mqtt. With commands off
// (Settings.Enabled false) it subscribes to nothing, opens no listener
// and gives the setup page no commands; its metrics read zero.
type Service struct {
	cfg      command.Settings
	creds    Credentials
	section  string
	engine   *lazyEngine
	counters *command.Counters
	handler  *cmdmqtt.Handler // nil when commands are off
	log      *slog.Logger

	mu        sync.Mutex
	proxyAddr string
}

// New builds the service without starting anything: the engine (built on
// first use), the MQTT handler and the embedded broker's access rules for
// the command topics. nil log discards.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	counters := command.NewCounters(nil)
	if cfg.Credentials.DataDir != "" {
		// Kept on disk and shared with the command line: the month's
		// counts survive a restart.
		counters = command.OpenCounters(filepath.Join(SessionDir(cfg.Credentials.DataDir), command.UsageFileName),
			log, command.CountersOptions{})
	}
	s := &Service{cfg: cfg.Credentials.Settings, creds: cfg.Credentials, section: cfg.Section,
		counters: counters, log: log}
	s.engine = &lazyEngine{config: s.creds.EngineConfig, metrics: s.counters, log: log}
	if !s.cfg.Enabled {
		return s, nil
	}
	var source cmdmqtt.Source = cmdmqtt.External{Subscriber: cfg.Broker}
	if b, ok := cfg.Broker.(*embedded.Broker); ok {
		b.AllowCommands(embedded.CommandACL{Filters: cmdmqtt.Filters(cfg.Prefix), Users: s.cfg.MQTTUsers, Anonymous: s.cfg.AllowAnonymous})
		source = cmdmqtt.Embedded{Broker: b}
	}
	var err error
	s.handler, err = cmdmqtt.New(cmdmqtt.Config{Prefix: cfg.Prefix, Settings: s.cfg, Engine: s.engine,
		Source: source, Publisher: cfg.Broker, QoS: cfg.QoS}, log)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// UseEngine replaces where the engine's configuration comes from (the
// demo's fake Fleet API), before the first command.
func (s *Service) UseEngine(config func() (command.Config, error)) { s.engine.config = config }

// UseSetupSession makes the engine send through the setup page's owner
// session: one holder of the owner's rotating refresh token in the
// process, and a new login on the page (one granting the command scopes)
// used from the next command on. With a Fleet API URL of its own
// (fleet_api_url) the engine talks to another Fleet API than the page and
// keeps its own session.
func (s *Service) UseSetupSession(w *setup.Wizard) {
	if s.cfg.FleetAPIURL != "" {
		return
	}
	base := s.engine.config
	s.engine.config = func() (command.Config, error) {
		cfg, err := base()
		cfg.Transport = w.CommandTransport(cfg.Transport)
		return cfg, err
	}
}

// ProxyAddr is where the proxy API listens, once it does; "" before, or
// without one.
func (s *Service) ProxyAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxyAddr
}

// key names a key of the commands section.
func (s *Service) key(k string) string { return s.section + "." + k }

// Component runs the command topics' subscription and the proxy API's
// listener. It starts after the broker and stops before it: on stop the
// listener shuts down and the commands in flight finish. fail is told
// when the proxy API's server fails.
func (s *Service) Component(fail func(error)) supervise.Component {
	var srv supervise.Component
	return supervise.Component{
		Name: "vehicle commands",
		Start: func(ctx context.Context) error {
			if s.handler == nil {
				return nil
			}
			if err := s.handler.Start(ctx); err != nil {
				return err
			}
			s.log.Info("vehicle commands on", "topics", cmdmqtt.Filters("<prefix>")[0], "users", s.cfg.MQTTUsers, "anonymous", s.cfg.AllowAnonymous)
			if s.cfg.Proxy.Listen == "" {
				return nil
			}
			var err error
			if srv, err = s.proxyServer(fail); err != nil {
				return fmt.Errorf("%s: %w", s.key("proxy"), err)
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			s.log.Info("proxy API listening", "address", s.ProxyAddr())
			return nil
		},
		Stop: func(ctx context.Context) error {
			var err error
			if srv.Stop != nil {
				err = srv.Stop(ctx)
			}
			if s.handler != nil {
				s.handler.Wait()
			}
			if cerr := s.counters.Close(); cerr != nil {
				s.log.Warn("could not save the month's command counts", "err", cerr)
			}
			return err
		},
	}
}

// proxyServer makes the proxy API's listener. Its handler reads the
// setup page's data for each request (the owner may log in after the
// start).
func (s *Service) proxyServer(fail func(error)) (supervise.Component, error) {
	h, err := proxy.New(proxy.Config{Settings: s.cfg, Engine: s.engine, FleetAPI: s.creds.fleetAPIBase,
		Via: func(token string) command.Transport {
			client, region, _, err := s.creds.client()
			if err != nil {
				return failingTransport{err}
			}
			return client.Owner(fleetapi.BearerToken(token), region)
		}}, s.log)
	if err != nil {
		return supervise.Component{}, err
	}
	p := s.cfg.Proxy
	src, err := certs.NewFiles(p.CertFile, p.KeyFile, s.log, certs.FilesOptions{Listener: "proxy API",
		CertKey: s.key("proxy.cert_file"), KeyKey: s.key("proxy.key_file"), Recheck: certs.DefaultRecheck})
	if err != nil {
		return supervise.Component{}, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	src.Configure(tc)
	l := supervise.Listener{Addr: p.Listen, Key: s.key("proxy.listen"), TLS: tc, Listening: func(addr string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.proxyAddr = addr
	}}
	return supervise.HTTP("proxy API", l, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}, fail), nil
}
