package certs

import (
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// Vehicle is where the vehicle listener's certificate and the
// authorities of the cars' certificates come from: a certificate
// obtained by ACME, or the configured certificate files (followed when
// renewed), and the configured vehicle CA bundles; whatever is not
// configured comes from a development PKI kept in DevDir, so that
// fleet2mqtt starts with no configuration at all and simulated cars can
// connect to it.
type Vehicle struct {
	// Files are cert_file, key_file and client_ca_files.
	Files Config
	// ACME, when set, obtains the certificate instead of Files (its host
	// names and cache directory resolved).
	ACME *acme.Config
	// DevDir is the development PKI's directory.
	DevDir string
	// Section is where these settings sit in the configuration
	// ("vehicle"): the keys errors and logs name are under it.
	Section string
}

// Listener returns the source of the listener's certificate and the
// listener's TLS configuration (the source's certificate, the cars' client
// certificates required and verified). It makes the development PKI on
// first use, and logs what it chose when that is not what real cars
// need. Nothing runs yet: the caller runs the source (Source.Run) once the
// listener accepts connections.
func (v Vehicle) Listener(log *slog.Logger) (Source, *tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var dev *Bundle
	devBundle := func() (*Bundle, error) {
		var err error
		if dev == nil {
			dev, err = EnsureDevDir(v.DevDir, log)
		}
		return dev, err
	}
	var src Source
	switch {
	case v.ACME != nil:
		m, err := acme.New(*v.ACME, log.With("component", "acme"))
		if err != nil {
			return nil, nil, configerr.Prefix(v.Section+".acme", err)
		}
		log.Info("vehicle certificate by ACME", "hosts", strings.Join(m.Hosts(), ","), "directory", v.ACME.Directory(), "cache", v.ACME.CacheDir)
		src = m
	case v.Files.CertFile != "":
		f, err := NewFiles(v.Files.CertFile, v.Files.KeyFile, log, FilesOptions{
			Listener: "vehicle listener", CertKey: v.Section + ".cert_file", KeyKey: v.Section + ".key_file",
			Recheck: DefaultRecheck,
		})
		if err != nil {
			return nil, nil, configerr.Prefix(v.Section, err)
		}
		src = f
	default:
		b, err := devBundle()
		if err != nil {
			return nil, nil, err
		}
		src = &Static{Cert: b.Server, CAPEM: b.ServerCA.CertPEM}
		log.Warn("no "+v.Section+".cert_file: serving a development certificate that real cars do not accept",
			"ca", filepath.Join(v.DevDir, CAFile))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	src.Configure(tc)
	pool, err := v.Files.ClientCAs()
	if err != nil {
		return nil, nil, configerr.Prefix(v.Section, err)
	}
	if pool == nil {
		b, err := devBundle()
		if err != nil {
			return nil, nil, err
		}
		pool = b.VehicleCA.Pool()
		log.Warn("no "+v.Section+".client_ca_files: only simulated cars with development certificates can connect; add Tesla's vehicle CA bundle for real cars",
			"vehicle_ca", filepath.Join(v.DevDir, VehicleCAFile))
	}
	tc.ClientCAs = pool
	return src, tc, nil
}

// CA returns the ca the listener's certificate would be pushed to cars
// with, without changing anything (check-cert): the chain of the ACME
// certificate in the cache, of cert_file, or the development CA. source
// says where it comes from; a nil ca with a nil error means none is known
// yet.
func (v Vehicle) CA() (ca []byte, source string, err error) {
	switch {
	case v.ACME != nil:
		ca, err = acme.CachedCA(*v.ACME)
		return ca, "the ACME certificate in " + v.ACME.CacheDir, configerr.Prefix(v.Section+".acme", err)
	case v.Files.CertFile != "":
		ca, err = FileCA(v.Files.CertFile, v.Files.KeyFile)
		return ca, v.Files.CertFile, configerr.Prefix(v.Section, err)
	}
	return DevCA(v.DevDir), filepath.Join(v.DevDir, CAFile), nil
}
