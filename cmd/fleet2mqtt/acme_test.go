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
)

func TestACMEConfig(t *testing.T) {
	tests := []struct {
		name, yaml, want string // want "" = valid
	}{
		{"enabled with the public hostname", "vehicle:\n  acme:\n    enabled: true\n    email: me@example.com\nsetup:\n  public_hostname: car.example.com\n", ""},
		{"enabled with hostnames", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [car.example.com, Other.example.com]\nsetup:\n  public_hostname: other.example.com\n", ""},
		{"disabled needs nothing", "vehicle:\n  acme:\n    enabled: false\n", ""},
		{"unknown key", "vehicle:\n  acme:\n    enable: true\n", `unknown key "enable"`},
		{"no name at all", "vehicle:\n  acme:\n    enabled: true\n", "vehicle.acme.hostnames: empty, and setup.public_hostname is not set"},
		{"public hostname not covered", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [car.example.com]\nsetup:\n  public_hostname: other.example.com\n", `setup.public_hostname "other.example.com" is not among vehicle.acme.hostnames`},
		{"with cert_file", "vehicle:\n  cert_file: a.pem\n  key_file: a.key\n  acme:\n    enabled: true\nsetup:\n  public_hostname: car.example.com\n", "choose one"},
		{"bad directory", "vehicle:\n  acme:\n    enabled: true\n    directory_url: ftp://x\nsetup:\n  public_hostname: car.example.com\n", "vehicle.acme.directory_url"},
		{"bad hostname", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [\"car.example.com:443\"]\n", "vehicle.acme.hostnames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeTestFile(t, path, []byte(tt.yaml))
			cfg, err := loadConfig(path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Vehicle.Listen == "" {
					t.Error("vehicle.listen lost its default next to vehicle.acme")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestACMEConfigDefaults(t *testing.T) {
	v := VehicleConfig{ACME: acme.Config{Enabled: true}}
	got := acmeConfig(v, "/data", "car.example.com")
	if !slices.Equal(got.Hostnames, []string{"car.example.com"}) || got.CacheDir != filepath.Join("/data", "acme") || got.Directory() != acme.LetsEncrypt {
		t.Errorf("defaults: %+v", got)
	}
	v.ACME.Hostnames, v.ACME.CacheDir = []string{"x.example.com"}, "/cache"
	got = acmeConfig(v, "/data", "car.example.com")
	if !slices.Equal(got.Hostnames, []string{"x.example.com"}) || got.CacheDir != "/cache" {
		t.Errorf("explicit values replaced: %+v", got)
	}
}

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
	a := startTestApp(t, func(c *Config) {
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
