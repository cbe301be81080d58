// Package certs is where fleet2mqtt's TLS listeners get their
// certificates, and its development PKI.
//
// A listener serves a [Source]: [Files] (a certificate and key in files,
// loaded again when they are renewed, the previous pair kept while a
// renewal is half written), *acme.Manager (obtained and renewed by ACME),
// or [Static] (the development PKI's certificate). A source also gives the
// CA chain that validates what it serves: what a car's telemetry config
// carries as "ca".
//
// The development PKI is the certificates behind `fleet2mqtt dev-certs`,
// the self-signed default start ([EnsureDevDir]), the simulator and the
// TLS tests.
//
// Two authorities are kept apart on purpose. The server authority signs the
// certificate the vehicle listener serves; its certificate is what a car (or
// the simulator) is told to trust. The vehicle authority signs client
// certificates for simulated cars; the listener is told to trust it. The
// vehicle authority must carry the common name [VehicleAuthorityName],
// because the server derives a car's identity from the issuer name of its
// client certificate (see ingest.IdentityFromCertificate), exactly as Tesla's
// reference server does.
//
// Every key is ECDSA P-256. Issued chains hold the leaf only: an authority's
// certificate is a root, distributed separately (Authority.CertPEM,
// Authority.Pool) and never sent in the handshake.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

const (
	// VehicleAuthorityName is the common name of the authority that signs
	// vehicle client certificates. It is one of the issuer names Tesla's
	// protocol accepts for vehicle_device identities; the reference server's
	// own test CA used it too.
	VehicleAuthorityName = "Tesla Motors Products CA"

	// ServerAuthorityName is the common name of the development authority
	// that signs server certificates.
	ServerAuthorityName = "fleet2mqtt development CA"

	// organization marks every subject we create, so a development
	// certificate is never mistaken for one Tesla issued.
	organization = "fleet2mqtt development"

	authorityValidity = 10 * 365 * 24 * time.Hour
	// leafValidity stays within the 825 days some TLS clients accept for
	// server certificates.
	leafValidity = 825 * 24 * time.Hour
	// backdate tolerates clocks that run slightly behind ours.
	backdate = time.Hour
)

var (
	// ErrNotAuthority is returned when a certificate loaded as an authority
	// is not a CA certificate.
	ErrNotAuthority = errors.New("certificate is not a CA")
	// ErrEmptyName is returned for an empty server name or VIN.
	ErrEmptyName = errors.New("empty name")
	// ErrKeyType is returned for a private key that cannot sign.
	ErrKeyType = errors.New("private key cannot sign")
)

// defaultServerNames are used when no names are given for a server
// certificate: the loopback names a local development start is reached by.
var defaultServerNames = []string{"localhost", "127.0.0.1", "::1"}

// Authority is a certificate authority able to issue leaf certificates.
type Authority struct {
	// Cert is the authority's self-signed certificate.
	Cert *x509.Certificate
	// Key is the authority's private key.
	Key crypto.Signer
	// CertPEM is Cert encoded as a PEM block, ready to be handed to
	// whoever must trust this authority.
	CertPEM []byte
}

// NewAuthority creates a self-signed ECDSA P-256 CA with the given common
// name, valid for ten years. It may sign leaf certificates only (path length
// zero).
func NewAuthority(commonName string) (*Authority, error) {
	if commonName == "" {
		return nil, fmt.Errorf("authority common name: %w", ErrEmptyName)
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(authorityValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create authority certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse authority certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key, CertPEM: encodeCert(der)}, nil
}

// NewVehicleAuthority creates the authority for vehicle client certificates,
// named [VehicleAuthorityName] so that its certificates yield a
// vehicle_device identity.
func NewVehicleAuthority() (*Authority, error) {
	return NewAuthority(VehicleAuthorityName)
}

// NewServerAuthority creates the authority for server certificates, named
// [ServerAuthorityName].
func NewServerAuthority() (*Authority, error) {
	return NewAuthority(ServerAuthorityName)
}

// ParseAuthority reads an authority from its PEM certificate and PEM private
// key (PKCS #8, SEC 1 or PKCS #1). The key must match the certificate and the
// certificate must be a CA.
func ParseAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse authority: %w", err)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse authority: %w", err)
		}
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("parse authority %q: %w", cert.Subject.CommonName, ErrNotAuthority)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse authority %q: %w", cert.Subject.CommonName, ErrKeyType)
	}
	return &Authority{Cert: cert, Key: signer, CertPEM: encodeCert(cert.Raw)}, nil
}

// KeyPEM returns the authority's private key as a PKCS #8 PEM block.
func (a *Authority) KeyPEM() ([]byte, error) {
	return encodeKey(a.Key)
}

// Pool returns a new certificate pool holding only this authority, for
// tls.Config.RootCAs (trusting servers) or ClientCAs (trusting vehicles).
func (a *Authority) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(a.Cert)
	return pool
}

// IssueServer issues a server certificate (ServerAuth) for the given names.
// Each name that parses as an IP address becomes an IP SAN, every other name
// a DNS SAN; the first name is also the subject common name. Without names
// it covers localhost, 127.0.0.1 and ::1. The returned chain holds the leaf
// only; clients trust the authority's certificate.
func (a *Authority) IssueServer(names ...string) (tls.Certificate, error) {
	tmpl, err := serverTemplate(names)
	if err != nil {
		return tls.Certificate{}, err
	}
	return a.Issue(tmpl)
}

// IssueVehicle issues a vehicle client certificate (ClientAuth) whose
// subject common name is the VIN; its issuer name is the authority's.
func (a *Authority) IssueVehicle(vin string) (tls.Certificate, error) {
	if vin == "" {
		return tls.Certificate{}, fmt.Errorf("vehicle certificate: %w", ErrEmptyName)
	}
	return a.Issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: vin, Organization: []string{organization}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// Issue signs a leaf certificate described by tmpl with a fresh ECDSA P-256
// key. A zero SerialNumber, NotBefore or NotAfter is filled in; tmpl is not
// modified. It serves certificates the named helpers do not cover, such as
// test certificates with particular extended key usages.
func (a *Authority) Issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	leafTmpl := *tmpl
	if leafTmpl.SerialNumber == nil {
		serial, err := newSerial()
		if err != nil {
			return tls.Certificate{}, err
		}
		leafTmpl.SerialNumber = serial
	}
	now := time.Now()
	if leafTmpl.NotBefore.IsZero() {
		leafTmpl.NotBefore = now.Add(-backdate)
	}
	if leafTmpl.NotAfter.IsZero() {
		leafTmpl.NotAfter = now.Add(leafValidity)
		if leafTmpl.NotAfter.After(a.Cert.NotAfter) {
			leafTmpl.NotAfter = a.Cert.NotAfter
		}
	}
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &leafTmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate %q: %w", leafTmpl.Subject.CommonName, err)
	}
	return newTLSCertificate(der, key)
}

// SelfSigned creates a self-signed server certificate for the given names
// (parsed as in IssueServer; loopback names when none are given), for a
// start without a configured certificate. The certificate is its own trust
// anchor: it is marked as a CA so that strict clients accept it once they
// are told to trust it, and the chain holds this one certificate.
func SelfSigned(names ...string) (tls.Certificate, error) {
	tmpl, err := serverTemplate(names)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(leafValidity)
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true

	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create self-signed certificate: %w", err)
	}
	return newTLSCertificate(der, key)
}

// serverTemplate describes a server leaf for names.
func serverTemplate(names []string) (*x509.Certificate, error) {
	if len(names) == 0 {
		names = defaultServerNames
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0], Organization: []string{organization}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, name := range names {
		// Accept the bracketed form users copy from URLs, "[::1]".
		host := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		if host == "" {
			return nil, fmt.Errorf("server certificate name: %w", ErrEmptyName)
		}
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	return tmpl, nil
}

// newTLSCertificate wraps a leaf and its key, with Leaf filled in.
func newTLSCertificate(der []byte, key crypto.Signer) (tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// encodeCert returns one or more DER certificates as consecutive PEM blocks.
func encodeCert(ders ...[]byte) []byte {
	var buf bytes.Buffer
	for _, der := range ders {
		// Writing to a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return buf.Bytes()
}

// encodeKey returns key as a PKCS #8 PEM block.
func encodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
