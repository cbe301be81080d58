package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

const testVIN = "5YJ3TESTVIN000001"

// handshake runs a TLS handshake over loopback between a server using
// serverConf and a client using clientConf, exchanging one byte so that a
// client certificate refused after the TLS 1.3 handshake still surfaces. It
// returns the server's view of the connection and both sides' errors.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		// A deadline only guards against a hung test; nothing is timed.
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		done <- result{state: tc.ConnectionState(), err: err}
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
	if err != nil {
		clientErr = err
	} else {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		_, clientErr = io.ReadFull(conn, make([]byte, 1))
	}
	res := <-done
	return res.state, res.err, clientErr
}

func TestMutualTLS(t *testing.T) {
	serverCA, err := NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	vehicleCA, err := NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	// Same name as the trusted vehicle authority, different key: must be
	// refused all the same.
	impostorCA, err := NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := serverCA.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	serverConf := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    vehicleCA.Pool(),
	}

	tests := []struct {
		name    string
		issuer  *Authority // nil: no client certificate
		wantErr bool
		// verified: the client sends its certificate and verification
		// refuses it. A client whose issuer name is not among the
		// acceptable authorities the server lists sends none at all.
		verified bool
	}{
		{name: "trusted vehicle", issuer: vehicleCA},
		{name: "same name other key", issuer: impostorCA, wantErr: true, verified: true},
		{name: "server authority", issuer: serverCA, wantErr: true},
		{name: "no client certificate", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientConf := &tls.Config{RootCAs: serverCA.Pool(), ServerName: "127.0.0.1"}
			if tt.issuer != nil {
				cert, err := tt.issuer.IssueVehicle(testVIN)
				if err != nil {
					t.Fatal(err)
				}
				clientConf.Certificates = []tls.Certificate{cert}
			}
			state, serverErr, clientErr := handshake(t, serverConf, clientConf)
			if tt.wantErr {
				if serverErr == nil || clientErr == nil {
					t.Fatalf("connection accepted: server error %v, client error %v", serverErr, clientErr)
				}
				var verr *tls.CertificateVerificationError
				if tt.verified && !errors.As(serverErr, &verr) {
					t.Errorf("server error %v, want a certificate verification error", serverErr)
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server error %v, client error %v", serverErr, clientErr)
			}
			if len(state.PeerCertificates) == 0 {
				t.Fatal("server saw no client certificate")
			}
			leaf := state.PeerCertificates[0]
			if leaf.Subject.CommonName != testVIN || leaf.Issuer.CommonName != VehicleAuthorityName {
				t.Errorf("client certificate subject %q issuer %q, want %q issued by %q",
					leaf.Subject.CommonName, leaf.Issuer.CommonName, testVIN, VehicleAuthorityName)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	cert, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	serverConf := &tls.Config{Certificates: []tls.Certificate{cert}}

	for _, name := range []string{"localhost", "127.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			_, serverErr, clientErr := handshake(t, serverConf, &tls.Config{RootCAs: roots, ServerName: name})
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server error %v, client error %v", serverErr, clientErr)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		_, _, clientErr := handshake(t, serverConf, &tls.Config{ServerName: "localhost"})
		var unknown x509.UnknownAuthorityError
		if !errors.As(clientErr, &unknown) {
			t.Fatalf("client error %v, want an unknown authority error", clientErr)
		}
	})
}

func TestIssueServerNames(t *testing.T) {
	ca, err := NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names   []string
		wantDNS []string
		wantIPs []string
		wantErr error
	}{
		{names: nil, wantDNS: []string{"localhost"}, wantIPs: []string{"127.0.0.1", "::1"}},
		{names: []string{"tesla.example.com", "192.0.2.7", "[2001:db8::1]"},
			wantDNS: []string{"tesla.example.com"}, wantIPs: []string{"192.0.2.7", "2001:db8::1"}},
		{names: []string{"a.example", ""}, wantErr: ErrEmptyName},
	}
	for _, tt := range tests {
		cert, err := ca.IssueServer(tt.names...)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("IssueServer(%q) error %v, want %v", tt.names, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		var ips []string
		for _, ip := range cert.Leaf.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(cert.Leaf.DNSNames, tt.wantDNS) || !slices.Equal(ips, tt.wantIPs) {
			t.Errorf("IssueServer(%q): DNS %q IPs %q, want %q %q", tt.names, cert.Leaf.DNSNames, ips, tt.wantDNS, tt.wantIPs)
		}
		if !slices.Equal(cert.Leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("IssueServer(%q): extended key usage %v", tt.names, cert.Leaf.ExtKeyUsage)
		}
		if len(cert.Certificate) != 1 {
			t.Errorf("IssueServer(%q): chain of %d certificates, want the leaf only", tt.names, len(cert.Certificate))
		}
	}
}

func TestParseAuthorityRejectsLeaf(t *testing.T) {
	ca, err := NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueVehicle(testVIN)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseAuthority(encodeCert(leaf.Certificate...), keyPEM); !errors.Is(err, ErrNotAuthority) {
		t.Fatalf("ParseAuthority(leaf) error %v, want %v", err, ErrNotAuthority)
	}
	// A CA certificate with someone else's key must not load either.
	if _, err := ParseAuthority(ca.CertPEM, keyPEM); err == nil {
		t.Fatal("ParseAuthority accepted a key that does not match the certificate")
	}
}
