package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Severity grades a Finding.
type Severity int

// Severities, from good to bad.
const (
	// Pass: nothing a car would object to.
	Pass Severity = iota
	// Warn: works today, but something deserves attention.
	Warn
	// Fail: a car would not connect (or not send its certificate).
	Fail
)

func (s Severity) String() string {
	switch s {
	case Pass:
		return "ok"
	case Warn:
		return "warning"
	case Fail:
		return "problem"
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// Names of the checks, as Finding.Check carries them.
const (
	CheckConnect    = "connect"
	CheckName       = "name"
	CheckChain      = "chain"
	CheckCA         = "ca"
	CheckExpiry     = "expiry"
	CheckClientCert = "client-certificate"
)

// Finding is one answer of Check, in plain words.
type Finding struct {
	// Check is which question this answers (CheckName, CheckChain, …).
	Check string
	// Severity says whether a car would mind.
	Severity Severity
	// Message says what was found and, for a problem, what to do.
	Message string
}

// DefaultExpiryWarning is how close to its expiry a certificate is
// reported (autocert renews 30 days ahead, so an ACME certificate never
// comes this close unless renewal keeps failing).
const DefaultExpiryWarning = 21 * 24 * time.Hour

// maxAcceptableCAs is the longest list of acceptable client authorities
// that is not reported: cars may send no certificate when a server (or a
// proxy in front of it) asks with a long list.
const maxAcceptableCAs = 20

// CheckOptions say what to check and against what.
type CheckOptions struct {
	// Host is the name cars connect to: sent as SNI and looked for in the
	// certificate. Required.
	Host string
	// Port is the port cars connect to; 443 when zero.
	Port int
	// Addr is where to connect instead of Host:Port, e.g. to check this
	// machine's listener before DNS points at it.
	Addr string
	// CA is the PEM that cars receive as "ca". Without it the chain is
	// checked against Roots only, and the report says so.
	CA []byte
	// Roots are the roots this machine trusts; the system's when nil.
	Roots *x509.CertPool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ExpiryWarning is how close to expiry is reported as a warning;
	// DefaultExpiryWarning when zero.
	ExpiryWarning time.Duration
	// Timeout bounds the connection and handshake; 15 s when zero.
	Timeout time.Duration
}

// Report is what Check found.
type Report struct {
	// Host and Addr are what was checked and where.
	Host, Addr string
	// Findings, in the order: connect, name, chain, ca, expiry,
	// client-certificate (the ones after connect only when the server
	// sent a certificate).
	Findings []Finding
	// Chain is the chain the server sent, leaf first.
	Chain []*x509.Certificate
	// ClientCertRequested reports whether the server asked for a client
	// certificate, and AcceptableCAs how many authorities it named.
	ClientCertRequested bool
	AcceptableCAs       int
	// Version and Protocol are the negotiated TLS version and ALPN
	// protocol, when the handshake completed.
	Version  uint16
	Protocol string
}

// Worst returns the most severe finding's severity.
func (r *Report) Worst() Severity {
	w := Pass
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// OK reports whether nothing a car would object to was found.
func (r *Report) OK() bool { return r.Worst() < Fail }

// Find returns the finding of check, if any.
func (r *Report) Find(check string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Check == check {
			return f, true
		}
	}
	return Finding{}, false
}

func (r *Report) add(check string, s Severity, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Check: check, Severity: s, Message: fmt.Sprintf(format, args...)})
}

// WriteText writes the report for a person: every finding with its
// severity, then whether a car would connect. caSource, when not empty,
// says where the ca the chain was checked against came from.
func (r *Report) WriteText(w io.Writer, caSource string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Checking %s as a car would (connecting to %s)", r.Host, r.Addr)
	if caSource != "" {
		fmt.Fprintf(&b, ", with the ca from %s", caSource)
	}
	b.WriteString(":\n\n")
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  [%s] %s\n", f.Severity, f.Message)
	}
	switch r.Worst() {
	case Pass:
		b.WriteString("\nA car would connect.\n")
	case Warn:
		b.WriteString("\nA car would connect, but see the warnings.\n")
	default:
		b.WriteString("\nA car would not connect: fix the problems above.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Check connects to opts.Host as a car would (TLS with the name as SNI,
// offering a client certificate only if asked, which it then withholds)
// and reports what a car would object to. Its error is for unusable
// options only; everything about the server is in the report.
func Check(ctx context.Context, opts CheckOptions) (*Report, error) {
	if opts.Host == "" {
		return nil, ErrNoHostname
	}
	if opts.Port == 0 {
		opts.Port = 443
	}
	if opts.Port < 1 || opts.Port > 65535 {
		return nil, fmt.Errorf("port %d: want 1 to 65535", opts.Port)
	}
	var caPool *x509.CertPool
	var caCerts []*x509.Certificate
	if len(opts.CA) > 0 {
		var err error
		if caCerts, err = ParsePEMCertificates(opts.CA); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		caPool = x509.NewCertPool()
		for _, c := range caCerts {
			caPool.AddCert(c)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.ExpiryWarning == 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	addr := opts.Addr
	if addr == "" {
		addr = net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	}
	r := &Report{Host: opts.Host, Addr: addr}

	var raw [][]byte
	tc := &tls.Config{
		ServerName: opts.Host,
		// The chain is verified below, against the car's ca, so that every
		// problem can be named instead of failing the handshake on the first.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(certs [][]byte, _ [][]*x509.Certificate) error {
			raw = slices.Clone(certs)
			return nil
		},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.ClientCertRequested = true
			r.AcceptableCAs = len(cri.AcceptableCAs)
			return &tls.Certificate{}, nil
		},
		NextProtos: []string{"h2", "http/1.1"},
		MinVersion: tls.VersionTLS12,
	}
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	d := tls.Dialer{Config: tc}
	conn, dialErr := d.DialContext(dctx, "tcp", addr)
	switch {
	case dialErr != nil && r.ClientCertRequested && len(raw) > 0:
		// TLS 1.2 servers that require a client certificate end the
		// handshake when none comes: a car has one.
		r.add(CheckConnect, Warn, "The server at %s asked for a client certificate and ended the handshake without one (%v): expected when it requires car certificates, which this check does not have.", addr, dialErr)
	case dialErr != nil:
		r.add(CheckConnect, Fail, "%s", explainDial(addr, opts.Timeout, dialErr))
	default:
		st := conn.(*tls.Conn).ConnectionState()
		conn.Close()
		r.Version, r.Protocol = st.Version, st.NegotiatedProtocol
		r.add(CheckConnect, Pass, "Connected to %s and completed the TLS handshake (%s).", addr, tls.VersionName(st.Version))
	}
	if len(raw) == 0 {
		return r, nil
	}
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			r.add(CheckChain, Fail, "Certificate %d the server sent cannot be read: %v.", i+1, err)
			return r, nil
		}
		r.Chain = append(r.Chain, c)
	}

	checkName(r, opts.Host)
	checkChain(r, opts.Roots, caCerts)
	checkCA(r, opts.Roots, caPool, now())
	checkExpiry(r, now(), opts.ExpiryWarning)
	if dialErr == nil || r.ClientCertRequested {
		checkClientCert(r, opts.Port)
	}
	return r, nil
}

// explainDial turns a failed connection into advice.
func explainDial(addr string, timeout time.Duration, err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fmt.Sprintf("The name %s does not resolve: create its DNS record (A or AAAA) pointing at this machine's public address.", dnsErr.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("Nothing accepts connections at %s: is fleet2mqtt running, and does the router forward this port to it?", addr)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("No answer from %s within %v: a firewall drops the connection, or the port is not forwarded.", addr, timeout)
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return fmt.Sprintf("The server at %s refused the TLS handshake (%v): with ACME, this happens while no certificate could be obtained yet (see fleet2mqtt's log).", addr, err)
	}
	return fmt.Sprintf("The TLS connection to %s failed: %v.", addr, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// checkName looks for the host among the leaf's SANs; cars, like every
// current TLS client, ignore the Common Name.
func checkName(r *Report, host string) {
	leaf := r.Chain[0]
	if err := leaf.VerifyHostname(host); err == nil {
		r.add(CheckName, Pass, "The certificate names %s as a Subject Alternative Name.", host)
		return
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 && strings.EqualFold(leaf.Subject.CommonName, host) {
		r.add(CheckName, Fail, "The certificate names %s only in its Common Name, which cars ignore (their error: \"certificate relies on legacy Common Name field, use SANs instead\"). Get a certificate that lists %s as a Subject Alternative Name; ACME (vehicle.acme) and every public CA do.", host, host)
		return
	}
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = append(names, "no name at all")
	}
	r.add(CheckName, Fail, "The certificate is for %s, not %s: get one that covers %s.", strings.Join(names, ", "), host, host)
}

// checkChain checks that the server sends its intermediates: the chain it
// sends must reach a root without help from the ca (which may hold the
// intermediates too, but a renewal can change them).
func checkChain(r *Report, roots *x509.CertPool, caCerts []*x509.Certificate) {
	chain := r.Chain
	leaf := chain[0]
	anchors := roots
	if anchors == nil {
		var err error
		if anchors, err = x509.SystemCertPool(); err != nil || anchors == nil {
			anchors = x509.NewCertPool()
		}
	} else {
		anchors = anchors.Clone()
	}
	for _, c := range caCerts {
		if isSelfSigned(c) {
			anchors.AddCert(c)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	ordered := true
	for i := 0; i+1 < len(chain); i++ {
		if chain[i].CheckSignatureFrom(chain[i+1]) != nil {
			ordered = false
		}
	}
	if isSelfSigned(leaf) {
		r.add(CheckChain, Warn, "The certificate is self-signed: cars accept it only because the ca holds this very certificate, and it must be pushed again whenever it changes. A certificate from ACME (vehicle.acme) avoids this.")
		return
	}
	verified, err := leaf.Verify(x509.VerifyOptions{
		Intermediates: inter,
		Roots:         anchors,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		// The structure alone: expiry is checkExpiry's to report.
		CurrentTime: validMoment(chain),
	})
	if err != nil {
		top := leaf
		for {
			next := signerIn(top, chain)
			if next == nil || next == top {
				break
			}
			top = next
		}
		if top == leaf {
			r.add(CheckChain, Fail, "The server sends only its own certificate, not the intermediate %q that issued it: cars cannot build the chain. Serve the full chain (the fullchain.pem file, leaf first, then the intermediates).", leaf.Issuer.CommonName)
		} else {
			// The top may be issued by a root the ca does not hold (the ca
			// check says so) or by an intermediate the server forgot.
			r.add(CheckChain, Warn, "The server sends %d certificates, up to %q, issued by %q, which is neither sent nor a root this machine or the ca trusts: if %q is an intermediate, serve it too.", len(chain), top.Subject.CommonName, top.Issuer.CommonName, top.Issuer.CommonName)
		}
		return
	}
	root := verified[0][len(verified[0])-1]
	msg := fmt.Sprintf("The server sends %d certificate(s), which lead to the root %q.", len(chain), root.Subject.CommonName)
	if !ordered {
		r.add(CheckChain, Warn, "%s But they are out of order or include unrelated certificates: send the leaf first, then each issuer in turn.", msg)
		return
	}
	r.add(CheckChain, Pass, "%s", msg)
}

// validMoment returns a time at which every certificate of chain is
// valid, or the zero time (meaning now) if there is none.
func validMoment(chain []*x509.Certificate) time.Time {
	from, until := chain[0].NotBefore, chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotBefore.After(from) {
			from = c.NotBefore
		}
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	if from.After(until) {
		return time.Time{}
	}
	return from.Add(time.Second)
}

// signerIn returns the certificate of chain that signed c, if any.
func signerIn(c *x509.Certificate, chain []*x509.Certificate) *x509.Certificate {
	for _, p := range chain {
		if p != c && c.CheckSignatureFrom(p) == nil {
			return p
		}
	}
	return nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// checkCA verifies the served chain against the ca, as the car does.
func checkCA(r *Report, roots, caPool *x509.CertPool, now time.Time) {
	chain := r.Chain
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if caPool == nil {
		_, err := chain[0].Verify(x509.VerifyOptions{Intermediates: inter, Roots: roots, CurrentTime: now})
		if err != nil {
			r.add(CheckCA, Fail, "No ca to check against, and this machine does not trust the chain either (%s). Cars need a ca that validates it; fleet2mqtt computes it from the chain it serves.", explainVerify(err))
			return
		}
		r.add(CheckCA, Warn, "No ca to check against: the chain is publicly trusted, so the ca fleet2mqtt computes from it (intermediates and root) will validate it.")
		return
	}
	opts := x509.VerifyOptions{Intermediates: inter, Roots: caPool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := chain[0].Verify(opts); err != nil {
		r.add(CheckCA, Fail, "The ca that cars receive does not validate the served chain (%s): a car would refuse to connect. Push the ca computed from the chain actually served (the setup page does this), or fix the served chain.", explainVerify(err))
		return
	}
	// Tesla's check_server_cert.sh verifies the leaf against the ca alone,
	// without the intermediates the server sends.
	opts.Intermediates = nil
	if _, err := chain[0].Verify(opts); err != nil && len(chain) > 1 {
		r.add(CheckCA, Warn, "The ca validates the served chain, but only with the intermediates the server sends: Tesla's check_server_cert.sh, which ignores them, would call it invalid. Include the intermediates in the ca.")
		return
	}
	r.add(CheckCA, Pass, "The ca that cars receive validates the served chain.")
}

// explainVerify says in words why x509 verification failed.
func explainVerify(err error) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) && ua.Cert != nil {
		return fmt.Sprintf("nothing in it vouches for %q, issued by %q", ua.Cert.Subject.CommonName, ua.Cert.Issuer.CommonName)
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		switch ci.Reason {
		case x509.Expired:
			return "a certificate of the chain is expired or not yet valid"
		case x509.IncompatibleUsage:
			return "the certificate is not meant for TLS servers (extended key usage)"
		case x509.NotAuthorizedToSign:
			return "a certificate that signs another is not a certificate authority"
		}
	}
	return err.Error()
}

// checkExpiry reports expired, not yet valid and soon expiring
// certificates of the served chain.
func checkExpiry(r *Report, now time.Time, warn time.Duration) {
	leaf := r.Chain[0]
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	for _, c := range r.Chain[1:] {
		if now.After(c.NotAfter) {
			r.add(CheckExpiry, Fail, "The intermediate %q the server sends expired on %s: serve the current chain from your CA.", c.Subject.CommonName, day(c.NotAfter))
			return
		}
	}
	switch left := leaf.NotAfter.Sub(now); {
	case now.Before(leaf.NotBefore):
		r.add(CheckExpiry, Fail, "The certificate is not valid before %s: check this machine's clock, or wait.", day(leaf.NotBefore))
	case left < 0:
		r.add(CheckExpiry, Fail, "The certificate expired on %s (%d days ago): renew it; with ACME (vehicle.acme) renewal is automatic.", day(leaf.NotAfter), int(-left.Hours()/24))
	case left < warn:
		r.add(CheckExpiry, Warn, "The certificate expires on %s, in %d days: renew it now (with ACME, renewal starts 30 days ahead; if it did not, fleet2mqtt's log says why).", day(leaf.NotAfter), int(left.Hours()/24))
	default:
		r.add(CheckExpiry, Pass, "The certificate is valid until %s (%d days).", day(leaf.NotAfter), int(left.Hours()/24))
	}
}

// checkClientCert reports whether the server asked for a client
// certificate: fleet2mqtt always does, so a server that does not is
// something else in front of it, terminating TLS.
func checkClientCert(r *Report, port int) {
	if !r.ClientCertRequested {
		msg := fmt.Sprintf("The server did not ask for a client certificate, so a car would send none: something in front of fleet2mqtt terminates TLS (a reverse proxy, a tunnel, a load balancer in HTTP mode). Forward port %d to fleet2mqtt's vehicle listener as plain TCP (TLS passthrough).", port)
		if r.Protocol == "h2" {
			msg += " It also chose HTTP/2, which fleet2mqtt never offers."
		}
		r.add(CheckClientCert, Fail, "%s", msg)
		return
	}
	if r.AcceptableCAs > maxAcceptableCAs {
		r.add(CheckClientCert, Warn, "The server asks for a client certificate from any of %d authorities: cars may send none when the list is that long. Trust only Tesla's vehicle CAs (vehicle.client_ca_files).", r.AcceptableCAs)
		return
	}
	r.add(CheckClientCert, Pass, "The server asks for a client certificate (from %d authorities), so nothing in front of it terminates TLS.", r.AcceptableCAs)
}
