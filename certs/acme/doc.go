// Package acme gives the vehicle listener a publicly trusted certificate
// without pain, and checks any certificate the way a car will.
//
// A Manager obtains and renews the listener's certificate from an ACME
// server (Let's Encrypt by default) with golang.org/x/crypto/acme/autocert,
// proving control of the name by the TLS-ALPN-01 challenge on the listener's
// own port: no port 80, no DNS API. It watches the chain it actually serves
// and computes from it the "ca" that a car's telemetry config must carry
// (ServedCA): the issuing intermediates and the root of the ACME CA. When a
// renewal changes that chain, CA returns the new value, and the setup page
// pushes the cars' configs again.
//
// Check connects to a host as a car would and says in plain words what a
// car would object to: a name only in the legacy Common Name, a chain
// without its intermediates, a "ca" that does not validate the served chain,
// an expired or soon expiring certificate, or a TLS-terminating proxy in
// front of fleet2mqtt (it asks for no client certificate).
//
// # Wiring
//
//	m, err := acme.New(cfg, log)
//	m.Configure(tlsConfig)      // GetCertificate and the acme-tls/1 protocol
//	... start the listener with tlsConfig on the public port ...
//	go m.Run(ctx)               // obtains the certificate, watches renewals
//	caForCars := m.CA           // current "ca", nil until a certificate is known
package acme

import "errors"

// Errors callers may want to tell apart.
var (
	// ErrUntrustedChain means a served chain does not lead to a trusted
	// root (intermediates missing, or a private root not configured).
	ErrUntrustedChain = errors.New("the chain does not lead to a trusted root")
	// ErrNoCertificate means a chain holds no certificate.
	ErrNoCertificate = errors.New("no certificate")
	// ErrNoHostname means no host name was given.
	ErrNoHostname = errors.New("no host name")
)
