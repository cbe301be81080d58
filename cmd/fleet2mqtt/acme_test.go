package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
	"github.com/fleet2mqtt/fleet2mqtt/certs/acme/acmetest"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// TestACMEServe runs fleet2mqtt with vehicle.acme against Pebble: the
// vehicle listener (ingest, with its client certificate request) answers
// the TLS-ALPN-01 challenge itself, serves the certificate to a car-like
// client, and check-cert, computing the ca from the configuration as the
// setup page's push does, finds nothing to object to.
func TestACMEServe(t *testing.T) {
	const host = "vehicle.fleet2mqtt.test"
	port := acmetest.FreePort(t)
	p := acmetest.Start(t, acmetest.Options{TLSPort: port})
	root := p.RootPEM(t)

	// The private ACME server's roots: its HTTPS certificate's and the one
	// it issues under.
	rootFile := filepath.Join(t.TempDir(), "roots.pem")
	writeTestFile(t, rootFile, append(append([]byte{}, p.HTTPSCAPEM...), root...))
	listen := "127.0.0.1:" + strconv.Itoa(port)
	a := startTestApp(t, func(c *config.Config) {
		c.Vehicle.Listen = listen
		c.Setup.PublicHostname = host
		c.Vehicle.ACME = acme.Config{Enabled: true, DirectoryURL: p.DirectoryURL, RootCAFile: rootFile}
	})

	// A car trusting Pebble's root. Its handshake waits while the
	// certificate is being obtained.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config:    &tls.Config{ServerName: host, RootCAs: pool, NextProtos: []string{"http/1.1"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", a.vehicleAddr)
	if err != nil {
		t.Fatalf("a car cannot connect: %v", err)
	}
	st := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	if !slices.Contains(st.PeerCertificates[0].DNSNames, host) {
		t.Fatalf("served %q, want a certificate for %s", st.PeerCertificates[0].DNSNames, host)
	}

	// autocert writes its cache right after the handshakes waiting for
	// the certificate are released; check-cert reads the ca from there.
	cached := filepath.Join(a.cfg.DataDir, "acme", host)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(cached); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate never reached the cache %s", cached)
		}
	}

	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	writeTestFile(t, cfgFile, fmt.Appendf(nil, "data_dir: %s\nvehicle:\n  acme:\n    enabled: true\n    directory_url: %s\n    root_ca_file: %s\nsetup:\n  public_hostname: %s\n",
		a.cfg.DataDir, p.DirectoryURL, rootFile, host))
	code, out, errOut := runCmd(t, "", "check-cert", "--config", cfgFile, "--connect", a.vehicleAddr)
	if code != 0 {
		t.Errorf("check-cert: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"with the ca from the ACME certificate in " + filepath.Join(a.cfg.DataDir, "acme"), "A car would connect."} {
		if !strings.Contains(out, want) {
			t.Errorf("check-cert output lacks %q:\n%s", want, out)
		}
	}
	if info, err := os.Stat(filepath.Join(a.cfg.DataDir, "acme")); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("acme cache dir: %v %v, want mode 0700", info, err)
	}
}
