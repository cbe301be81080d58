package certs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVehicleDevelopment: with nothing configured the listener serves
// the development PKI, made on first use, and CA says so without making
// anything.
func TestVehicleDevelopment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev-pki")
	v := Vehicle{DevDir: dir, Section: "vehicle"}
	if ca, _, err := v.CA(); err != nil || ca != nil {
		t.Fatalf("CA before the PKI exists: %q %v", ca, err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("CA made the development PKI")
	}
	src, tc, err := v.Listener(nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc.ClientCAs == nil || len(tc.Certificates) != 1 {
		t.Errorf("TLS config without the development certificate or vehicle CA: %+v", tc)
	}
	ca, source, err := v.CA()
	if err != nil || ca == nil || !bytes.Equal(ca, src.CA()) || source != filepath.Join(dir, CAFile) {
		t.Errorf("CA %q from %s (%v), listener's %q", ca, source, err, src.CA())
	}
}

// TestVehicleFiles: configured files are served, and their errors name
// the section's keys.
func TestVehicleFiles(t *testing.T) {
	pki := t.TempDir()
	if err := WriteDevDir(pki, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	v := Vehicle{Files: Config{CertFile: filepath.Join(pki, ServerFile), KeyFile: filepath.Join(pki, ServerKeyFile),
		ClientCAFiles: []string{filepath.Join(pki, VehicleCAFile)}}, DevDir: filepath.Join(t.TempDir(), "dev"), Section: "vehicle"}
	src, tc, err := v.Listener(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src.(*Files); !ok || tc.ClientCAs == nil {
		t.Errorf("source %T, client CAs %v", src, tc.ClientCAs)
	}
	if _, err := os.Stat(v.DevDir); err == nil {
		t.Error("a development PKI was made though everything is configured")
	}
	// The development server certificate is a leaf without its chain:
	// no ca cars could be given, and the error names the file's key.
	if _, source, err := v.CA(); source != v.Files.CertFile || err == nil || !strings.HasPrefix(err.Error(), "vehicle.cert_file: ") {
		t.Errorf("CA from %s: %v", source, err)
	}
	v.Files.ClientCAFiles = []string{filepath.Join(pki, "missing.pem")}
	if _, _, err := v.Listener(nil); err == nil || !strings.HasPrefix(err.Error(), "vehicle.client_ca_files: ") {
		t.Errorf("missing client CA file: %v", err)
	}
	v.Files.KeyFile = filepath.Join(pki, "missing-key.pem")
	if _, _, err := v.CA(); err == nil || !strings.HasPrefix(err.Error(), "vehicle.cert_file: ") {
		t.Errorf("missing key: %v", err)
	}
}
