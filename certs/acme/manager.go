package acme

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	xacme "golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ALPNProto is the TLS protocol name of the TLS-ALPN-01 challenge: the
// listener must offer it (Configure adds it).
const ALPNProto = xacme.ALPNProto

// Manager obtains, renews and serves the listener's certificate, and
// knows the "ca" for the cars. Its methods are safe for concurrent use.
type Manager struct {
	hosts      []string
	ac         *autocert.Manager
	cache      autocert.DirCache
	roots      *x509.CertPool
	httpClient *http.Client
	log        *slog.Logger
	now        func() time.Time

	// Run's pacing: how often a held certificate is looked at again
	// (catching renewals), and the back-off after a failure.
	refreshEvery, retryMin, retryMax time.Duration

	ready     chan struct{}
	readyOnce sync.Once

	mu     sync.Mutex
	served map[servedKey]*servedChain
	ca     []byte
}

// servedKey names one certificate autocert keeps: per host and key type
// (it serves RSA only to clients that cannot take ECDSA).
type servedKey struct {
	host string
	rsa  bool
}

// servedChain is the last chain seen for a servedKey.
type servedChain struct {
	raw  []byte            // leaf DER
	leaf *x509.Certificate // autocert's parsed leaf, for a cheap identity check
	ca   []byte            // ServedCA of the chain; nil if it could not be computed
}

// Option changes how a Manager is built.
type Option func(*Manager)

// WithHTTPClient sets the client that talks to the ACME server (tests
// trust a test server's certificate this way).
func WithHTTPClient(c *http.Client) Option { return func(m *Manager) { m.httpClient = c } }

// WithRoots sets the roots that computing the cars' "ca" trusts, instead of
// the system's plus Config.RootCAFile.
func WithRoots(p *x509.CertPool) Option { return func(m *Manager) { m.roots = p } }

// New returns a Manager for cfg. cfg.Hostnames and cfg.CacheDir must be
// set (the command fills their defaults). New talks to no server; it reads
// certificates already in the cache so that CA is known at once after a
// restart. log receives what the manager has to say; nil discards it.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Hostnames) == 0 {
		return nil, fmt.Errorf("hostnames: %w", ErrNoHostname)
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("cache_dir: must be set")
	}
	m := &Manager{
		log:          log,
		now:          time.Now,
		refreshEvery: time.Hour,
		retryMin:     time.Minute,
		retryMax:     time.Hour,
		ready:        make(chan struct{}),
		served:       make(map[servedKey]*servedChain),
	}
	for _, o := range opts {
		o(m)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for _, h := range cfg.Hostnames {
		if err := ValidateHostname(h); err != nil {
			return nil, fmt.Errorf("hostnames: %w", err)
		}
		h = normalizeHost(h)
		if !slices.Contains(m.hosts, h) {
			m.hosts = append(m.hosts, h)
		}
	}
	if m.roots == nil {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if cfg.RootCAFile != "" {
			data, err := os.ReadFile(cfg.RootCAFile)
			if err != nil {
				return nil, fmt.Errorf("root_ca_file: %w", err)
			}
			if !roots.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("root_ca_file: %s holds no PEM certificate", cfg.RootCAFile)
			}
		}
		m.roots = roots
	}
	if m.httpClient == nil {
		m.httpClient = &http.Client{Timeout: time.Minute}
		if cfg.RootCAFile != "" {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: m.roots, MinVersion: tls.VersionTLS12}
			m.httpClient.Transport = t
		}
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("cache_dir: %w", err)
	}
	if err := os.Chmod(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("cache_dir: %w", err)
	}
	m.cache = autocert.DirCache(cfg.CacheDir)
	m.ac = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      m.cache,
		HostPolicy: autocert.HostWhitelist(m.hosts...),
		Email:      cfg.Email,
		Client: &xacme.Client{
			DirectoryURL: cfg.Directory(),
			HTTPClient:   m.httpClient,
			UserAgent:    "fleet2mqtt",
		},
	}
	m.primeFromCache()
	return m, nil
}

// normalizeHost lowercases h and drops a trailing dot.
func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// Hosts returns the names the certificate covers.
func (m *Manager) Hosts() []string { return slices.Clone(m.hosts) }

// Configure makes tc serve the managed certificate: it sets GetCertificate
// (dropping static Certificates) and offers the acme-tls/1 protocol that
// the TLS-ALPN-01 challenge needs.
func (m *Manager) Configure(tc *tls.Config) {
	tc.Certificates = nil
	tc.GetCertificate = m.GetCertificate
	if !slices.Contains(tc.NextProtos, ALPNProto) {
		tc.NextProtos = append(tc.NextProtos, ALPNProto)
	}
}

// GetCertificate is the tls.Config hook: it answers challenges, serves the
// certificate for the requested name (obtaining it first if need be) and
// notes the chain served, so that CA follows renewals. A client that sends
// no name (one connecting by IP address) gets the first host's certificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" && !isChallenge(hello) {
		named := *hello
		named.ServerName = m.hosts[0]
		hello = &named
	}
	cert, err := m.ac.GetCertificate(hello)
	if err != nil || isChallenge(hello) {
		return cert, err
	}
	m.observe(hello.ServerName, cert)
	return cert, nil
}

// isChallenge reports whether hello comes from an ACME server validating a
// TLS-ALPN-01 challenge: it offers acme-tls/1 and nothing else.
func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProto
}

// observe records the chain served for name. Almost always it is the one
// seen last time, recognised by its parsed leaf; a new chain (the first
// one, or a renewal) gets its "ca" computed.
func (m *Manager) observe(name string, cert *tls.Certificate) {
	if cert == nil || len(cert.Certificate) == 0 {
		return
	}
	_, isRSA := cert.PrivateKey.(*rsa.PrivateKey)
	key := servedKey{host: normalizeHost(name), rsa: isRSA}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.served[key]; s != nil {
		if cert.Leaf != nil && s.leaf == cert.Leaf {
			return
		}
		if bytes.Equal(s.raw, cert.Certificate[0]) {
			s.leaf = cert.Leaf
			return
		}
	}
	m.setServedLocked(key, cert.Certificate, cert.Leaf)
}

// setServedLocked stores a new chain for key and recomputes CA.
func (m *Manager) setServedLocked(key servedKey, chain [][]byte, leaf *x509.Certificate) {
	ca, err := ServedCA(chain, m.roots)
	if err != nil {
		m.log.Warn("cannot work out the CA chain of the ACME certificate; configs cannot be pushed to cars until it is known (private ACME server? set vehicle.acme.root_ca_file)",
			"host", key.host, "err", err)
	}
	m.served[key] = &servedChain{raw: chain[0], leaf: leaf, ca: ca}
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(chain[0])
	}
	if leaf != nil {
		m.log.Info("vehicle listener certificate", "host", key.host, "issuer", leaf.Issuer.CommonName,
			"expires", leaf.NotAfter.UTC().Format(time.DateOnly))
	}

	var parts [][]byte
	for _, h := range m.hosts {
		for _, r := range []bool{false, true} {
			if s := m.served[servedKey{host: h, rsa: r}]; s != nil && s.ca != nil {
				parts = append(parts, s.ca)
			}
		}
	}
	merged := mergePEM(parts...)
	if !bytes.Equal(merged, m.ca) {
		if m.ca != nil {
			m.log.Info("the CA chain for cars changed; the setup page pushes the configs again")
		}
		m.ca = merged
	}
	if len(m.ca) > 0 {
		m.readyOnce.Do(func() { close(m.ready) })
	}
}

// primeFromCache reads the certificates autocert cached in earlier runs.
func (m *Manager) primeFromCache() {
	ctx := context.Background()
	now := m.now()
	for _, h := range m.hosts {
		for _, r := range []bool{false, true} {
			name := h
			if r {
				name += "+rsa"
			}
			data, err := m.cache.Get(ctx, name)
			if err != nil {
				continue
			}
			certs, err := ParsePEMCertificates(data)
			if err != nil || now.After(certs[0].NotAfter) {
				continue
			}
			chain := make([][]byte, len(certs))
			for i, c := range certs {
				chain[i] = c.Raw
			}
			m.mu.Lock()
			m.setServedLocked(servedKey{host: h, rsa: r}, chain, nil)
			m.mu.Unlock()
		}
	}
}

// CA returns the PEM of the authorities that validate the certificates
// served (see ServedCA; for several names or key types, their union), or
// nil while no certificate is known.
func (m *Manager) CA() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.ca)
}

// CachedCA returns the chain a Manager for cfg would give cars (see CA)
// from the certificate in its cache, without obtaining or renewing
// anything; nil when the cache directory does not exist yet. opts are
// New's: WithRoots matters, the others are not used. It logs nothing.
func CachedCA(cfg Config, opts ...Option) ([]byte, error) {
	if _, err := os.Stat(cfg.CacheDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	m, err := New(cfg, nil, opts...)
	if err != nil {
		return nil, err
	}
	return m.CA(), nil
}

// Ready is closed once a certificate is held and CA known.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Obtain makes sure a certificate for host is held, asking the ACME server
// for one if needed: the listener must already accept connections on the
// public port, where the server validates the challenge. It returns when
// the certificate is there, when obtaining it failed, or when ctx ends (the
// attempt then goes on in the background; autocert bounds it to minutes).
func (m *Manager) Obtain(ctx context.Context, host string) error {
	hello := &tls.ClientHelloInfo{
		ServerName: host,
		// A modern client: autocert then serves (and obtains) the
		// ECDSA certificate, as it does for cars.
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256},
		SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256},
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		SupportedProtos:   []string{"http/1.1"},
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.GetCertificate(hello)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("obtain certificate for %s: %w", host, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run obtains the certificates once the listener is up, retrying with
// back-off after failures (each one is logged with what to check), and
// looks at them again every hour so that CA follows renewals even while no
// car connects. Renewal itself is autocert's. Run returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	wait := m.retryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		var failed error
		for _, h := range m.hosts {
			if err := m.Obtain(ctx, h); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				failed = err
				m.log.Warn("no certificate from the ACME server yet", "host", h, "retry_in", wait, "err", err,
					"hint", "check that the name resolves to this machine and that its port 443 reaches the vehicle listener directly (no TLS-terminating proxy)")
			}
		}
		if failed != nil {
			timer.Reset(wait)
			wait = min(2*wait, m.retryMax)
			continue
		}
		wait = m.retryMin
		timer.Reset(m.refreshEvery)
	}
}
