package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/internal/deviceid"
)

// File names inside a development PKI directory. Certificates are PEM
// "CERTIFICATE" blocks, keys PKCS #8 "PRIVATE KEY" blocks.
const (
	CAFile           = "ca.pem"             // server authority certificate: what cars trust
	CAKeyFile        = "ca-key.pem"         // server authority key
	ServerFile       = "server.pem"         // server chain (leaf only)
	ServerKeyFile    = "server-key.pem"     // server key
	VehicleCAFile    = "vehicle-ca.pem"     // vehicle authority certificate: what the listener trusts
	VehicleCAKeyFile = "vehicle-ca-key.pem" // vehicle authority key
	VehiclesDir      = "vehicles"           // holds <VIN>.pem and <VIN>-key.pem per vehicle

	keySuffix = "-key.pem"
	pemSuffix = ".pem"

	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
	dirMode  fs.FileMode = 0o700
)

var (
	// ErrBadVIN is returned for a vehicle name that cannot be a file name,
	// or that the vehicle listener would refuse as a car's device id (see
	// deviceid.Valid). The error names which.
	ErrBadVIN = errors.New("vin not usable")
	// ErrHalfPair is returned when a certificate or key is present on disk
	// without its partner.
	ErrHalfPair = errors.New("certificate without key or key without certificate")
)

// Bundle is a development PKI as stored in a directory. Any part may be
// absent (nil or empty).
type Bundle struct {
	// ServerCA signs Server; cars and the simulator trust it.
	ServerCA *Authority
	// Server is the certificate the vehicle listener serves.
	Server tls.Certificate
	// VehicleCA signs the vehicle certificates; the listener trusts it.
	VehicleCA *Authority
	// Vehicles holds one client certificate per VIN.
	Vehicles map[string]tls.Certificate
}

// NewBundle creates a complete development PKI: a server authority, a server
// certificate for serverNames (loopback names when empty), a vehicle
// authority named [VehicleAuthorityName] and one client certificate per VIN.
func NewBundle(serverNames []string, vins ...string) (*Bundle, error) {
	serverCA, err := NewServerAuthority()
	if err != nil {
		return nil, err
	}
	server, err := serverCA.IssueServer(serverNames...)
	if err != nil {
		return nil, err
	}
	vehicleCA, err := NewVehicleAuthority()
	if err != nil {
		return nil, err
	}
	b := &Bundle{ServerCA: serverCA, Server: server, VehicleCA: vehicleCA, Vehicles: make(map[string]tls.Certificate, len(vins))}
	for _, vin := range vins {
		if err := checkVIN(vin); err != nil {
			return nil, err
		}
		if b.Vehicles[vin], err = vehicleCA.IssueVehicle(vin); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// WriteDir writes the present parts of b into dir, creating dir (mode 0700)
// if needed. Each file is written to a temporary file first and renamed into
// place, so a reader never sees a half-written file; keys get mode 0600,
// certificates 0644. Files of absent parts are left alone.
func WriteDir(dir string, b *Bundle) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	if b.ServerCA != nil {
		if err := writeAuthority(dir, CAFile, CAKeyFile, b.ServerCA); err != nil {
			return err
		}
	}
	if b.VehicleCA != nil {
		if err := writeAuthority(dir, VehicleCAFile, VehicleCAKeyFile, b.VehicleCA); err != nil {
			return err
		}
	}
	if len(b.Server.Certificate) > 0 {
		if err := writePair(dir, ServerFile, ServerKeyFile, b.Server); err != nil {
			return err
		}
	}
	if len(b.Vehicles) == 0 {
		return nil
	}
	vdir := filepath.Join(dir, VehiclesDir)
	if err := os.MkdirAll(vdir, dirMode); err != nil {
		return fmt.Errorf("create vehicle certificate directory: %w", err)
	}
	for vin, cert := range b.Vehicles {
		if err := checkVIN(vin); err != nil {
			return err
		}
		if err := writePair(vdir, vin+pemSuffix, vin+keySuffix, cert); err != nil {
			return err
		}
	}
	return nil
}

// LoadDir reads what WriteDir wrote. Parts whose files are all absent stay
// absent in the result; a certificate without its key (or the reverse) is an
// error. A directory holding none of the files yields an error wrapping
// fs.ErrNotExist.
func LoadDir(dir string) (*Bundle, error) {
	var (
		b     = &Bundle{}
		found bool
		err   error
	)
	if b.ServerCA, err = loadAuthority(dir, CAFile, CAKeyFile); err != nil {
		return nil, err
	}
	if b.VehicleCA, err = loadAuthority(dir, VehicleCAFile, VehicleCAKeyFile); err != nil {
		return nil, err
	}
	server, ok, err := loadPair(dir, ServerFile, ServerKeyFile)
	if err != nil {
		return nil, err
	}
	if ok {
		b.Server = server
	}
	found = ok || b.ServerCA != nil || b.VehicleCA != nil

	vdir := filepath.Join(dir, VehiclesDir)
	entries, err := os.ReadDir(vdir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read vehicle certificates: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, pemSuffix) || strings.HasSuffix(name, keySuffix) {
			continue
		}
		vin := strings.TrimSuffix(name, pemSuffix)
		cert, ok, err := loadPair(vdir, name, vin+keySuffix)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if b.Vehicles == nil {
			b.Vehicles = make(map[string]tls.Certificate)
		}
		b.Vehicles[vin] = cert
		found = true
	}
	if !found {
		return nil, fmt.Errorf("load certificates from %s: %w", dir, fs.ErrNotExist)
	}
	return b, nil
}

func writeAuthority(dir, certName, keyName string, a *Authority) error {
	keyPEM, err := a.KeyPEM()
	if err != nil {
		return err
	}
	// Key first: a certificate on disk always has its key beside it.
	if err := writeFileAtomic(filepath.Join(dir, keyName), keyPEM, keyMode); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certName), a.CertPEM, certMode)
}

func writePair(dir, certName, keyName string, cert tls.Certificate) error {
	keyPEM, err := encodeKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("%s: %w", certName, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, keyName), keyPEM, keyMode); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certName), encodeCert(cert.Certificate...), certMode)
}

// writeFileAtomic replaces path with data by way of a temporary file in the
// same directory, synced before the rename.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; set the mode explicitly so that it does
	// not depend on that or on the umask.
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readPair reads a certificate file and its key file. ok is false when both
// are absent.
func readPair(dir, certName, keyName string) (certPEM, keyPEM []byte, ok bool, err error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, nil
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("%s without %s: %w", keyPath, certName, ErrHalfPair)
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("%s without %s: %w", certPath, keyName, ErrHalfPair)
	case certErr != nil:
		return nil, nil, false, fmt.Errorf("read certificate: %w", certErr)
	case keyErr != nil:
		return nil, nil, false, fmt.Errorf("read key: %w", keyErr)
	}
	return certPEM, keyPEM, true, nil
}

func loadAuthority(dir, certName, keyName string) (*Authority, error) {
	certPEM, keyPEM, ok, err := readPair(dir, certName, keyName)
	if err != nil || !ok {
		return nil, err
	}
	a, err := ParseAuthority(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, certName), err)
	}
	return a, nil
}

func loadPair(dir, certName, keyName string) (tls.Certificate, bool, error) {
	certPEM, keyPEM, ok, err := readPair(dir, certName, keyName)
	if err != nil || !ok {
		return tls.Certificate{}, false, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("%s: %w", filepath.Join(dir, certName), err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, false, fmt.Errorf("%s: %w", filepath.Join(dir, certName), err)
		}
	}
	return cert, true, nil
}

// checkVIN refuses names that would escape the vehicles directory or clash
// with the key file naming, and names that the vehicle listener refuses as
// a car's device id: a certificate issued for one would be turned away at
// the WebSocket upgrade.
func checkVIN(vin string) error {
	if vin == "" || vin == "." || vin == ".." || strings.ContainsAny(vin, `/\:`) ||
		strings.HasSuffix(vin+pemSuffix, keySuffix) || !filepath.IsLocal(vin) {
		return fmt.Errorf("%q: %w as a file name", vin, ErrBadVIN)
	}
	if !deviceid.Valid(deviceid.FromCommonName(vin)) {
		return fmt.Errorf("%q: %w: the vehicle listener accepts only names of %s (a '.' counts as '-')",
			vin, ErrBadVIN, deviceid.Rule)
	}
	return nil
}
