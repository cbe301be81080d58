package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
)

// VehicleConfig is the vehicle section: the listener's own settings and,
// under acme, how it obtains its certificate by itself.
type VehicleConfig struct {
	ingest.Config `yaml:",inline"`
	// ACME obtains and renews the listener's certificate from Let's
	// Encrypt (or another ACME server) by TLS-ALPN-01 on the listener's
	// port, instead of cert_file and key_file.
	ACME acme.Config `yaml:"acme"`
}

// Validate checks the listener's settings and the ACME section.
func (v VehicleConfig) Validate() error {
	if err := v.Config.Validate(); err != nil {
		return err
	}
	if err := v.ACME.Validate(); err != nil {
		return fmt.Errorf("vehicle.acme.%w", err)
	}
	if v.ACME.Enabled && v.CertFile != "" {
		return errors.New("vehicle.acme.enabled and vehicle.cert_file: choose one (with ACME the certificate is obtained, not read from a file)")
	}
	return nil
}

// validateACME checks what ACME needs from other sections: a host name,
// and the setup page's public host name among the certificate's names.
func (c *Config) validateACME() error {
	a := c.Vehicle.ACME
	if !a.Enabled {
		return nil
	}
	public := c.Setup.PublicHostname
	switch {
	case len(a.Hostnames) == 0 && public == "":
		return errors.New("vehicle.acme.hostnames: empty, and setup.public_hostname is not set either: name the host cars connect to")
	case len(a.Hostnames) > 0 && public != "" && !containsFold(a.Hostnames, public):
		return fmt.Errorf("setup.public_hostname %q is not among vehicle.acme.hostnames %q: the certificate would not cover the name cars connect to", public, a.Hostnames)
	}
	return nil
}

func containsFold(list []string, s string) bool {
	s = strings.TrimSuffix(s, ".")
	for _, v := range list {
		if strings.EqualFold(strings.TrimSuffix(v, "."), s) {
			return true
		}
	}
	return false
}

// acmeConfig returns the ACME section with its defaults filled in: the
// setup page's public host name, and <data dir>/acme for the cache.
func acmeConfig(v VehicleConfig, dataDir, publicHostname string) acme.Config {
	a := v.ACME
	if len(a.Hostnames) == 0 && publicHostname != "" {
		a.Hostnames = []string{publicHostname}
	}
	if a.CacheDir == "" {
		a.CacheDir = filepath.Join(dataDir, "acme")
	}
	return a
}

// newACMEManager builds the ACME manager of the vehicle listener.
func newACMEManager(v VehicleConfig, dataDir, publicHostname string, log *slog.Logger) (*acme.Manager, error) {
	a := acmeConfig(v, dataDir, publicHostname)
	m, err := acme.New(a, acme.WithLogger(log.With("component", "acme")))
	if err != nil {
		return nil, fmt.Errorf("vehicle.acme.%w", err)
	}
	log.Info("vehicle certificate by ACME", "hosts", strings.Join(m.Hosts(), ","), "directory", a.Directory(), "cache", a.CacheDir)
	return m, nil
}

// vehicleCert is how the vehicle listener gets its certificate.
type vehicleCert struct {
	// tls is the listener's TLS configuration.
	tls *tls.Config
	// ca returns the PEM that cars' configs carry as "ca", as of now: it
	// follows ACME renewals.
	ca func() []byte
	// run, when not nil, is background work to start once the listener
	// accepts connections (obtaining the ACME certificate), until ctx ends.
	run func(ctx context.Context)
}

// useACME makes vc serve the manager's certificate.
func (vc *vehicleCert) useACME(m *acme.Manager) {
	m.Configure(vc.tls)
	vc.ca = m.CA
	vc.run = func(ctx context.Context) { _ = m.Run(ctx) }
}
