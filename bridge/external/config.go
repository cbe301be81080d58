package external

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fleet2mqtt/fleet2mqtt/internal/secret"
)

// Defaults for the zero values of Config.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultQueueSize      = 10000
	DefaultSessionExpiry  = time.Hour
)

// Limits of the MQTT protocol that Validate checks.
const (
	maxKeepAlive     = 65535 * time.Second      // a two-byte number of seconds
	maxSessionExpiry = 0xFFFFFFFF * time.Second // a four-byte number of seconds
	maxQueueSize     = 1 << 20                  // far above any sensible setting
	maxClientIDLen   = 65535                    // a two-byte length
	clientIDPrefix   = "fleet2mqtt-"            // default client id prefix
	schemeList       = "mqtt, mqtts, ws, wss (aliases: tcp, ssl, tls)"
)

// Config is the external broker section of the configuration. The zero value
// of every field but URL means its default; call Defaults before Validate.
type Config struct {
	// URL of the broker: mqtt://host[:port] (default port 1883),
	// mqtts://host[:port] (8883), ws://host[:port]/path (80) or
	// wss://host[:port]/path (443). tcp:// is accepted for mqtt://, ssl:// and
	// tls:// for mqtts://. A WebSocket URL without a path gets /mqtt.
	// User information in the URL is not allowed: use username and password.
	URL string `yaml:"url"`

	// Username to log in with; empty for anonymous access.
	Username string `yaml:"username"`

	// Password to log in with. It is never logged and prints as [redacted].
	Password Secret `yaml:"password"`

	// CAFile is a PEM file of certificate authorities to trust in addition
	// to the system's, for mqtts:// and wss:// brokers with a private CA.
	CAFile string `yaml:"ca_file"`

	// ClientID identifies the bridge to the broker, which keeps its session
	// (in-flight messages and subscriptions) under this id across
	// reconnections. Default: "fleet2mqtt-" followed by the host name (so a
	// restarted bridge on the same host takes its session back), or by 8
	// random hex digits when the host name is unknown. Two bridges on one
	// broker need different ids, or they disconnect each other.
	ClientID string `yaml:"client_id"`

	// KeepAlive is the longest silence on the connection before the client
	// sends a ping; the broker drops the connection after 1.5 times as long.
	// Whole seconds from 1s to 18h12m15s; default 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`

	// ConnectTimeout bounds one connection attempt (dial, TLS, WebSocket
	// upgrade, CONNECT/CONNACK). Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`

	// QueueSize is the most messages that may wait at once, across all
	// callers, for the connection or for the broker's acknowledgement. When
	// it is reached, Publish fails at once with ErrQueueFull, the vehicle's
	// frame is not acknowledged and the car sends it again later, instead of
	// memory growing while the broker is away. Default 10000.
	QueueSize int `yaml:"queue_size"`

	// SessionExpiry is how long the broker keeps the bridge's session after
	// the connection drops; unacknowledged messages are resent when the
	// session is resumed within it. Whole seconds from 1s; default 1h.
	SessionExpiry time.Duration `yaml:"session_expiry"`
}

// Secret is a string that does not show itself in logs, printed
// configuration or encoded output (it reads [redacted]).
type Secret = secret.Secret

// DefaultConfig returns the settings a configuration file starts from.
// ClientID stays empty: it is chosen by New (see WithDefaults), from the
// host name of the machine that connects.
func DefaultConfig() Config {
	return Config{
		KeepAlive:      DefaultKeepAlive,
		ConnectTimeout: DefaultConnectTimeout,
		QueueSize:      DefaultQueueSize,
		SessionExpiry:  DefaultSessionExpiry,
	}
}

// WithDefaults returns c with its zero fields set to their defaults, the
// client id to fleet2mqtt-<host name>: the settings New connects with.
func (c Config) WithDefaults() Config {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
	if c.ClientID == "" {
		c.ClientID = defaultClientID()
	}
	return c
}

// defaultClientID is "fleet2mqtt-<hostname>", or 8 random hex digits when
// the host name is unknown or unusable.
func defaultClientID() string {
	if h, err := os.Hostname(); err == nil {
		h = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
				return r
			}
			return -1
		}, h)
		if h != "" {
			return clientIDPrefix + h
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return clientIDPrefix + hex.EncodeToString(b[:])
}

// Validate checks every field and names the key relative to this section,
// the value and what would be valid in its error. Zero fields stand for
// their defaults (see WithDefaults); Validate changes nothing.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if _, err := parseURL(c.URL); err != nil {
		return err
	}
	if strings.ContainsRune(c.Username, 0) || !utf8.ValidString(c.Username) {
		return fmt.Errorf("username %q: must be UTF-8 text without NUL", c.Username)
	}
	if len(c.Username) > 65535 || len(c.Password) > 65535 {
		return errors.New("username, password: must be at most 65535 bytes each")
	}
	u, _ := parseURL(c.URL)
	if c.CAFile != "" && !isTLS(u.Scheme) {
		return fmt.Errorf("ca_file %q: only used with mqtts:// or wss:// URLs, but url is %s://", c.CAFile, u.Scheme)
	}
	if c.ClientID == "" || len(c.ClientID) > maxClientIDLen || strings.ContainsRune(c.ClientID, 0) || !utf8.ValidString(c.ClientID) {
		return fmt.Errorf("client_id %q: must be 1 to %d bytes of UTF-8 text without NUL", c.ClientID, maxClientIDLen)
	}
	if c.KeepAlive < time.Second || c.KeepAlive > maxKeepAlive || c.KeepAlive%time.Second != 0 {
		return fmt.Errorf("keep_alive %v: must be whole seconds from 1s to %v", c.KeepAlive, maxKeepAlive)
	}
	if c.ConnectTimeout <= 0 {
		return fmt.Errorf("connect_timeout %v: must be positive, e.g. 10s", c.ConnectTimeout)
	}
	if c.QueueSize < 1 || c.QueueSize > maxQueueSize {
		return fmt.Errorf("queue_size %d: must be from 1 to %d", c.QueueSize, maxQueueSize)
	}
	if c.SessionExpiry < time.Second || c.SessionExpiry > maxSessionExpiry || c.SessionExpiry%time.Second != 0 {
		return fmt.Errorf("session_expiry %v: must be whole seconds from 1s to %v", c.SessionExpiry, maxSessionExpiry)
	}
	return nil
}

// parseURL checks a broker URL and returns it with its canonical scheme
// (mqtt, mqtts, ws or wss), an explicit port and, for WebSockets, a path.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("url: missing; set it to the broker, e.g. mqtt://192.168.1.10:1883 (schemes: %s)", schemeList)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", raw, err)
	}
	scheme, port := canonicalScheme(strings.ToLower(u.Scheme))
	if scheme == "" {
		return nil, fmt.Errorf("url %q: scheme %q is not one of %s", raw, u.Scheme, schemeList)
	}
	if u.User != nil {
		return nil, fmt.Errorf("url %q: credentials in the URL are not allowed; use username and password", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q: missing host, e.g. %s://192.168.1.10", raw, scheme)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("url %q: port %q must be from 1 to 65535", raw, p)
		}
		port = p
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url %q: query and fragment are not allowed", raw)
	}
	isWS := scheme == "ws" || scheme == "wss"
	if !isWS && u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("url %q: a path is only allowed for ws:// and wss://", raw)
	}
	out := &url.URL{Scheme: scheme, Host: net.JoinHostPort(u.Hostname(), port)}
	if isWS {
		out.Path = u.Path
		if out.Path == "" {
			out.Path = "/mqtt"
		}
	}
	return out, nil
}

// canonicalScheme maps a URL scheme and its aliases to mqtt, mqtts, ws or
// wss with its default port; "" for an unknown scheme.
func canonicalScheme(s string) (scheme, port string) {
	switch s {
	case "mqtt", "tcp":
		return "mqtt", "1883"
	case "mqtts", "ssl", "tls":
		return "mqtts", "8883"
	case "ws":
		return "ws", "80"
	case "wss":
		return "wss", "443"
	}
	return "", ""
}

func isTLS(scheme string) bool { return scheme == "mqtts" || scheme == "wss" }
