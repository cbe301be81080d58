package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// Source is where a TLS listener's certificate comes from, kept current:
// certificate files that are renewed in place (Files), a certificate
// obtained and renewed by ACME (*acme.Manager), or a fixed certificate
// such as the development PKI's (Static).
type Source interface {
	// Configure makes tc serve the source's certificate (GetCertificate,
	// and whatever protocol the source needs on the listener).
	Configure(tc *tls.Config)
	// CA returns the PEM of the authorities that validate the certificate
	// served now: what a car's telemetry config carries as "ca". Nil when
	// it cannot be worked out (yet).
	CA() []byte
	// Run does the source's background work (obtaining, renewing) until
	// ctx ends. Start it once the listener accepts connections.
	Run(ctx context.Context) error
}

var _ Source = (*acme.Manager)(nil)

// Static serves one certificate that never changes.
type Static struct {
	Cert tls.Certificate
	// CAPEM is what CA returns.
	CAPEM []byte
}

// Configure makes tc serve the certificate.
func (s *Static) Configure(tc *tls.Config) {
	tc.GetCertificate = nil
	tc.Certificates = []tls.Certificate{s.Cert}
}

// CA returns CAPEM.
func (s *Static) CA() []byte { return s.CAPEM }

// Run returns when ctx ends: there is nothing to renew.
func (s *Static) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Config is where a listener's certificate and the authorities of its
// clients come from, when they are files.
type Config struct {
	// CertFile and KeyFile hold the server certificate chain and its key
	// (PEM). Without them fleet2mqtt serves a self-signed development
	// certificate kept in the data directory, which real cars do not accept.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFiles are PEM bundles of the authorities whose client
	// certificates are accepted: Tesla's vehicle CA bundle in production,
	// plus a development CA for simulated cars.
	ClientCAFiles []string `yaml:"client_ca_files"`
}

// Validate reports the first setting that cannot work, naming its key
// relative to its section (see package configerr).
func (c Config) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return configerr.Pair("cert_file", "key_file", "set both or neither")
	}
	return nil
}

// ClientCAs reads ClientCAFiles into a pool; nil when there are none.
func (c Config) ClientCAs() (*x509.CertPool, error) {
	if len(c.ClientCAFiles) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, f := range c.ClientCAFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, configerr.Errorf("client_ca_files", "%w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configerr.Errorf("client_ca_files", "%s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// EnsureDevDir loads the development PKI from dir, creating it on first
// use. The PKI is written into a temporary directory that is renamed into
// place, so that running out of disk space half way leaves no
// half-written PKI behind to block the next start. log may be nil.
func EnsureDevDir(dir string, log *slog.Logger) (*Bundle, error) {
	b, err := LoadDir(dir)
	if err == nil && b.ServerCA != nil && b.VehicleCA != nil && b.Server.Certificate != nil {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("development certificates in %s: %w (delete the directory to make new ones)", dir, err)
	}
	if err == nil {
		return nil, fmt.Errorf("development certificates in %s are incomplete: delete the directory to make new ones", dir)
	}
	b, err = NewBundle(nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".dev-pki-")
	if err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename, or a failed attempt
	if err := WriteDir(tmp, b); err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	if log != nil {
		log.Info("created development certificates", "dir", dir)
	}
	return b, nil
}
