package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// loopbackNames are the names every development server certificate
// covers, so that a local start is reachable however it is addressed.
func loopbackNames() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// ErrPKIExists is returned by WriteDevDir when the directory already
// holds a development PKI.
var ErrPKIExists = errors.New("already holds a development PKI")

// pkiFiles are the files of a PKI directory, outside its vehicles folder.
var pkiFiles = []string{CAFile, CAKeyFile, ServerFile, ServerKeyFile, VehicleCAFile, VehicleCAKeyFile}

// WriteDevDir makes a development PKI whose server certificate is for
// the loopback names and names (see DevServerNames), with certificates for the cars vins, and
// writes it into dir (see WriteDir). Without force it refuses a directory
// that already holds any part of one; with force it replaces the PKI and
// removes car certificates of the old vehicle CA, which the new one would
// not vouch for.
func WriteDevDir(dir string, names, vins []string, force bool) error {
	existing, err := existingPKI(dir)
	if err != nil {
		return err
	}
	if len(existing) > 0 && !force {
		return fmt.Errorf("%s %w (%s): use --force to replace it", dir, ErrPKIExists, strings.Join(existing, ", "))
	}
	b, err := NewBundle(DevServerNames(names), vins...)
	if err != nil {
		return err
	}
	if force {
		if err := removeVehicleCerts(dir); err != nil {
			return err
		}
	}
	return WriteDir(dir, b)
}

// DevServerNames returns the names of a development server certificate:
// the loopback names (localhost, 127.0.0.1, ::1) followed by the extra
// ones, without repeats.
func DevServerNames(extra []string) []string {
	names := loopbackNames()
	for _, n := range extra {
		n = strings.TrimSuffix(strings.TrimPrefix(n, "["), "]")
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// existingPKI lists the PKI files present in dir.
func existingPKI(dir string) ([]string, error) {
	var found []string
	for _, name := range pkiFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check %s: %w", dir, err)
		}
	}
	pems, err := vehiclePEMs(dir)
	if err != nil {
		return nil, err
	}
	if len(pems) > 0 {
		found = append(found, fmt.Sprintf("%s/ with %d files", VehiclesDir, len(pems)))
	}
	return found, nil
}

// vehiclePEMs lists the PEM files of the vehicles folder.
func vehiclePEMs(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, VehiclesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, VehiclesDir), err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pem") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func removeVehicleCerts(dir string) error {
	pems, err := vehiclePEMs(dir)
	if err != nil {
		return err
	}
	for _, name := range pems {
		if err := os.Remove(filepath.Join(dir, VehiclesDir, name)); err != nil {
			return fmt.Errorf("remove old car certificate: %w", err)
		}
	}
	return nil
}

// DevCA returns the server CA of the development PKI in dir (the ca cars
// get while fleet2mqtt serves that PKI), or nil when dir holds none.
func DevCA(dir string) []byte {
	b, err := LoadDir(dir)
	if err != nil || b.ServerCA == nil {
		return nil
	}
	return b.ServerCA.CertPEM
}
