package addon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// Paths are where the add-on container finds its files. DefaultPaths are
// those of a real add-on; tests point them at temporary directories.
type Paths struct {
	// Options is the options file the Supervisor writes.
	Options string
	// Data is the persistent data directory.
	Data string
	// Config is the add-on's own configuration folder (map addon_config).
	Config string
	// SSL is Home Assistant's certificate folder (map ssl, read-only).
	SSL string
	// TeslaCA is Tesla's vehicle CA bundle, part of the image.
	TeslaCA string
}

// Fixed locations inside the add-on container.
const (
	// ConfigFileName is the optional fleet2mqtt configuration file in the
	// add-on's configuration folder.
	ConfigFileName = "fleet2mqtt.yaml"
	// TeslaCAPath is where the images put Tesla's vehicle CA bundle.
	TeslaCAPath = "/etc/fleet2mqtt/tesla-vehicle-ca.pem"
)

// Listen addresses inside the add-on container. Ports the user maps in
// the add-on's network settings lead here; VehicleListen is mapped to host
// port 443 by default, IngressListen is the ingress port (Home Assistant's
// default, 8099, which config.yaml therefore leaves out).
const (
	VehicleListen = ":8443"
	MQTTListen    = ":1883"
	IngressListen = ":8099"
)

// TokenVariable is the environment variable that holds the token the
// Supervisor gives every add-on.
const TokenVariable = "SUPERVISOR_TOKEN"

// defaultDataDir is the add-on's persistent folder.
const defaultDataDir = "/data"

// DefaultPaths returns the paths of a real add-on container.
func DefaultPaths() Paths {
	return Paths{
		Options: filepath.Join(defaultDataDir, "options.json"),
		Data:    defaultDataDir,
		Config:  "/config",
		SSL:     "/ssl",
		TeslaCA: TeslaCAPath,
	}
}

// Detect reports whether fleet2mqtt runs as a Home Assistant add-on: the
// Supervisor gave it a token and an options file.
func Detect() bool { return DefaultPaths().Detect(os.Getenv(TokenVariable)) }

// Detect reports whether token is set and the options file exists.
func (p Paths) Detect(token string) bool {
	if token == "" {
		return false
	}
	fi, err := os.Stat(p.Options)
	return err == nil && fi.Mode().IsRegular()
}

// Settings are what the add-on decides of fleet2mqtt's configuration. The
// serve command starts from its defaults (or from ConfigFile when set),
// then sets:
//
//	data_dir                       DataDir
//	log.level                      LogLevel
//	vehicle.listen                 VehicleListen
//	vehicle.cert_file, key_file    CertFile, KeyFile        (both empty: development certificate)
//	vehicle.client_ca_files        ClientCAFiles            (when not empty)
//	http.listen                    HTTPListen
//	mqtt.prefix                    Prefix
//	mqtt.compat.enabled            Compat
//	mqtt.broker                    Broker                   (embedded or external)
//	mqtt.embedded.listen           EmbeddedListen           (Broker embedded)
//	mqtt.embedded.users            EmbeddedUsers            (Broker embedded)
//	mqtt.external.url              ExternalURL              (Broker external)
//	mqtt.external.username         ExternalUsername         (Broker external)
//	mqtt.external.password         ExternalPassword         (Broker external)
//	discovery.enabled              Discovery
//	discovery.prefix               DiscoveryPrefix
//	setup: public host name        Hostname
//	setup: trust ingress           Ingress
//	commands.enabled               Commands
//	commands.categories            CommandCategories
//	commands.mqtt_users            CommandUsers             (when not empty)
type Settings struct {
	// ConfigFile is a fleet2mqtt configuration file to load before the
	// rest is applied: /config/fleet2mqtt.yaml when the user made one,
	// else empty.
	ConfigFile string
	DataDir    string
	LogLevel   string

	VehicleListen string
	CertFile      string
	KeyFile       string
	ClientCAFiles []string
	Hostname      string
	HTTPListen    string
	// Ingress says the web listener sits behind Home Assistant's ingress:
	// requests come from the Supervisor's proxy, which has authenticated
	// the user, with the base path in the X-Ingress-Path header.
	Ingress bool

	Prefix          string
	Compat          bool
	Discovery       bool
	DiscoveryPrefix string

	// Broker is "embedded" or "external".
	Broker           string
	EmbeddedListen   string
	EmbeddedUsers    []User
	ExternalURL      string
	ExternalUsername string
	ExternalPassword string

	// Commands, CommandCategories and CommandUsers are the commands
	// section: on or off, the kinds of command, the built-in broker's
	// users who may send them.
	Commands          bool
	CommandCategories command.Categories
	CommandUsers      []string

	// Notes say, for the add-on log, which choices were made and why
	// (which broker, which certificate); none holds a secret.
	Notes []string
}

// Apply turns the options, the Supervisor's MQTT service (nil when there
// is none or it was not asked for) and the files found in the container
// into Settings.
func Apply(opts Options, svc *Service, p Paths) (Settings, error) {
	if err := opts.Validate(); err != nil {
		return Settings{}, err
	}
	s := Settings{
		DataDir:         p.Data,
		LogLevel:        opts.LogLevel,
		VehicleListen:   VehicleListen,
		Hostname:        opts.Hostname,
		HTTPListen:      IngressListen,
		Ingress:         true,
		Prefix:          opts.TopicPrefix,
		Compat:          opts.CompatLayout,
		Discovery:       opts.Discovery,
		DiscoveryPrefix: opts.DiscoveryPrefix,
	}
	if f := filepath.Join(p.Config, ConfigFileName); isFile(f) {
		s.ConfigFile = f
		s.note("reading %s; the add-on options override it where both set a value", f)
	}

	if opts.Certificate == CertificateSSL {
		cert := filepath.Join(p.SSL, sslName(opts.CertFile))
		key := filepath.Join(p.SSL, sslName(opts.KeyFile))
		switch {
		case isFile(cert) && isFile(key):
			s.CertFile, s.KeyFile = cert, key
			s.note("vehicle certificate: %s", cert)
		default:
			// Start anyway: the setup page explains what is missing, and
			// simulated cars work meanwhile.
			s.note("vehicle certificate: %s or %s not found in Home Assistant's ssl folder; serving a development certificate that real cars refuse (install the Let's Encrypt add-on, or set certificate to development to silence this)", cert, key)
		}
	} else {
		s.note("vehicle certificate: development certificate (only simulated cars accept it)")
	}
	if isFile(p.TeslaCA) {
		s.ClientCAFiles = []string{p.TeslaCA}
	} else {
		s.note("Tesla's vehicle CA bundle is missing from the image (%s): only simulated cars can connect", p.TeslaCA)
	}

	switch {
	case opts.MQTTBroker == BrokerExternal:
		s.Broker = BrokerExternal
		s.ExternalURL, s.ExternalUsername, s.ExternalPassword = opts.MQTTURL, opts.MQTTUsername, opts.MQTTPassword
		s.note("MQTT: external broker %s (option mqtt_url)", opts.MQTTURL)
	case opts.MQTTBroker == BrokerAuto && svc != nil:
		s.Broker = BrokerExternal
		s.ExternalURL, s.ExternalUsername, s.ExternalPassword = svc.URL(), svc.Username, svc.Password
		s.note("MQTT: Home Assistant's broker %s", svc)
	default:
		s.Broker = BrokerEmbedded
		s.EmbeddedListen = MQTTListen
		s.EmbeddedUsers = opts.MQTTUsers
		why := "option mqtt_broker"
		if opts.MQTTBroker == BrokerAuto {
			why = "Home Assistant has no MQTT broker add-on"
		}
		s.note("MQTT: embedded broker on port 1883 (%s), %d user(s) from mqtt_users", why, len(opts.MQTTUsers))
	}
	if err := s.applyCommands(opts); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// applyCommands sets the commands section from the options. On the
// built-in broker, command_users must be users of mqtt_users: the broker
// lets only them publish commands. Other brokers cannot tell fleet2mqtt
// who published, so their own ACL decides, and the log says so.
func (s *Settings) applyCommands(opts Options) error {
	s.Commands = opts.Commands
	s.CommandCategories = commandCategories(opts.CommandCategories)
	s.CommandUsers = opts.CommandUsers
	if !opts.Commands {
		return nil
	}
	if s.Broker == BrokerEmbedded {
		for i, name := range opts.CommandUsers {
			if !slices.ContainsFunc(opts.MQTTUsers, func(u User) bool { return u.Name == name }) {
				return fmt.Errorf("command_users[%d]: %q is not a user of mqtt_users, so it cannot log in to the built-in broker to send commands", i, name)
			}
		}
		if len(opts.CommandUsers) == 0 {
			s.note("vehicle commands: on, but no MQTT user may send them: add users of mqtt_users to command_users")
		} else {
			s.note("vehicle commands: on (%s), sent by MQTT users %s", strings.Join(opts.CommandCategories, ", "), strings.Join(opts.CommandUsers, ", "))
		}
		return nil
	}
	s.note("vehicle commands: on (%s); the MQTT broker decides who may send them (command_users applies to the built-in broker only): every user of that broker may, unless its ACL restricts %s/+/command/+ and %s/+/set/+", strings.Join(opts.CommandCategories, ", "), s.Prefix, s.Prefix)
	return nil
}

// Load does everything the serve command needs in an add-on: it reads the
// options, asks the Supervisor for its MQTT service when mqtt_broker is
// auto, and applies both. A Supervisor without an MQTT service is not an
// error (the embedded broker is used); a Supervisor that cannot be asked
// is, because silently falling back would hide Home Assistant's broker.
func Load(ctx context.Context) (Settings, error) {
	return load(ctx, DefaultPaths(), SupervisorURL, os.Getenv(TokenVariable))
}

func load(ctx context.Context, p Paths, supervisorURL, token string) (Settings, error) {
	opts, err := LoadOptions(p.Options)
	if err != nil {
		return Settings{}, err
	}
	var svc *Service
	if opts.MQTTBroker == BrokerAuto {
		svc, err = MQTTService(ctx, supervisorURL, token)
		if err != nil && !errors.Is(err, ErrNoService) {
			return Settings{}, fmt.Errorf("ask Home Assistant for its MQTT broker (set mqtt_broker to embedded or external to skip this): %w", err)
		}
	}
	return Apply(opts, svc, p)
}

func (s *Settings) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
