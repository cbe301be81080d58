package embedded

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/hostport"
	"github.com/fleet2mqtt/fleet2mqtt/internal/secret"
)

// Config is the embedded MQTT broker. Start from DefaultConfig and decode
// the configuration file over it.
type Config struct {
	// Listen is the host:port of the plain MQTT (TCP) listener. The
	// default, 127.0.0.1:1883, serves this machine only; ":1883" serves
	// the network. Empty disables the listener (the bridge still publishes
	// in-process).
	Listen string `yaml:"listen"`
	// TLS is an optional MQTT over TLS listener.
	TLS TLSConfig `yaml:"tls"`
	// WebSocket is an optional MQTT over WebSocket listener.
	WebSocket WebSocketConfig `yaml:"websocket"`
	// Users may connect with their name and password, from anywhere the
	// listeners are reachable.
	Users []User `yaml:"users"`
	// AllowAnonymous says who may connect without a user name: "loopback"
	// (default: clients on this machine only), "always" or "never". A
	// client that gives a user name must give that user's password, from
	// anywhere.
	AllowAnonymous Anonymous `yaml:"allow_anonymous"`
	// Persist keeps retained messages (the last value of every vehicle
	// topic, Home Assistant's discovery messages) in the data directory,
	// so that they survive a restart. Default true.
	Persist bool `yaml:"persist"`
	// PersistInterval is how often retained messages that changed are
	// written to disk; they are also written on a clean shutdown. After a
	// crash, changes of the last interval are lost (the cars send their
	// state again). Default 10s.
	PersistInterval time.Duration `yaml:"persist_interval"`
	// MaxQueued is how many messages one subscriber may fall behind
	// before the bridge's publish waits for it (see docs/topics.md,
	// "Delivery"): QoS 1 and 2 messages unacknowledged or held back for
	// its receive maximum, and messages not yet written to its
	// connection. It also bounds what a persistent session keeps while
	// its client is offline. From 1 to 65535 (the most packet identifiers
	// there are); default 32768.
	MaxQueued int `yaml:"max_queued"`
	// ClientRetainedMessages and ClientRetainedBytes bound the retained
	// messages that MQTT clients keep on topics outside the bridge's own
	// (Home Assistant's discovery of other devices, other tools' state):
	// at most this many messages and this many bytes of topic and payload
	// in all. A retained publish beyond them is refused (an MQTT 5 client
	// at QoS 1 or 2 gets reason code 0x97, quota exceeded; otherwise the
	// message is delivered but not kept). Defaults 10000 and 32 MiB.
	ClientRetainedMessages int   `yaml:"client_retained_messages"`
	ClientRetainedBytes    int64 `yaml:"client_retained_bytes"`
	// MaxQueuedBytes bounds the same backlog in bytes: messages not yet
	// written to the connection count their encoded size, each QoS 1 or 2
	// message waiting for its acknowledgement inflightCost (2 KiB, what
	// the broker holds for it). The broker's memory for subscribers that
	// fall behind is at most about MaxQueuedBytes × subscribers (plus the
	// retained messages sent on subscribe). At least 1 MiB (the largest
	// packet); default 4 MiB.
	MaxQueuedBytes int `yaml:"max_queued_bytes"`
	// MaxOfflineQueued bounds the QoS 1 and 2 messages kept for
	// persistent sessions while their clients are offline, in all
	// sessions together (each keeps at most MaxQueued): beyond it,
	// messages for them are dropped and counted (DropOfflineFull), so
	// that sessions nobody comes back for cannot fill the memory. A kept
	// message takes 2–3 KiB. 0 keeps none; default 32768, one
	// session's MaxQueued.
	MaxOfflineQueued int `yaml:"max_offline_queued"`
	// MaxSessionExpiry is the longest a persistent session outlives its
	// client's connection: an MQTT 5 client that asks for longer gets
	// this (its CONNACK says so), an MQTT 3 session without clean session
	// ends after this. A session nobody comes back for then ends, with
	// what it kept. At least 1s; default 168h (a week).
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	// MaxSubscriptions bounds the topic filters one client may be
	// subscribed to (each costs about 2 KiB): more are refused (SUBACK
	// 0x97, quota exceeded; 0x80 for MQTT 3), with a log line once per
	// connection. Home Assistant subscribes to a few hundred per car. At
	// least 1; default 10000.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxClients bounds the MQTT clients connected at once (each
	// connection takes about 30 KiB): one more is refused in its CONNACK
	// (0x89 server busy; 0x03 server unavailable for MQTT 3). At least 1;
	// default 1000.
	MaxClients int `yaml:"max_clients"`
	// StallTimeout is how long a subscriber whose backlog is full may
	// make no progress (read nothing, acknowledge nothing) before it is
	// disconnected, so that the cars, whose records wait for it, carry
	// on. Its persistent session keeps its QoS 1 and 2 messages (up to
	// MaxQueued). Shorter than vehicle.handle_timeout; at least 100ms;
	// default 5s.
	StallTimeout time.Duration `yaml:"stall_timeout"`
}

// TLSConfig is the MQTT over TLS listener.
type TLSConfig struct {
	// Listen is the host:port of the listener, e.g. ":8883". Empty
	// disables it.
	Listen string `yaml:"listen"`
	// CertFile is the PEM certificate chain the listener serves (also
	// used by a wss WebSocket listener). It is read again when it changes
	// on disk, so that a renewed certificate needs no restart.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
}

// WebSocketConfig is the MQTT over WebSocket listener, for browser-based
// dashboards.
type WebSocketConfig struct {
	// Listen is the host:port of the listener, e.g. "127.0.0.1:9001".
	// Empty (the default) disables it. Any request path is accepted.
	Listen string `yaml:"listen"`
	// TLS serves wss:// with the certificate of the tls section.
	TLS bool `yaml:"tls"`
	// AllowedOrigins lists the web origins (such as
	// "https://dash.example.com") whose pages may connect, besides pages
	// served from the listener's own host; "*" allows any. Requests
	// without an Origin header (programs, not browsers) are always
	// accepted. This keeps a web page from using the visitor's browser to
	// reach the broker.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Secret is a string that does not show itself in logs, printed
// configuration or encoded output (it reads [redacted]).
type Secret = secret.Secret

// User is one MQTT login.
type User struct {
	// Name is the MQTT user name.
	Name string `yaml:"name"`
	// Password is the password in clear text, or its bcrypt hash (a value
	// starting with $2a$, $2b$ or $2y$, e.g. from htpasswd -nbB).
	Password Secret `yaml:"password"`
}

// LogValue keeps passwords out of logs.
func (u User) LogValue() slog.Value { return slog.StringValue(u.Name) }

// Anonymous says who may connect without credentials.
type Anonymous string

// Anonymous policies.
const (
	AnonymousLoopback Anonymous = "loopback"
	AnonymousAlways   Anonymous = "always"
	AnonymousNever    Anonymous = "never"
)

// DefaultConfig returns the configuration the broker runs with when the
// file says nothing: plain MQTT on 127.0.0.1:1883, anonymous clients from
// this machine only, retained messages kept on disk.
func DefaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:1883",
		AllowAnonymous:   AnonymousLoopback,
		Persist:          true,
		PersistInterval:  10 * time.Second,
		MaxQueued:        32768,
		MaxQueuedBytes:   4 << 20,
		MaxOfflineQueued: 32768,
		MaxSessionExpiry: 7 * 24 * time.Hour,
		MaxSubscriptions: 10000,
		MaxClients:       1000,
		StallTimeout:     5 * time.Second,

		ClientRetainedMessages: 10000,
		ClientRetainedBytes:    32 << 20,
	}
}

// Validate reports the first option that cannot work, naming its key
// relative to this section ("listen", see package configerr). It
// checks that certificate files exist but does not parse them; Start does.
func (c Config) Validate() error {
	if err := validateAddr("listen", c.Listen); err != nil {
		return err
	}
	if err := validateAddr("tls.listen", c.TLS.Listen); err != nil {
		return err
	}
	if err := validateAddr("websocket.listen", c.WebSocket.Listen); err != nil {
		return err
	}
	needCert := c.TLS.Listen != "" || (c.WebSocket.Listen != "" && c.WebSocket.TLS)
	if needCert {
		for _, f := range []struct{ key, path string }{{"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
			if f.path == "" {
				return configerr.Errorf(f.key, "must be set for a TLS listener (tls.listen or websocket.tls)")
			}
			if _, err := os.Stat(f.path); err != nil {
				return configerr.Errorf(f.key, "%w", err)
			}
		}
	}
	for _, o := range c.WebSocket.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			return configerr.Errorf("websocket.allowed_origins", "%q is not an origin: use scheme://host[:port], e.g. \"https://dash.example.com\", or \"*\"", o)
		}
	}
	seen := make(map[string]bool, len(c.Users))
	for i, u := range c.Users {
		switch {
		case u.Name == "":
			return configerr.Errorf(fmt.Sprintf("users[%d].name", i), "must be set")
		case seen[u.Name]:
			return configerr.Errorf(fmt.Sprintf("users[%d].name", i), "%q appears twice", u.Name)
		case u.Password == "":
			return configerr.Errorf(fmt.Sprintf("users[%d].password", i), "must be set for user %q", u.Name)
		}
		if isBcrypt([]byte(u.Password)) {
			if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
				return configerr.Errorf(fmt.Sprintf("users[%d].password", i), "starts like a bcrypt hash but is not one (%v): give the password in clear text or a complete hash", err)
			}
		}
		seen[u.Name] = true
	}
	switch c.AllowAnonymous {
	case AnonymousLoopback, AnonymousAlways, AnonymousNever:
	default:
		return configerr.Errorf("allow_anonymous", "%q is not loopback, always or never", c.AllowAnonymous)
	}
	if c.Persist && c.PersistInterval < time.Second {
		return configerr.Errorf("persist_interval", "%v is too short: use at least 1s", c.PersistInterval)
	}
	if c.MaxQueued < 1 || c.MaxQueued > maxPacketIDs {
		return configerr.Errorf("max_queued", "%d is out of range: use 1 to %d", c.MaxQueued, maxPacketIDs)
	}
	if c.ClientRetainedMessages < 0 {
		return configerr.Errorf("client_retained_messages", "%d is negative: use 0 (clients keep no retained messages) or more", c.ClientRetainedMessages)
	}
	if c.ClientRetainedBytes < 0 {
		return configerr.Errorf("client_retained_bytes", "%d is negative: use 0 (clients keep no retained messages) or more", c.ClientRetainedBytes)
	}
	if c.MaxQueuedBytes < minQueuedBytes {
		return configerr.Errorf("max_queued_bytes", "%d is too small: use at least %d (1 MiB, the largest packet)", c.MaxQueuedBytes, minQueuedBytes)
	}
	if c.MaxOfflineQueued < 0 {
		return configerr.Errorf("max_offline_queued", "%d is negative: use 0 (offline sessions keep nothing) or more (default 32768)", c.MaxOfflineQueued)
	}
	if c.MaxSessionExpiry < time.Second || c.MaxSessionExpiry > math.MaxUint32*time.Second {
		return configerr.Errorf("max_session_expiry", "%v is out of range: use 1s or more (default 168h), up to about 136 years", c.MaxSessionExpiry)
	}
	if c.MaxClients < 1 {
		return configerr.Errorf("max_clients", "%d is too small: use 1 or more (default 1000)", c.MaxClients)
	}
	if c.MaxSubscriptions < 1 {
		return configerr.Errorf("max_subscriptions", "%d is too small: use 1 or more (default 10000)", c.MaxSubscriptions)
	}
	if c.StallTimeout < 100*time.Millisecond {
		return configerr.Errorf("stall_timeout", "%v is too short: use at least 100ms (default 5s)", c.StallTimeout)
	}
	return nil
}

// validateAddr checks an optional host:port.
func validateAddr(key, addr string) error {
	if addr == "" {
		return nil
	}
	if err := hostport.Check(addr); err != nil {
		return configerr.Errorf(key, "%w, e.g. \"127.0.0.1:1883\" or \":1883\"", err)
	}
	return nil
}
