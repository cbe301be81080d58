package fleetapi

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
)

// PublicKeyPath is where Tesla (and the owner's phone, when pairing) fetch
// the application's public key: https://<domain>/.well-known/….
const PublicKeyPath = "/.well-known/appspecific/com.tesla.3p.public-key.pem"

// GenerateKey returns a new P-256 key pair, the only kind Tesla accepts.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(p256, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	if _, _, err := keyBytes(key); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a SubjectPublicKeyInfo "PUBLIC KEY"
// PEM block: the file served at PublicKeyPath.
func MarshalPublicKeyPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	if !isP256Public(pub) {
		return nil, ErrNotP256
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads a P-256 private key from PEM: PKCS#8 ("PRIVATE
// KEY") or SEC1 ("EC PRIVATE KEY", what `openssl ecparam -genkey` writes; a
// preceding "EC PARAMETERS" block is skipped).
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("private key: no PEM block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("private key: PEM block %q: want PRIVATE KEY or EC PRIVATE KEY", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != p256 {
			return nil, fmt.Errorf("private key: %w", ErrNotP256)
		}
		return ec, nil
	}
}

// ParsePublicKeyPEM reads a P-256 public key from a SubjectPublicKeyInfo
// PEM block ("PUBLIC KEY").
func ParsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("public key: no PEM block found")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key: PEM block %q: want PUBLIC KEY", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok || ec.Curve != p256 {
		return nil, fmt.Errorf("public key: %w", ErrNotP256)
	}
	return ec, nil
}

// PublicKeyBytes returns pub as the 65-byte uncompressed point 0x04‖X‖Y.
func PublicKeyBytes(pub *ecdsa.PublicKey) ([]byte, error) {
	if !isP256Public(pub) {
		return nil, ErrNotP256
	}
	b, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return b, nil
}

// PublicKeyHex returns the lowercase hex of the uncompressed point, the form
// Tesla's partner_accounts/public_key endpoint answers with ("04…").
func PublicKeyHex(pub *ecdsa.PublicKey) (string, error) {
	b, err := PublicKeyBytes(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// LoadPrivateKey reads a PEM private key file (see ParsePrivateKeyPEM).
func LoadPrivateKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// LoadPublicKey reads a PEM public key file (see ParsePublicKeyPEM),
// refusing one over maxPublicKeyFile: a public key takes a few hundred
// bytes.
func LoadPublicKey(path string) (*ecdsa.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPublicKeyFile+1))
	if err == nil && len(data) > maxPublicKeyFile {
		err = fmt.Errorf("more than %d bytes", maxPublicKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	pub, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// maxPublicKeyFile bounds what LoadPublicKey reads.
const maxPublicKeyFile = 1 << 20

// SavePrivateKey writes key as PKCS#8 PEM to path, atomically and with mode
// 0600.
func SavePrivateKey(path string, key *ecdsa.PrivateKey) error {
	data, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, data, 0o600)
}

// LoadOrCreateKey loads the key at path, or generates one and saves it there
// when the file does not exist. created reports which happened.
func LoadOrCreateKey(path string) (key *ecdsa.PrivateKey, created bool, err error) {
	key, err = LoadPrivateKey(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if key, err = GenerateKey(); err != nil {
		return nil, false, err
	}
	if err := SavePrivateKey(path, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// WriteFileAtomic replaces path with data so that readers (and a crash) see
// either the old file or the new one, never a mix (atomicfile.Write).
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return atomicfile.Write(path, data, perm)
}
