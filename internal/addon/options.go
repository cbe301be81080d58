package addon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// Options are the settings the user makes on the add-on's configuration
// page. The Supervisor writes them to /data/options.json, checked against
// the schema of addon/config.yaml; the JSON names here must stay equal to
// the keys there (a test checks it).
type Options struct {
	// Hostname is the public DNS name cars connect to (port 443). The
	// setup page uses it; empty until the user has one.
	Hostname string `json:"hostname"`
	// Certificate is "ssl" (CertFile and KeyFile from Home Assistant's
	// /ssl folder, e.g. made by the Let's Encrypt add-on) or
	// "development" (a self-signed certificate only simulated cars take).
	Certificate string `json:"certificate"`
	// CertFile and KeyFile are file names in /ssl.
	CertFile string `json:"certfile"`
	KeyFile  string `json:"keyfile"`
	// MQTTBroker is auto, embedded or external; see the package doc.
	MQTTBroker string `json:"mqtt_broker"`
	// MQTTURL, MQTTUsername and MQTTPassword are the external broker.
	MQTTURL      string `json:"mqtt_url"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
	// MQTTUsers may log in to the embedded broker.
	MQTTUsers []User `json:"mqtt_users"`
	// TopicPrefix is the first topic level: <prefix>/<VIN>/<Field>.
	TopicPrefix string `json:"topic_prefix"`
	// Discovery announces cars to Home Assistant.
	Discovery bool `json:"discovery"`
	// DiscoveryPrefix is Home Assistant's discovery prefix.
	DiscoveryPrefix string `json:"discovery_prefix"`
	// CompatLayout also publishes the MQTT layout of Tesla's reference
	// server (telemetry/<VIN>/v/<Field>, …).
	CompatLayout bool `json:"compat_layout"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
	// Commands turns vehicle commands on (commands.enabled): MQTT command
	// topics and Home Assistant's controls.
	Commands bool `json:"commands"`
	// CommandCategories are the kinds of command accepted
	// (commands.categories), of CommandCategoryChoices.
	CommandCategories []string `json:"command_categories"`
	// CommandUsers are the users of the built-in broker (of MQTTUsers)
	// who may command the cars (commands.mqtt_users).
	CommandUsers []string `json:"command_users"`
}

// CommandCategoryChoices are the values of command_categories, the
// categories of fleet2mqtt's commands section.
var CommandCategoryChoices = []string{command.CategoryCharging, command.CategoryClimate,
	command.CategorySecurity, command.CategoryAccess, command.CategoryAlerts}

// commandCategories turns the command_categories option into the
// commands section's categories.
func commandCategories(names []string) command.Categories {
	var c command.Categories
	for _, n := range names {
		switch n {
		case command.CategoryCharging:
			c.Charging = true
		case command.CategoryClimate:
			c.Climate = true
		case command.CategorySecurity:
			c.Security = true
		case command.CategoryAccess:
			c.Access = true
		case command.CategoryAlerts:
			c.Alerts = true
		}
	}
	return c
}

// User is one login of the embedded broker.
type User struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// String keeps the password out of logs and messages.
func (u User) String() string { return u.Name }

// Choices of Options.Certificate and Options.MQTTBroker.
const (
	CertificateSSL         = "ssl"
	CertificateDevelopment = "development"

	BrokerAuto     = "auto"
	BrokerEmbedded = "embedded"
	BrokerExternal = "external"
)

// DefaultOptions are the options of a fresh installation, equal to the
// options section of addon/config.yaml (a test checks it). Keys missing
// from options.json keep these values.
func DefaultOptions() Options {
	return Options{
		Certificate:     CertificateSSL,
		CertFile:        "fullchain.pem",
		KeyFile:         "privkey.pem",
		MQTTBroker:      BrokerAuto,
		MQTTUsers:       []User{},
		TopicPrefix:     "tesla",
		Discovery:       true,
		DiscoveryPrefix: "homeassistant",
		LogLevel:        "info",
		// fleet2mqtt's defaults once commands are on: all but access.
		CommandCategories: []string{command.CategoryCharging, command.CategoryClimate, command.CategorySecurity, command.CategoryAlerts},
		CommandUsers:      []string{},
	}
}

// maxOptionsSize bounds what LoadOptions reads; real options are a few
// hundred bytes.
const maxOptionsSize = 1 << 20

// LoadOptions reads the options file over DefaultOptions and checks it.
// Unknown keys are errors that name every one of them, so that an option
// left over from another version never silently does nothing.
func LoadOptions(path string) (Options, error) {
	opts := DefaultOptions()
	raw, err := os.ReadFile(path)
	if err != nil {
		return opts, fmt.Errorf("read add-on options: %w", err)
	}
	if len(raw) > maxOptionsSize {
		return opts, fmt.Errorf("add-on options %s: %d bytes is not an options file", path, len(raw))
	}
	if err := decodeOptions(raw, &opts); err != nil {
		return opts, fmt.Errorf("add-on options %s: %w", path, err)
	}
	if err := opts.Validate(); err != nil {
		return opts, fmt.Errorf("add-on options %s: %w", path, err)
	}
	return opts, nil
}

func decodeOptions(raw []byte, opts *Options) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	known := optionKeys()
	var unknown []string
	for k := range keys {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("%w: %s (known: %s)", ErrUnknownOption, strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // users' entries: {"name","password"} only
	if err := dec.Decode(opts); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: %s is not a %s", te.Field, te.Value, te.Type)
		}
		if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			// Top-level keys were checked above: this is inside a user.
			return fmt.Errorf("mqtt_users: unknown field %s (an entry has a name and a password only)", rest)
		}
		return err
	}
	return nil
}

// optionKeys lists the JSON names of Options, in declaration order.
func optionKeys() []string {
	return []string{
		"hostname", "certificate", "certfile", "keyfile",
		"mqtt_broker", "mqtt_url", "mqtt_username", "mqtt_password", "mqtt_users",
		"topic_prefix", "discovery", "discovery_prefix", "compat_layout", "log_level",
		"commands", "command_categories", "command_users",
	}
}

// Validate reports the first option that cannot work, naming it as the
// add-on page does. Values that fleet2mqtt's own configuration checks
// (the prefixes, the broker URL) are left to it.
func (o Options) Validate() error {
	switch o.Certificate {
	case CertificateSSL:
		for _, f := range []struct{ key, v string }{{"certfile", o.CertFile}, {"keyfile", o.KeyFile}} {
			if err := checkSSLName(f.key, f.v); err != nil {
				return err
			}
		}
	case CertificateDevelopment:
	default:
		return fmt.Errorf("certificate: %q is not ssl or development", o.Certificate)
	}
	switch o.MQTTBroker {
	case BrokerAuto, BrokerEmbedded:
	case BrokerExternal:
		if o.MQTTURL == "" {
			return errors.New("mqtt_url: must be set when mqtt_broker is external, e.g. mqtt://192.168.1.10:1883")
		}
	default:
		return fmt.Errorf("mqtt_broker: %q is not auto, embedded or external", o.MQTTBroker)
	}
	for i, u := range o.MQTTUsers {
		if u.Name == "" || u.Password == "" {
			return fmt.Errorf("mqtt_users[%d]: both name and password must be set", i)
		}
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not debug, info, warn or error", o.LogLevel)
	}
	for i, c := range o.CommandCategories {
		if !slices.Contains(CommandCategoryChoices, c) {
			return fmt.Errorf("command_categories[%d]: %q is not %s", i, c, strings.Join(CommandCategoryChoices, ", "))
		}
	}
	for i, u := range o.CommandUsers {
		if u == "" {
			return fmt.Errorf("command_users[%d]: is empty: name a user of mqtt_users", i)
		}
	}
	return nil
}

// sslName is a certfile or keyfile option as a path relative to the ssl
// folder: people often write the full path the add-on sees.
func sslName(name string) string { return strings.TrimPrefix(name, "/ssl/") }

// checkSSLName accepts a file name inside /ssl, possibly in a sub folder,
// but nothing that leaves it.
func checkSSLName(key, name string) error {
	name = sslName(name)
	if name == "" {
		return fmt.Errorf("%s: must be set when certificate is ssl, e.g. fullchain.pem", key)
	}
	if filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return fmt.Errorf("%s: %q must be a file name inside Home Assistant's ssl folder, e.g. fullchain.pem", key, name)
	}
	return nil
}
