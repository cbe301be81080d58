package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// serveCert accepts TLS connections with cert on loopback, asking for
// client certificates as the vehicle listener does, until the test ends.
func serveCert(t *testing.T, cert tls.Certificate, vehicleCA *x509.CertPool) string {
	t.Helper()
	return testenv.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    vehicleCA,
	})
}

func TestCheckCertCommand(t *testing.T) {
	const host = "telemetry.example.com"
	ca, err := certs.NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	vehicleCA, err := certs.NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	good, err := ca.IssueServer(host)
	if err != nil {
		t.Fatal(err)
	}
	cnOnly, err := ca.Issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeTestFile(t, caFile, ca.CertPEM)
	other, err := certs.NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other.pem")
	writeTestFile(t, otherFile, other.CertPEM)

	// A data directory with the development PKI: its CA is the default ca.
	dataDir := t.TempDir()
	bundle, err := certs.NewBundle(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteDir(filepath.Join(dataDir, "dev-pki"), bundle); err != nil {
		t.Fatal(err)
	}

	goodAddr := serveCert(t, good, vehicleCA.Pool())
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"good", []string{"--host", host, "--connect", goodAddr, "--ca", caFile}, 0,
			[]string{"[ok] The certificate names " + host, "with the ca from " + caFile, "A car would connect."}},
		{"name only in the Common Name", []string{"--host", host, "--connect", serveCert(t, cnOnly, vehicleCA.Pool()), "--ca", caFile}, 1,
			[]string{"[problem] The certificate names " + host + " only in its Common Name", "A car would not connect"}},
		{"wrong ca", []string{"--host", host, "--connect", goodAddr, "--ca", otherFile}, 1,
			[]string{"[problem] The ca that cars receive does not validate"}},
		{"development ca from the data directory", []string{"--data-dir", dataDir, "--host", "localhost", "--connect", serveCert(t, bundle.Server, vehicleCA.Pool())}, 0,
			[]string{"with the ca from " + filepath.Join(filepath.Join(dataDir, "dev-pki"), certs.CAFile), "A car would connect."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, "", append([]string{"check-cert", "--data-dir", t.TempDir()}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("no host", func(t *testing.T) {
		code, _, errOut := runCmd(t, "", "check-cert", "--data-dir", t.TempDir())
		if code != 2 || !strings.Contains(errOut, "no host") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}
