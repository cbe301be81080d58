package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// ss256Vector is one entry of testdata/tesla-ss256/vectors.json.
type ss256Vector struct {
	Name             string          `json:"name"`
	PrivateScalarHex string          `json:"private_scalar_hex"`
	Claims           json.RawMessage `json:"claims_before_signing"`
	Token            string          `json:"token"`
}

func loadVector(t *testing.T, name string) ss256Vector {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/tesla-ss256/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []ss256Vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	for _, v := range file.Vectors {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no vector %q", name)
	return ss256Vector{}
}

// vectorKeyFiles writes the vector's key as PKCS#8 and as the SEC1 PEM
// that `openssl ecparam -name prime256v1 -genkey -noout` writes.
func vectorKeyFiles(t *testing.T, v ss256Vector) (pkcs8, sec1 string, key *ecdsa.PrivateKey) {
	t.Helper()
	scalar, err := hex.DecodeString(v.PrivateScalarHex)
	if err != nil {
		t.Fatal(err)
	}
	key, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p8, err := fleetapi.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, sec1 = filepath.Join(dir, "pkcs8.pem"), filepath.Join(dir, "sec1.pem")
	writeTestFile(t, pkcs8, p8)
	writeTestFile(t, sec1, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	return pkcs8, sec1, key
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runCmd runs the binary's command line with stdin as standard input.
func runCmd(t *testing.T, in string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(in)
	defer func() { stdin = old }()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestSignConfigVector signs Tesla's vector config: the token must come
// out byte for byte, from a file or standard input, with either key form.
// The vector's exp is in the past and its ca a placeholder, so it takes
// --force, and the problems are still reported.
func TestSignConfigVector(t *testing.T) {
	v := loadVector(t, "telemetry_config_jws")
	pkcs8, sec1, _ := vectorKeyFiles(t, v)
	claimsFile := filepath.Join(t.TempDir(), "config.json")
	writeTestFile(t, claimsFile, v.Claims)
	empty := t.TempDir()

	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"pkcs8 key, file", "", []string{"--key", pkcs8, claimsFile}},
		{"sec1 key, file", "", []string{"--key", sec1, claimsFile}},
		{"standard input", string(v.Claims), []string{"--key", sec1}},
		{"standard input named", string(v.Claims), []string{"--key", pkcs8, "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"sign-config", "--data-dir", empty, "--force"}, tt.args...)
			code, out, errOut := runCmd(t, tt.stdin, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if out != v.Token+"\n" {
				t.Errorf("token:\n got %q\nwant %q", out, v.Token+"\n")
			}
			for _, want := range []string{"warning: exp:", "warning: ca:"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}

	t.Run("refused without --force", func(t *testing.T) {
		code, out, errOut := runCmd(t, "", "sign-config", "--key", pkcs8, claimsFile)
		if code != 1 || out != "" {
			t.Fatalf("exit %d, stdout %q: want 1 and no token", code, out)
		}
		for _, want := range []string{"problem: exp:", "is not in the future", "problem: ca:", "not signed"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})

	t.Run("verify", func(t *testing.T) {
		code, out, errOut := runCmd(t, "", "sign-config", "--data-dir", empty, "--key", sec1, "--verify", v.Token)
		if code != 1 {
			t.Errorf("exit %d, want 1 (the vector's exp is past)", code)
		}
		if !strings.Contains(errOut, "signature is valid: signed with the key in "+sec1) || !strings.Contains(errOut, "problem: exp:") {
			t.Errorf("stderr:\n%s", errOut)
		}
		if !strings.Contains(out, `"hostname": "telemetry.example.com"`) || !strings.Contains(out, `"aud": "com.tesla.fleet.TelemetryClient"`) {
			t.Errorf("claims not printed:\n%s", out)
		}
	})
}

// TestSignConfigValid signs a config that needs no --force and checks the
// token with --verify and with fleetapi.
func TestSignConfigValid(t *testing.T) {
	dataDir := t.TempDir()
	key, err := fleetapi.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// The setup page's key is the default.
	if err := os.MkdirAll(filepath.Dir(setup.KeyPath(dataDir)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fleetapi.SavePrivateKey(setup.KeyPath(dataDir), key); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(fleetapi.ConfigLifetime).Unix()
	config := fmt.Sprintf(`{
  "hostname": "telemetry.example.com",
  "port": 443,
  "ca": %q,
  "exp": %d,
  "fields": {"Soc": {"interval_seconds": 60, "minimum_delta": 0.5}, "Location": {"interval_seconds": 10}},
  "alert_types": ["service"],
  "delivery_policy": "latest",
  "prefer_typed": true
}`, ca.CertPEM, exp)

	code, token, errOut := runCmd(t, config, "sign-config", "--data-dir", dataDir)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	token = strings.TrimSuffix(token, "\n")
	if strings.Contains(token, "\n") {
		t.Fatalf("token is not one line: %q", token)
	}
	claims, err := fleetapi.VerifyJWS(token, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(claims, &got); err != nil {
		t.Fatal(err)
	}
	if got["port"] != float64(443) || got["prefer_typed"] != true || got["ca"] != string(ca.CertPEM) || got["aud"] != fleetapi.TelemetryAudience {
		t.Errorf("claims changed on the way: %s", claims)
	}

	code, _, errOut = runCmd(t, "", "sign-config", "--data-dir", dataDir, "--verify", token)
	if code != 0 || !strings.Contains(errOut, "accept") {
		t.Errorf("verify: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCmd(t, token, "sign-config", "--data-dir", dataDir, "--verify", "-")
	if code != 0 {
		t.Errorf("verify from stdin: exit %d: %s", code, errOut)
	}

	// Another key, a tampered token.
	other, err := fleetapi.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := fleetapi.MarshalPublicKeyPEM(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "pub.pem")
	writeTestFile(t, pubFile, otherPub)
	code, _, errOut = runCmd(t, "", "sign-config", "--data-dir", dataDir, "--pub", pubFile, "--verify", token)
	if code != 1 || !strings.Contains(errOut, "iss names another key") {
		t.Errorf("verify with another key: exit %d: %s", code, errOut)
	}
	last := token[len(token)-2:]
	flipped := strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, last)
	code, _, errOut = runCmd(t, "", "sign-config", "--data-dir", dataDir, "--verify", token[:len(token)-2]+flipped)
	if code != 1 || !strings.Contains(errOut, "does not verify") {
		t.Errorf("verify a tampered token: exit %d: %s", code, errOut)
	}
}

func TestSignConfigVerifyOtherAudience(t *testing.T) {
	v := loadVector(t, "jwt_verify")
	code, _, errOut := runCmd(t, "", "sign-config", "--data-dir", t.TempDir(), "--verify", v.Token)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"valid for the key named in iss", `aud is com.tesla.vehicle.M3TERASHIMABUCK01, not "com.tesla.fleet.TelemetryClient"`, "foo: not a key of the streaming config"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestSignConfigErrors(t *testing.T) {
	v := loadVector(t, "telemetry_config_jws")
	pkcs8, _, _ := vectorKeyFiles(t, v)
	yamlDataDir := t.TempDir()
	yamlConfig := filepath.Join(t.TempDir(), "fleet2mqtt.yaml")
	writeTestFile(t, yamlConfig, []byte("data_dir: "+yamlDataDir+"\n"))
	badConfig := filepath.Join(t.TempDir(), "bad.yaml")
	writeTestFile(t, badConfig, []byte("mqtt: [\n"))
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no key in the data dir", "{}", []string{"--data-dir", t.TempDir()}, 1, "no key at"},
		{"not JSON", "hostname: x", []string{"--key", pkcs8}, 1, "config is not a JSON object"},
		{"JSON array", "[1]", []string{"--key", pkcs8}, 1, "config is not a JSON object"},
		{"missing config file", "", []string{"--key", pkcs8, filepath.Join(t.TempDir(), "nope.json")}, 1, "read telemetry config"},
		{"pub without verify", "{}", []string{"--key", pkcs8, "--pub", pkcs8}, 1, "--pub only goes with --verify"},
		{"two files", "", []string{"a.json", "b.json"}, 2, `unexpected argument "b.json"`},
		{"data dir from the configuration", "{}", []string{"--config", yamlConfig}, 1, "no key at " + filepath.Join(yamlDataDir, "setup")},
		{"bad configuration", "{}", []string{"--config", badConfig}, 1, "config " + badConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, tt.stdin, append([]string{"sign-config"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q: want %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}
