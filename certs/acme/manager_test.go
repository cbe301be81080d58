package acme_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme/acmetest"
)

// logBuffer collects a Manager's log for the failure message.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) *slog.Logger {
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve runs an HTTPS server with tc on ln until the test ends.
func serve(t *testing.T, ln net.Listener, tc *tls.Config) {
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello car")) }),
		TLSConfig: tc,
		ErrorLog:  log.New(io.Discard, "", 0), // failed validation handshakes are expected
	}
	go srv.Serve(tls.NewListener(ln, tc))
	t.Cleanup(func() { srv.Close() })
}

// TestManagerPebble obtains a certificate from Pebble, which really
// validates the TLS-ALPN-01 challenge against the listener on loopback
// (its DNS answers every name with 127.0.0.1), then checks what a car
// would see: the certificate for the name, and the computed ca validating
// the served chain up to Pebble's root.
func TestManagerPebble(t *testing.T) {
	const host = "vehicle.fleet2mqtt.test"
	port := acmetest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := acmetest.Start(t, acmetest.Options{TLSPort: port})
	rootPEM := p.RootPEM(t)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: %q", rootPEM)
	}
	vehicleCAs := x509.NewCertPool() // a listener like ingest's: it asks for client certificates
	vehicleCAs.AddCert(mustParse(t, p.HTTPSCAPEM))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	newManager := func(t *testing.T, cacheDir string) *acme.Manager {
		m, err := acme.New(acme.Config{
			Enabled:      true,
			Email:        "owner@example.com",
			DirectoryURL: p.DirectoryURL,
			Hostnames:    []string{host},
			CacheDir:     cacheDir,
		}, testLogger(t), acme.WithHTTPClient(p.HTTPClient()), acme.WithRoots(roots))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("validation fails without acme-tls/1", func(t *testing.T) {
		// The proof that Pebble validates for real: a listener that does
		// not offer the challenge protocol gets no certificate.
		m := newManager(t, filepath.Join(t.TempDir(), "acme"))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{GetCertificate: m.GetCertificate, NextProtos: []string{"http/1.1"}}
		serve(t, ln, tc)
		err = m.Obtain(ctx, host)
		ln.Close()
		if err == nil {
			t.Fatal("a certificate was issued although the challenge could not be answered")
		}
		if m.CA() != nil {
			t.Errorf("CA known without a certificate: %q", m.CA())
		}
	})

	cacheDir := filepath.Join(t.TempDir(), "acme")
	var ca []byte
	t.Run("obtain and serve", func(t *testing.T) {
		m := newManager(t, cacheDir)
		if m.CA() != nil {
			t.Fatalf("CA known before any certificate: %q", m.CA())
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: vehicleCAs, NextProtos: []string{"http/1.1"}}
		m.Configure(tc)
		if !slices.Contains(tc.NextProtos, acme.ALPNProto) {
			t.Fatalf("NextProtos %q lack %s", tc.NextProtos, acme.ALPNProto)
		}
		serve(t, ln, tc)

		runCtx, stop := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- m.Run(runCtx) }()
		select {
		case <-m.Ready():
		case <-ctx.Done():
			t.Fatal("no certificate from Pebble")
		}
		stop()
		if err := <-runDone; err != nil {
			t.Fatalf("Run: %v", err)
		}

		ca = m.CA()
		caCerts, err := acme.ParsePEMCertificates(ca)
		if err != nil {
			t.Fatalf("ca: %v", err)
		}
		if got, want := caCerts[len(caCerts)-1].Raw, mustParse(t, rootPEM).Raw; !bytes.Equal(got, want) {
			t.Errorf("ca ends with %q, want Pebble's root", caCerts[len(caCerts)-1].Subject)
		}
		if !bytes.Equal(caCerts[0].Raw, mustParse(t, p.IntermediatePEM(t)).Raw) {
			t.Errorf("ca starts with %q, want Pebble's intermediate", caCerts[0].Subject)
		}

		// A car trusts exactly the ca it was given.
		carRoots := x509.NewCertPool()
		for _, c := range caCerts {
			carRoots.AddCert(c)
		}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: carRoots, ServerName: host},
		}}
		resp, err := client.Get("https://" + host + "/")
		if err != nil {
			t.Fatalf("a car trusting only the computed ca cannot connect: %v", err)
		}
		resp.Body.Close()
		leaf := resp.TLS.PeerCertificates[0]
		if !slices.Contains(leaf.DNSNames, host) {
			t.Errorf("served certificate names %q, want %s", leaf.DNSNames, host)
		}

		// A client without SNI (connecting by address) gets the same.
		noSNI, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("connect without SNI: %v", err)
		}
		if got := noSNI.ConnectionState().PeerCertificates[0]; !bytes.Equal(got.Raw, leaf.Raw) {
			t.Errorf("without SNI served %q, want the certificate for %s", got.DNSNames, host)
		}
		noSNI.Close()

		r, err := acme.Check(ctx, acme.CheckOptions{Host: host, Addr: addr, CA: ca, Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range r.Findings {
			if f.Severity != acme.Pass {
				t.Errorf("check %s: %v: %s", f.Check, f.Severity, f.Message)
			}
		}
		if len(r.Findings) != 6 {
			t.Errorf("got %d findings, want 6: %+v", len(r.Findings), r.Findings)
		}
	})
	if ca == nil {
		return
	}

	t.Run("restart reads the cache", func(t *testing.T) {
		info, err := os.Stat(cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o700 {
			t.Errorf("cache dir mode %v, want 0700", info.Mode().Perm())
		}
		m := newManager(t, cacheDir)
		if got := m.CA(); !bytes.Equal(got, ca) {
			t.Fatalf("after a restart CA = %q, want the cached chain's %q", got, ca)
		}
		cached, err := acme.CachedCA(acme.Config{Enabled: true, DirectoryURL: p.DirectoryURL, Hostnames: []string{host}, CacheDir: cacheDir}, acme.WithRoots(roots))
		if err != nil || !bytes.Equal(cached, ca) {
			t.Errorf("CachedCA = %q, %v; want the cached chain's %q", cached, err, ca)
		}
		select {
		case <-m.Ready():
		default:
			t.Error("Ready not closed although the cache holds a certificate")
		}
	})
}

func mustParse(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	certs, err := acme.ParsePEMCertificates(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  acme.Config
		want string
	}{
		{"no hostname", acme.Config{Enabled: true, CacheDir: dir}, "no host name"},
		{"no cache dir", acme.Config{Enabled: true, Hostnames: []string{"car.example.com"}}, "cache_dir"},
		{"bad root file", acme.Config{Enabled: true, Hostnames: []string{"car.example.com"}, CacheDir: dir, RootCAFile: filepath.Join(dir, "missing.pem")}, "root_ca_file"},
		{"bad hostname", acme.Config{Enabled: true, Hostnames: []string{"https://car.example.com"}, CacheDir: dir}, "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := acme.New(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCachedCAWithoutCache(t *testing.T) {
	cfg := acme.Config{Enabled: true, Hostnames: []string{"car.example.com"}, CacheDir: filepath.Join(t.TempDir(), "acme")}
	if ca, err := acme.CachedCA(cfg); ca != nil || err != nil {
		t.Errorf("no cache directory: %q, %v; want nothing", ca, err)
	}
	cfg.CacheDir = t.TempDir()
	if ca, err := acme.CachedCA(cfg); ca != nil || err != nil {
		t.Errorf("an empty cache: %q, %v; want nothing", ca, err)
	}
	cfg.Hostnames = nil
	if _, err := acme.CachedCA(cfg); !errors.Is(err, acme.ErrNoHostname) {
		t.Errorf("no host name: %v, want %v", err, acme.ErrNoHostname)
	}
}
