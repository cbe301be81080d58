package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
)

// devPKIDir is where fleet2mqtt keeps the development certificates it makes
// when no server certificate or vehicle CA is configured.
func devPKIDir(dataDir string) string { return filepath.Join(dataDir, "dev-pki") }

// vehicleTLS builds the TLS configuration of the vehicle listener: a
// certificate obtained by ACME (vehicle.acme), or the configured
// certificate, and the vehicle CA bundles, or else a development PKI kept
// in the data directory, so that fleet2mqtt starts with no configuration
// at all and simulated cars can connect to it. It also gives the PEM of the
// CA chain that validates the served certificate: what the car's telemetry
// config must carry as "ca".
func vehicleTLS(cfg VehicleConfig, dataDir, publicHostname string, log *slog.Logger) (*vehicleCert, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	vc := &vehicleCert{tls: tc}

	var caPEM []byte
	var dev *certs.Bundle
	devBundle := func() (*certs.Bundle, error) {
		if dev != nil {
			return dev, nil
		}
		var err error
		dev, err = ensureDevPKI(devPKIDir(dataDir), log)
		return dev, err
	}

	if cfg.ACME.Enabled {
		m, err := newACMEManager(cfg, dataDir, publicHostname, log)
		if err != nil {
			return nil, err
		}
		vc.useACME(m)
	} else if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("vehicle.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		if caPEM, err = chainCA(cert); err != nil {
			log.Warn("cannot work out the CA of vehicle.cert_file; the setup page cannot push a config until it can", "err", err)
		}
	} else {
		b, err := devBundle()
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{b.Server}
		caPEM = b.ServerCA.CertPEM
		log.Warn("no vehicle.cert_file: serving a development certificate that real cars do not accept",
			"ca", filepath.Join(devPKIDir(dataDir), certs.CAFile))
	}

	if len(cfg.ClientCAFiles) > 0 {
		pool := x509.NewCertPool()
		for _, f := range cfg.ClientCAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("vehicle.client_ca_files: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("vehicle.client_ca_files: %s holds no PEM certificate", f)
			}
		}
		tc.ClientCAs = pool
	} else {
		b, err := devBundle()
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = b.VehicleCA.Pool()
		log.Warn("no vehicle.client_ca_files: only simulated cars with development certificates can connect; add Tesla's vehicle CA bundle for real cars",
			"vehicle_ca", filepath.Join(devPKIDir(dataDir), certs.VehicleCAFile))
	}
	if vc.ca == nil {
		vc.ca = func() []byte { return caPEM }
	}
	return vc, nil
}

// ensureDevPKI loads the development PKI from dir, creating it on first use.
// The PKI is written into a temporary directory that is renamed into place,
// so that running out of disk space half way leaves no half-written PKI
// behind to block the next start.
func ensureDevPKI(dir string, log *slog.Logger) (*certs.Bundle, error) {
	b, err := certs.LoadDir(dir)
	if err == nil && b.ServerCA != nil && b.VehicleCA != nil && b.Server.Certificate != nil {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("development certificates in %s: %w (delete the directory to make new ones)", dir, err)
	}
	if err == nil {
		return nil, fmt.Errorf("development certificates in %s are incomplete: delete the directory to make new ones", dir)
	}
	b, err = certs.NewBundle(nil)
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
	if err := certs.WriteDir(tmp, b); err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	log.Info("created development certificates", "dir", dir)
	return b, nil
}

// chainCA returns the PEM of the authorities that validate cert: its
// intermediates and the root that the system trusts them through (a root
// stays valid across renewals, which is what a car's config wants), or, for
// a chain that ends in a self-signed certificate, the certificates after
// the leaf. See acme.ServedCA.
func chainCA(cert tls.Certificate) ([]byte, error) {
	ca, err := acme.ServedCA(cert.Certificate, nil)
	if errors.Is(err, acme.ErrUntrustedChain) {
		return nil, errors.New("the chain in vehicle.cert_file does not lead to a trusted root: include the intermediates, and the root if it is private")
	}
	return ca, err
}
