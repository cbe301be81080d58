package acme

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

// TestCAFollowsServedChain feeds the Manager the chains autocert would
// serve: the first certificate, a renewal under another intermediate and
// root, and an RSA certificate for a client without ECDSA. CA must follow
// each.
func TestCAFollowsServedChain(t *testing.T) {
	first := newTestPKI(t, "First")
	second := newTestPKI(t, "Second")
	legacy := newTestPKI(t, "Legacy")
	roots := x509.NewCertPool()
	for _, p := range []*testPKI{first, second, legacy} {
		roots.AddCert(p.root)
	}
	m, err := New(Config{Enabled: true, Hostnames: []string{testHost}, CacheDir: t.TempDir()}, nil, WithRoots(roots))
	if err != nil {
		t.Fatal(err)
	}
	if m.CA() != nil {
		t.Fatal("CA known before any certificate")
	}
	select {
	case <-m.Ready():
		t.Fatal("Ready before any certificate")
	default:
	}

	cert1 := first.leaf(t, serverTemplate(testHost))
	m.observe(testHost, &cert1)
	if got := m.CA(); !bytes.Equal(got, first.caPEM()) {
		t.Fatalf("after the first certificate CA =\n%s\nwant\n%s", got, first.caPEM())
	}
	select {
	case <-m.Ready():
	default:
		t.Fatal("Ready not closed after the first certificate")
	}

	// The same chain again (every handshake) is recognised by its leaf.
	again := cert1
	again.Leaf = nil
	m.observe(testHost, &again)
	if got := m.CA(); !bytes.Equal(got, first.caPEM()) {
		t.Fatalf("the same chain changed CA to\n%s", got)
	}

	renewed := second.leaf(t, serverTemplate(testHost))
	m.observe(strings.ToUpper(testHost)+".", &renewed) // names as clients send them
	if got := m.CA(); !bytes.Equal(got, second.caPEM()) {
		t.Fatalf("after a renewal CA =\n%s\nwant\n%s", got, second.caPEM())
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf := sign(t, serverTemplate(testHost), legacy.inter, rsaKey.Public(), legacy.interKey)
	rsaCert := tls.Certificate{Certificate: [][]byte{rsaLeaf.Raw, legacy.inter.Raw}, PrivateKey: rsaKey, Leaf: rsaLeaf}
	m.observe(testHost, &rsaCert)
	want := append(second.caPEM(), legacy.caPEM()...)
	if got := m.CA(); !bytes.Equal(got, want) {
		t.Fatalf("with an RSA certificate too CA =\n%s\nwant both chains\n%s", got, want)
	}

	// An untrusted chain does not take the ca away from the other key type.
	stranger := newTestPKI(t, "Stranger").leaf(t, serverTemplate(testHost))
	m.observe(testHost, &stranger)
	if got := m.CA(); !bytes.Equal(got, legacy.caPEM()) {
		t.Fatalf("with an untrusted ECDSA chain CA =\n%s\nwant the RSA chain's\n%s", got, legacy.caPEM())
	}
}
