package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
)

// devPKIDir is where fleet2mqtt keeps the development certificates it makes
// when no server certificate or vehicle CA is configured.
func devPKIDir(dataDir string) string { return filepath.Join(dataDir, "dev-pki") }

// vehicleTLS builds the TLS configuration of the vehicle listener: a
// certificate obtained by ACME (vehicle.acme), or the configured
// certificate (loaded again when its files change, see certFiles), and the
// vehicle CA bundles, or else a development PKI kept in the data
// directory, so that fleet2mqtt starts with no configuration at all and
// simulated cars can connect to it. It also gives the PEM of the CA chain
// that validates the served certificate: what the car's telemetry config
// must carry as "ca".
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
		files, err := newCertFiles(cfg.CertFile, cfg.KeyFile, certRecheck, time.Now, log)
		if err != nil {
			return nil, err
		}
		tc.GetCertificate = files.GetCertificate
		vc.ca = files.CA
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

// certRecheck is how long the vehicle listener goes on serving
// vehicle.cert_file before it looks at the files again. Renewals happen
// weeks before expiry, so the delay costs nothing, while a fleet of cars
// reconnecting at once costs two stat calls per interval, not per car.
const certRecheck = 30 * time.Second

// certFiles serves the key pair in vehicle.cert_file and vehicle.key_file
// and follows its renewals (certbot, a reverse proxy's tooling, a mounted
// secret): when a handshake or the setup page asks for the certificate
// and recheck has passed since the last look, it stats both files and
// loads them again if either changed: another file (a replaced file or
// symbolic link), another size or another modification time. A pair that
// cannot be loaded (half written, key and certificate out of step) is
// logged once per change and the previous pair is served until the files
// change again, so a renewal caught mid-way never takes the listener down.
type certFiles struct {
	certFile, keyFile string
	recheck           time.Duration
	now               func() time.Time
	log               *slog.Logger

	// served is what handshakes get; it is replaced whole.
	served atomic.Pointer[servedPair]
	// due is when the files are looked at next.
	due atomic.Pointer[time.Time]
	// looking is held by the one caller looking at the files; the others
	// serve what there is rather than wait. It guards seen.
	looking sync.Mutex
	// seen is what the files looked like at the last look, loaded or not.
	seen pairStamp
}

// servedPair is a loaded key pair and the CA chain that validates it.
type servedPair struct {
	cert *tls.Certificate
	// ca is the PEM that cars' configs carry as "ca"; nil when it cannot be
	// worked out (see chainCA).
	ca []byte
}

// pairStamp is what the certificate and key files looked like: their
// os.Stat information (following symbolic links), nil for a file that
// could not be stat'ed.
type pairStamp [2]os.FileInfo

// stampPair stats the certificate and key files. The error is the first
// stat error; the stamp is complete even then.
func stampPair(certFile, keyFile string) (pairStamp, error) {
	var st pairStamp
	var first error
	for i, f := range []string{certFile, keyFile} {
		info, err := os.Stat(f)
		if err != nil && first == nil {
			first = err
		}
		st[i] = info
	}
	return st, first
}

// equal reports whether no file changed between two stamps.
func (s pairStamp) equal(o pairStamp) bool {
	for i := range s {
		a, b := s[i], o[i]
		if a == nil || b == nil {
			if a != nil || b != nil {
				return false
			}
			continue
		}
		if !os.SameFile(a, b) || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) {
			return false
		}
	}
	return true
}

// newCertFiles loads the pair in certFile and keyFile, to be served
// through GetCertificate and looked at again every recheck (0: on every
// call). A pair that cannot be loaded now is an error: at start there is
// nothing else to serve.
func newCertFiles(certFile, keyFile string, recheck time.Duration, now func() time.Time, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, recheck: recheck, now: now, log: log}
	// Stat first: a file replaced between the stat and the load is only
	// loaded once more at the next look, never missed.
	st, err := stampPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("vehicle.cert_file: %w", err)
	}
	p, err := c.load()
	if err != nil {
		return nil, fmt.Errorf("vehicle.cert_file: %w", err)
	}
	c.seen = st
	c.served.Store(p)
	c.setDue(now())
	log.Info("vehicle listener certificate", "file", certFile,
		"subject", p.cert.Leaf.Subject.String(), "not_after", p.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return c, nil
}

// GetCertificate is the listener's tls.Config.GetCertificate.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.refresh()
	return c.served.Load().cert, nil
}

// CA returns the PEM of the CA chain that validates the served
// certificate, for the setup page to put into cars' configs; it follows
// the certificate when the files change.
func (c *certFiles) CA() []byte {
	c.refresh()
	return c.served.Load().ca
}

func (c *certFiles) setDue(now time.Time) {
	due := now.Add(c.recheck)
	c.due.Store(&due)
}

// refresh looks at the files when recheck has passed, and loads them when
// they changed.
func (c *certFiles) refresh() {
	now := c.now()
	if now.Before(*c.due.Load()) {
		return
	}
	// TryLock: while one handshake reads the files, the others go on
	// with the pair there is.
	if !c.looking.TryLock() {
		return
	}
	defer c.looking.Unlock()
	if now.Before(*c.due.Load()) {
		return // another caller has just looked
	}
	c.setDue(now)

	st, err := stampPair(c.certFile, c.keyFile)
	if st.equal(c.seen) {
		return
	}
	c.seen = st // a change is reported once, whatever comes of it
	if err == nil {
		var p *servedPair
		if p, err = c.load(); err == nil {
			c.use(p)
			return
		}
	}
	c.log.Warn("vehicle.cert_file or vehicle.key_file changed but cannot be loaded; still serving the previous certificate until they change again",
		"cert_file", c.certFile, "key_file", c.keyFile, "err", err)
}

// use serves p from now on, unless it is the pair already served (the
// files were touched, or rewritten with the same content).
func (c *certFiles) use(p *servedPair) {
	old := c.served.Load()
	if slices.EqualFunc(old.cert.Certificate, p.cert.Certificate, bytes.Equal) {
		return
	}
	c.served.Store(p)
	leaf := p.cert.Leaf
	c.log.Info("loaded the renewed vehicle listener certificate", "file", c.certFile,
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	if !bytes.Equal(old.ca, p.ca) && p.ca != nil {
		c.log.Info("the CA chain for cars changed; the setup page pushes the configs again")
	}
}

// load reads the pair and works out its CA chain. A chain whose CA
// cannot be worked out is still served, as at start: a car may trust it
// in ways this computer does not know; only the setup page has nothing
// to push until it can.
func (c *certFiles) load() (*servedPair, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil { // only with GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	p := &servedPair{cert: &cert}
	if p.ca, err = chainCA(cert); err != nil {
		c.log.Warn("cannot work out the CA of vehicle.cert_file; the setup page cannot push a config until it can",
			"file", c.certFile, "err", err)
	}
	return p, nil
}
