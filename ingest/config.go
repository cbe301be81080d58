package ingest

import (
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/hostport"
)

// Config is how the vehicle listener treats connections. Its TLS
// configuration (certificate, vehicle CAs) is not here: New takes it
// ready made (see package certs).
type Config struct {
	// Listen is the address cars connect to. Cars always dial port 443 of
	// the hostname in their telemetry config; forward that port here.
	Listen string `yaml:"listen"`
	// PingInterval is how often a connected car is pinged.
	PingInterval time.Duration `yaml:"ping_interval"`
	// IdleTimeout closes a connection on which nothing arrived, neither a
	// frame nor an answer to a ping, for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HandshakeTimeout bounds the TLS handshake and the WebSocket upgrade.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// WriteTimeout bounds writing one response; a car that stops reading
	// its acknowledgements is disconnected after it.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// HandleTimeout bounds how long a frame may wait to be published before
	// it is left unacknowledged (the car sends it again).
	HandleTimeout time.Duration `yaml:"handle_timeout"`
}

// MaxFrameSize is the protocol's limit on one vehicle frame, in bytes.
const MaxFrameSize = 1_000_000

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:8443",
		PingInterval:     30 * time.Second,
		IdleTimeout:      90 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		WriteTimeout:     10 * time.Second,
		HandleTimeout:    30 * time.Second,
	}
}

// Validate reports the first setting that cannot work, naming its key
// relative to this section ("listen", see package configerr).
func (c Config) Validate() error {
	if c.Listen == "" {
		return configerr.Errorf("listen", "must be set, e.g. \":443\"")
	}
	if err := hostport.Check(c.Listen); err != nil {
		return configerr.Errorf("listen", "%w", err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"ping_interval", c.PingInterval}, {"idle_timeout", c.IdleTimeout},
		{"handshake_timeout", c.HandshakeTimeout}, {"write_timeout", c.WriteTimeout},
		{"handle_timeout", c.HandleTimeout},
	} {
		if d.v <= 0 {
			return configerr.Errorf(d.key, "%v must be positive", d.v)
		}
	}
	if c.IdleTimeout <= c.PingInterval {
		return configerr.Errorf("idle_timeout", "%v must be longer than %s (%v), or every car is dropped before it can answer a ping", c.IdleTimeout, configerr.Key("ping_interval"), c.PingInterval)
	}
	return nil
}
