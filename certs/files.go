package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// DefaultRecheck is how long a listener goes on serving a certificate
// file before it looks at the files again. Renewals happen weeks before
// expiry, so the delay costs nothing, while a fleet of cars reconnecting
// at once costs two stat calls per interval, not per car.
const DefaultRecheck = 30 * time.Second

// FilesOptions are what Files says in its logs and errors, and how often
// it looks at the files.
type FilesOptions struct {
	// Listener names the listener in logs, such as "vehicle listener".
	Listener string
	// CertKey and KeyKey are the configuration keys of the two files, as
	// the person who set them knows them ("vehicle.cert_file"); errors
	// are relative to the section (see Config.Validate), logs use these.
	CertKey, KeyKey string
	// Recheck is how long a look at the files lasts (0: a look on every
	// handshake). NewFiles's callers usually want DefaultRecheck.
	Recheck time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Files serves the key pair in a certificate file and a key file and
// follows its renewals (certbot, a reverse proxy's tooling, a mounted
// secret): when a handshake or the setup page asks for the certificate
// and Recheck has passed since the last look, it stats both files and
// loads them again if either changed: another file (a replaced file or
// symbolic link), another size or another modification time. A pair that
// cannot be loaded (half written, key and certificate out of step) is
// logged once per change and the previous pair is served until the files
// change again, so a renewal caught mid-way never takes the listener down.
type Files struct {
	certFile, keyFile string
	opts              FilesOptions
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

var _ Source = (*Files)(nil)

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

// NewFiles loads the pair in certFile and keyFile, to be served through
// GetCertificate. A pair that cannot be loaded now is an error naming
// "cert_file" (relative, see package configerr): at start there is
// nothing else to serve. log receives what Files has to say; nil discards
// it.
func NewFiles(certFile, keyFile string, log *slog.Logger, opts FilesOptions) (*Files, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Files{certFile: certFile, keyFile: keyFile, opts: opts, log: log}
	// Stat first: a file replaced between the stat and the load is only
	// loaded once more at the next look, never missed.
	st, err := stampPair(certFile, keyFile)
	if err != nil {
		return nil, configerr.Errorf("cert_file", "%w", err)
	}
	p, err := c.load()
	if err != nil {
		return nil, configerr.Errorf("cert_file", "%w", err)
	}
	c.seen = st
	c.served.Store(p)
	c.setDue(opts.Now())
	log.Info(opts.Listener+" certificate", "file", certFile,
		"subject", p.cert.Leaf.Subject.String(), "not_after", p.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return c, nil
}

// GetCertificate is the listener's tls.Config.GetCertificate.
func (c *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.refresh()
	return c.served.Load().cert, nil
}

// Configure makes tc serve the files' certificate.
func (c *Files) Configure(tc *tls.Config) {
	tc.Certificates = nil
	tc.GetCertificate = c.GetCertificate
}

// CA returns the PEM of the CA chain that validates the served
// certificate, for the setup page to put into cars' configs; it follows
// the certificate when the files change.
func (c *Files) CA() []byte {
	c.refresh()
	return c.served.Load().ca
}

// Run has nothing to do in the background: the files are looked at when
// a handshake asks for them. It returns when ctx ends.
func (c *Files) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (c *Files) setDue(now time.Time) {
	due := now.Add(c.opts.Recheck)
	c.due.Store(&due)
}

// refresh looks at the files when Recheck has passed, and loads them when
// they changed.
func (c *Files) refresh() {
	now := c.opts.Now()
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
	c.log.Warn(c.opts.CertKey+" or "+c.opts.KeyKey+" changed but cannot be loaded; still serving the previous certificate until they change again",
		"cert_file", c.certFile, "key_file", c.keyFile, "err", err)
}

// use serves p from now on, unless it is the pair already served (the
// files were touched, or rewritten with the same content).
func (c *Files) use(p *servedPair) {
	old := c.served.Load()
	if slices.EqualFunc(old.cert.Certificate, p.cert.Certificate, bytes.Equal) {
		return
	}
	c.served.Store(p)
	leaf := p.cert.Leaf
	c.log.Info("loaded the renewed "+c.opts.Listener+" certificate", "file", c.certFile,
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	if !bytes.Equal(old.ca, p.ca) && p.ca != nil {
		c.log.Info("the CA chain for cars changed; the setup page pushes the configs again")
	}
}

// load reads the pair and works out its CA chain. A chain whose CA
// cannot be worked out is still served, as at start: a client may trust
// it in ways this computer does not know; only the setup page has nothing
// to push until it can.
func (c *Files) load() (*servedPair, error) {
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
	if p.ca, err = chainCA(cert, c.opts.CertKey); err != nil {
		c.log.Warn("cannot work out the CA of "+c.opts.CertKey+"; the setup page cannot push a config until it can",
			"file", c.certFile, "err", err)
	}
	return p, nil
}

// chainCA returns the PEM of the authorities that validate cert: its
// intermediates and the root that the system trusts them through (a root
// stays valid across renewals, which is what a car's config wants), or, for
// a chain that ends in a self-signed certificate, the certificates after
// the leaf. See acme.ServedCA. certKey names the file in the error.
func chainCA(cert tls.Certificate, certKey string) ([]byte, error) {
	ca, err := acme.ServedCA(cert.Certificate, nil)
	if errors.Is(err, acme.ErrUntrustedChain) {
		return nil, fmt.Errorf(untrustedChain, certKey)
	}
	return ca, err
}

// untrustedChain says, with the key of the certificate file, that its
// chain leads nowhere the system trusts.
const untrustedChain = "the chain in %s does not lead to a trusted root: include the intermediates, and the root if it is private"

// FileCA returns the PEM of the CA chain that validates the pair in
// certFile and keyFile, as Files would serve it, without serving it (for
// checking a configuration). Errors name "cert_file", relative to the
// section (see package configerr).
func FileCA(certFile, keyFile string) ([]byte, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, configerr.Errorf("cert_file", "%w", err)
	}
	ca, err := acme.ServedCA(cert.Certificate, nil)
	if errors.Is(err, acme.ErrUntrustedChain) {
		return nil, configerr.Errorf("cert_file", untrustedChain, configerr.Key("cert_file"))
	}
	if err != nil {
		return nil, configerr.Errorf("cert_file", "%w", err)
	}
	return ca, nil
}
