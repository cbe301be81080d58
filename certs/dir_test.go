package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWriteDirLoadDir(t *testing.T) {
	const otherVIN = "5YJ3TESTVIN000002"
	b, err := NewBundle([]string{"127.0.0.1"}, testVIN, otherVIN)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	if err := WriteDir(dir, b); err != nil {
		t.Fatal(err)
	}

	t.Run("modes", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no POSIX file modes")
		}
		want := map[string]fs.FileMode{
			CAFile:           0o644,
			CAKeyFile:        0o600,
			ServerFile:       0o644,
			ServerKeyFile:    0o600,
			VehicleCAFile:    0o644,
			VehicleCAKeyFile: 0o600,
			filepath.Join(VehiclesDir, testVIN+".pem"):     0o644,
			filepath.Join(VehiclesDir, testVIN+"-key.pem"): 0o600,
		}
		for name, mode := range want {
			info, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Error(err)
				continue
			}
			if got := info.Mode().Perm(); got != mode {
				t.Errorf("%s: mode %o, want %o", name, got, mode)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 7 { // six files and the vehicles directory
			t.Errorf("directory holds %d entries, want 7 (leftover temporary files?)", len(entries))
		}
	})

	t.Run("round trip", func(t *testing.T) {
		got, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		sameAuthority(t, "server CA", got.ServerCA, b.ServerCA)
		sameAuthority(t, "vehicle CA", got.VehicleCA, b.VehicleCA)
		samePair(t, "server", got.Server, b.Server)
		if len(got.Vehicles) != len(b.Vehicles) {
			t.Fatalf("loaded %d vehicles, want %d", len(got.Vehicles), len(b.Vehicles))
		}
		for vin, want := range b.Vehicles {
			samePair(t, vin, got.Vehicles[vin], want)
		}
		// The loaded authorities still work together.
		if _, err := got.VehicleCA.IssueVehicle("5YJ3TESTVIN000003"); err != nil {
			t.Errorf("issue from loaded authority: %v", err)
		}
	})

	t.Run("rewrite", func(t *testing.T) {
		// Writing over an existing directory replaces the files in place.
		b2, err := NewBundle(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteDir(dir, b2); err != nil {
			t.Fatal(err)
		}
		got, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		sameAuthority(t, "server CA", got.ServerCA, b2.ServerCA)
	})
}

func TestLoadDirErrors(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		if _, err := LoadDir(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadDir(empty) error %v, want %v", err, fs.ErrNotExist)
		}
	})
	t.Run("half pair", func(t *testing.T) {
		dir := t.TempDir()
		ca, err := NewServerAuthority()
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteDir(dir, &Bundle{ServerCA: ca}); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(dir); !errors.Is(err, ErrHalfPair) {
			t.Fatalf("LoadDir error %v, want %v", err, ErrHalfPair)
		}
	})
}

func TestWriteDirRejectsBadVIN(t *testing.T) {
	ca, err := NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueVehicle(testVIN)
	if err != nil {
		t.Fatal(err)
	}
	for _, vin := range []string{"", "..", "../escape", `a\b`, "x-key"} {
		dir := t.TempDir()
		err := WriteDir(dir, &Bundle{Vehicles: map[string]tls.Certificate{vin: cert}})
		if !errors.Is(err, ErrBadVIN) {
			t.Errorf("WriteDir(vin %q) error %v, want %v", vin, err, ErrBadVIN)
		}
	}
}

func sameAuthority(t *testing.T, what string, got, want *Authority) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: not loaded", what)
		return
	}
	if !got.Cert.Equal(want.Cert) || !bytes.Equal(got.CertPEM, want.CertPEM) {
		t.Errorf("%s: certificate differs", what)
	}
	if k, ok := got.Key.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !k.Equal(want.Key) {
		t.Errorf("%s: key differs", what)
	}
}

func samePair(t *testing.T, what string, got, want tls.Certificate) {
	t.Helper()
	if len(got.Certificate) != len(want.Certificate) || got.Leaf == nil {
		t.Errorf("%s: loaded chain of %d certificates (leaf %v), want %d", what, len(got.Certificate), got.Leaf != nil, len(want.Certificate))
		return
	}
	for i := range want.Certificate {
		if !bytes.Equal(got.Certificate[i], want.Certificate[i]) {
			t.Errorf("%s: certificate %d differs", what, i)
		}
	}
	if k, ok := got.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !k.Equal(want.PrivateKey) {
		t.Errorf("%s: key differs", what)
	}
}

func TestDevCA(t *testing.T) {
	dir := t.TempDir()
	if ca := DevCA(dir); ca != nil {
		t.Errorf("an empty directory: %q, want none", ca)
	}
	if err := WriteDevDir(dir, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca := DevCA(dir); ca == nil || !bytes.Equal(ca, b.ServerCA.CertPEM) {
		t.Errorf("DevCA = %q, want the server CA %q", ca, b.ServerCA.CertPEM)
	}
}

func TestWriteDevGuide(t *testing.T) {
	dir := filepath.Join("/", "pki")
	var b bytes.Buffer
	if err := WriteDevGuide(&b, dir, []string{"[::1]", "car.example.net"}, []string{"5YJ3E1EAXKF000001"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// Rows are aligned on the longest file name, the car's key.
	row := func(name string) string { return fmt.Sprintf("  %-34s  ", name) }
	for _, want := range []string{
		"Wrote a development PKI to " + dir + "\n\n",
		row(CAFile) + "server CA: what cars and the simulator trust (simulate --ca)\n",
		row(ServerFile) + "server certificate for localhost, 127.0.0.1, ::1, car.example.net\n",
		"  vehicles/5YJ3E1EAXKF000001-key.pem  its key (private)\n",
		"    cert_file: " + filepath.Join(dir, ServerFile) + "\n",
		"  fleet2mqtt simulate --server 127.0.0.1:8443 --ca " + filepath.Join(dir, CAFile) + " --certs " + dir + "\n",
		"From another machine use --server car.example.net:PORT",
	} {
		if !bytes.Contains(b.Bytes(), []byte(want)) {
			t.Errorf("guide lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := WriteDevGuide(&b, dir, []string{"localhost"}, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte("From another machine")) {
		t.Errorf("a guide for loopback names only tells how to connect from another machine:\n%s", b.String())
	}
}
