package setup

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 2: the key pair, served by the vehicle listener at the well-known
// address and checked there from outside, as Tesla will fetch it.

type keyData struct {
	Exists      bool
	PublicPEM   string
	Fingerprint string
	URL         string
	Checked     bool
	PortNote    bool
}

func (f *flow) keyView() *keyData {
	key := f.store.appKey()
	var host string
	d := &keyData{Exists: key != nil, PortNote: f.cfg.Port != 443}
	f.store.read(func(st *state) {
		host = f.host(st)
		d.Checked = key != nil && f.done(st, stepKey)
	})
	d.URL = f.deps.PublicKeyURL(host)
	if key != nil {
		d.PublicPEM = string(key.publicPEM)
		if raw, err := fleetapi.PublicKeyBytes(&key.private.PublicKey); err == nil {
			sum := sha256.Sum256(raw)
			d.Fingerprint = hex.EncodeToString(sum[:8])
		}
	}
	return d
}

// createKey makes the key pair, unless it exists.
func (f *flow) createKey() error {
	created, err := f.store.createKey()
	if err != nil {
		return &stepError{kind: localFault, text: fmt.Sprintf("The key pair could not be made: %v", err), err: err}
	}
	if created {
		f.log.Info("setup: created the application's key pair")
	}
	return nil
}

// checkKey fetches the public key from the public address, as Tesla
// will, and records that it is there.
func (f *flow) checkKey(ctx context.Context) error {
	var host string
	f.store.read(func(st *state) { host = f.host(st) })
	key := f.store.appKey()
	if key == nil {
		return unready(errNoKey)
	}
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	url := f.deps.PublicKeyURL(host)
	if err := f.fetchOwnKey(ctx, url, &key.private.PublicKey); err != nil {
		return &stepError{kind: remoteFault, text: explainKeyFetch(url, host, err), err: err}
	}
	return f.store.update(func(st *state) error {
		st.KeyCheck = &keyCheck{Host: host, PublicKey: key.hex, At: f.timing.Now()}
		return nil
	})
}

// errOtherKey: the public URL serves a key, but not ours.
var errOtherKey = errors.New("another public key is served there")

// keyStatusError is a public URL that answered with an error status.
type keyStatusError struct{ status int }

func (e keyStatusError) Error() string {
	return fmt.Sprintf("answered %d %s", e.status, http.StatusText(e.status))
}

// fetchOwnKey fetches url and checks that it serves pub.
func (f *flow) fetchOwnKey(ctx context.Context, url string, pub *ecdsa.PublicKey) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := f.deps.CheckHTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return keyStatusError{resp.StatusCode}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8192))
	if err != nil {
		return err
	}
	got, err := fleetapi.ParsePublicKeyPEM(data)
	if err != nil {
		return fmt.Errorf("%w: %v", errOtherKey, err)
	}
	if !got.Equal(pub) {
		return errOtherKey
	}
	return nil
}

// explainKeyFetch says why the key could not be fetched from url, and what
// to do.
func explainKeyFetch(url, host string, err error) string {
	var (
		dnsErr     *net.DNSError
		statusErr  keyStatusError
		certErr    *tls.CertificateVerificationError
		hostErr    x509.HostnameError
		unknownCA  x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		netErr     net.Error
	)
	base := "fleet2mqtt could not fetch its public key from " + url + ", where Tesla and the Tesla app will fetch it. "
	switch {
	case errors.As(err, &dnsErr):
		return base + "The name " + host + " does not resolve. Create a DNS record (A/AAAA or CNAME) for it that points to this machine's public address."
	case errors.As(err, &statusErr):
		return base + "Something answered, but with " + statusErr.Error() + ": port 443 of " + host + " does not reach fleet2mqtt's vehicle listener. Forward port 443 to it directly (a reverse proxy must pass TLS through untouched)."
	case errors.Is(err, errOtherKey):
		return base + "The address serves a different key (" + err.Error() + "). Something other than this fleet2mqtt answers on port 443 of " + host + "."
	case errors.As(err, &hostErr):
		return base + "The certificate served there is not valid for " + host + " (" + hostErr.Error() + "). Use a certificate whose Subject Alternative Names include " + host + "."
	case errors.As(err, &unknownCA), errors.As(err, &certErr), errors.As(err, &invalidErr):
		return base + "The certificate served there is not trusted (" + err.Error() + "). Use a certificate from a public authority (such as Let's Encrypt) and serve its full chain."
	case errors.Is(err, syscall.ECONNREFUSED):
		return base + "The connection was refused: nothing listens on port 443 of " + host + ". Forward port 443 of your router to fleet2mqtt's vehicle listener."
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return base + "No answer in time: a firewall or missing port forwarding keeps port 443 of " + host + " closed."
	}
	return base + "The error was: " + err.Error() + ". Check that port 443 of " + host + " reaches fleet2mqtt's vehicle listener."
}

// keyStep serves step 2.
type keyStep struct{ *site }

func (s keyStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /key", s.page)
	mux.HandleFunc("POST /key", s.submit)
}

func (s keyStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepKey) {
		return
	}
	s.render(rw, r, http.StatusOK, "key", &page{Step: stepKey, Data: s.flow.keyView()})
}

// submit creates the key pair (action=create) or checks it from outside.
func (s keyStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepKey) {
		return
	}
	if r.PostFormValue("action") == "create" {
		if err := s.flow.createKey(); err != nil {
			s.render(rw, r, statusOf(err), "key", &page{Step: stepKey, Problem: problemOf(err), Data: s.flow.keyView()})
			return
		}
		redirect(rw, steps[stepKey].path)
		return
	}
	if err := s.flow.checkKey(r.Context()); err != nil {
		s.render(rw, r, statusOf(err), "key", &page{Step: stepKey, Problem: problemOf(err), Data: s.flow.keyView()})
		return
	}
	redirect(rw, steps[stepRegister].path)
}
