package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// runDevCertsOK runs dev-certs and fails the test unless it succeeds.
func runDevCertsOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := runDevCerts(args, &stdout, &stderr); code != 0 {
		t.Fatalf("dev-certs %v = %d: %s", args, code, stderr.String())
	}
	return stdout.String()
}

func TestDevCertsWritesPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out := runDevCertsOK(t, "--out", dir, "--name", "tesla.example.net", "--vin", "5YJ3E1EAXKF000001", "--vin", "5YJ3E1EAXKF000002")

	keys := []string{certs.CAKeyFile, certs.ServerKeyFile, certs.VehicleCAKeyFile,
		"vehicles/5YJ3E1EAXKF000001-key.pem", "vehicles/5YJ3E1EAXKF000002-key.pem"}
	for _, k := range keys {
		st, err := os.Stat(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		if mode := st.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", k, mode)
		}
	}
	b, err := certs.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf := b.Server.Leaf
	if err := leaf.VerifyHostname("tesla.example.net"); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate does not cover %s: %v", name, err)
		}
	}
	if b.VehicleCA.Cert.Subject.CommonName != certs.VehicleAuthorityName || len(b.Vehicles) != 2 {
		t.Errorf("vehicle CA %q with %d cars", b.VehicleCA.Cert.Subject.CommonName, len(b.Vehicles))
	}
	for _, want := range []string{
		"cert_file: " + filepath.Join(dir, certs.ServerFile),
		"key_file: " + filepath.Join(dir, certs.ServerKeyFile),
		"- " + filepath.Join(dir, certs.VehicleCAFile),
		"fleet2mqtt simulate --server 127.0.0.1:8443 --ca " + filepath.Join(dir, certs.CAFile) + " --certs " + dir,
		"--server tesla.example.net:PORT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDevCertsDefaultVIN(t *testing.T) {
	dir := t.TempDir()
	runDevCertsOK(t, "--out", dir)
	b, err := certs.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Vehicles[simulate.TestVIN(1)]; !ok || len(b.Vehicles) != 1 {
		t.Errorf("cars %v, want the one test VIN %s", b.Vehicles, simulate.TestVIN(1))
	}
}

// TestDevCertsRefusesOverwrite: a second run keeps the first PKI unless
// told --force; --force replaces it and drops the old CA's car
// certificates.
func TestDevCertsRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	runDevCertsOK(t, "--out", dir, "--vin", "OLDVIN0000000001X")
	first, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if code := runDevCerts([]string{"--out", dir}, &stdout, &stderr); code != 1 {
		t.Fatalf("second run = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "--force") || !strings.Contains(stderr.String(), certs.CAFile) {
		t.Errorf("refusal %q should name what is there and --force", stderr.String())
	}
	if again, _ := os.ReadFile(filepath.Join(dir, certs.CAFile)); !bytes.Equal(again, first) {
		t.Fatal("a refused run changed ca.pem")
	}

	runDevCertsOK(t, "--out", dir, "--force", "--vin", "NEWVIN0000000001X")
	if again, _ := os.ReadFile(filepath.Join(dir, certs.CAFile)); bytes.Equal(again, first) {
		t.Error("--force kept the old CA")
	}
	b, err := certs.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, old := b.Vehicles["OLDVIN0000000001X"]; old || len(b.Vehicles) != 1 {
		t.Errorf("cars after --force: %v, want only the new one", b.Vehicles)
	}
	// A lone car certificate is a PKI too.
	lone := t.TempDir()
	if err := os.MkdirAll(filepath.Join(lone, certs.VehiclesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lone, certs.VehiclesDir, "X.pem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := runDevCerts([]string{"--out", lone}, &stdout, &stderr); code != 1 {
		t.Errorf("run over a vehicles folder = %d, want 1", code)
	}
}

func TestDevCertsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--out DIR is required"},
		{[]string{"--out", "x", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--out", "x", "--vin", ""}, 2, "must not be empty"},
		{[]string{"--out", filepath.Join(t.TempDir(), "p"), "--vin", "a/b"}, 1, "not usable as a file name"},
		{[]string{"-h"}, 0, "Usage: fleet2mqtt dev-certs"},
	} {
		var stdout, stderr bytes.Buffer
		code := runDevCerts(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("dev-certs %q = %d, %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
