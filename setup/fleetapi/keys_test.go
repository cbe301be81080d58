package fleetapi_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	key, err := fleetapi.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := fleetapi.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(priv, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("private key PEM starts %q", priv[:30])
	}
	back, err := fleetapi.ParsePrivateKeyPEM(priv)
	if err != nil || !back.Equal(key) {
		t.Fatalf("private key round trip: %v", err)
	}
	pub, err := fleetapi.MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pub, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("public key PEM starts %q", pub[:30])
	}
	pubBack, err := fleetapi.ParsePublicKeyPEM(pub)
	if err != nil || !pubBack.Equal(&key.PublicKey) {
		t.Fatalf("public key round trip: %v", err)
	}
	raw, _ := fleetapi.PublicKeyBytes(&key.PublicKey)
	hexKey, _ := fleetapi.PublicKeyHex(&key.PublicKey)
	if len(raw) != 65 || raw[0] != 4 || len(hexKey) != 130 || !strings.HasPrefix(hexKey, "04") {
		t.Fatalf("uncompressed point %d bytes, hex %q", len(raw), hexKey)
	}
}

func TestParsePrivateKeyForms(t *testing.T) {
	key, _ := fleetapi.GenerateKey()
	sec1, _ := x509.MarshalECPrivateKey(key)
	// What `openssl ecparam -name prime256v1 -genkey` writes without -noout.
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	for name, data := range map[string][]byte{
		"sec1":            sec1PEM,
		"sec1 with param": append(params, sec1PEM...),
	} {
		got, err := fleetapi.ParsePrivateKeyPEM(data)
		if err != nil || !got.Equal(key) {
			t.Errorf("%s: %v", name, err)
		}
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	for name, data := range map[string][]byte{
		"empty":       nil,
		"not pem":     []byte("hello"),
		"p384":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}),
		"rsa":         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}),
		"certificate": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"garbage der": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := fleetapi.ParsePrivateKeyPEM(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := fleetapi.ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})); !errors.Is(err, fleetapi.ErrNotP256) {
		t.Errorf("rsa public key: %v", err)
	}
	if _, err := fleetapi.ParsePublicKeyPEM(sec1PEM); err == nil {
		t.Error("private key accepted as public key")
	}
	if _, err := fleetapi.MarshalPrivateKeyPEM(p384); !errors.Is(err, fleetapi.ErrNotP256) {
		t.Errorf("marshal p384: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tesla-key.pem")
	key, created, err := fleetapi.LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	again, created, err := fleetapi.LoadOrCreateKey(path)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("load: %v, created %v", err, created)
	}
	// Replacing keeps 0600 and leaves no temporary file behind.
	other, _ := fleetapi.GenerateKey()
	if err := fleetapi.SavePrivateKey(path, other); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(entries))
	}
	loaded, err := fleetapi.LoadPrivateKey(path)
	if err != nil || !loaded.Equal(other) {
		t.Fatalf("reload: %v", err)
	}
	// A corrupt file is an error, not a reason to make a new key.
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := fleetapi.LoadOrCreateKey(path); err == nil {
		t.Fatal("corrupt key file replaced silently")
	}
	// Writing into a missing directory fails cleanly.
	if err := fleetapi.WriteFileAtomic(filepath.Join(dir, "nope", "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestFileTokenStore(t *testing.T) {
	dir := t.TempDir()
	store := fleetapi.FileTokenStore{Path: filepath.Join(dir, "token.json")}
	tok, err := store.LoadToken()
	if err != nil || tok != nil {
		t.Fatalf("empty store: %v, %v", tok, err)
	}
	want := &oauth2.Token{AccessToken: "a", TokenType: "Bearer", RefreshToken: "r", Expiry: time.Unix(1_900_000_000, 0).UTC()}
	if err := store.SaveToken(want); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(store.Path)
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", info.Mode().Perm())
	}
	got, err := store.LoadToken()
	if err != nil || got.AccessToken != "a" || got.RefreshToken != "r" || got.TokenType != "Bearer" || !got.Expiry.Equal(want.Expiry) {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	os.WriteFile(store.Path, []byte("{"), 0o600)
	if _, err := store.LoadToken(); err == nil {
		t.Fatal("corrupt token file loaded")
	}
}
