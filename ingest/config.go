package ingest

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the vehicle listener's configuration.
type Config struct {
	// Listen is the address cars connect to. Cars always dial port 443 of
	// the hostname in their telemetry config; forward that port here.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile hold the server certificate chain and its key
	// (PEM). Without them fleet2mqtt serves a self-signed development
	// certificate kept in the data directory, which real cars do not accept.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFiles are PEM bundles of the authorities whose vehicle
	// certificates are accepted: Tesla's vehicle CA bundle in production,
	// plus a development CA for simulated cars.
	ClientCAFiles []string `yaml:"client_ca_files"`
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

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("vehicle.listen: must be set, e.g. \":443\"")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("vehicle.listen: %q is not host:port: %w", c.Listen, err)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("vehicle.cert_file and vehicle.key_file: set both or neither")
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
			return fmt.Errorf("vehicle.%s: %v must be positive", d.key, d.v)
		}
	}
	if c.IdleTimeout <= c.PingInterval {
		return fmt.Errorf("vehicle.idle_timeout: %v must be longer than vehicle.ping_interval (%v), or every car is dropped before it can answer a ping", c.IdleTimeout, c.PingInterval)
	}
	return nil
}
