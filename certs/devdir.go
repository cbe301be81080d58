package certs

import (
	"errors"
	"fmt"
	"io"
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

// WriteDevGuide tells a person what each file of the development PKI
// that WriteDevDir(dir, extraNames, vins, ...) wrote is for, and how to
// use it with fleet2mqtt, its simulator and Tesla's reference server.
func WriteDevGuide(w io.Writer, dir string, extraNames, vins []string) error {
	names := DevServerNames(extraNames)
	var b strings.Builder
	p := func(name string) string { return filepath.Join(dir, name) }
	fmt.Fprintf(&b, "Wrote a development PKI to %s\n\n", dir)
	rows := [][2]string{
		{CAFile, "server CA: what cars and the simulator trust (simulate --ca)"},
		{CAKeyFile, "server CA key (private: signs server certificates)"},
		{ServerFile, "server certificate for " + strings.Join(names, ", ")},
		{ServerKeyFile, "server certificate key (private)"},
		{VehicleCAFile, "vehicle CA \"" + VehicleAuthorityName + "\": what the vehicle listener trusts"},
		{VehicleCAKeyFile, "vehicle CA key (private: the simulator issues car certificates with it)"},
	}
	for _, vin := range vins {
		rows = append(rows,
			[2]string{filepath.Join(VehiclesDir, vin+".pem"), "client certificate of car " + vin},
			[2]string{filepath.Join(VehiclesDir, vin+"-key.pem"), "its key (private)"})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r[0], r[1])
	}
	fmt.Fprintf(&b, `
Keys are readable by you only (mode 0600). Use the PKI in fleet2mqtt's config.yaml:

  vehicle:
    cert_file: %s
    key_file: %s
    client_ca_files:
      - %s

(keep Tesla's vehicle CA bundle in client_ca_files too if real cars connect as well)

Then stream simulated cars to it:

  fleet2mqtt simulate --server 127.0.0.1:8443 --ca %s --certs %s

Cars beyond the VINs above get certificates from the vehicle CA on the fly.
Tesla's reference server accepts these cars as well when it trusts %s
for client certificates and serves %s.
`, p(ServerFile), p(ServerKeyFile), p(VehicleCAFile),
		p(CAFile), dir, p(VehicleCAFile), p(ServerFile))
	if loopback := len(loopbackNames()); len(names) > loopback {
		fmt.Fprintf(&b, "From another machine use --server %s:PORT (the port the vehicle listener is reached on).\n", names[loopback])
	}
	_, err := io.WriteString(w, b.String())
	return err
}
