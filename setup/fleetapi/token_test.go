package fleetapi

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyTelemetryToken: a token signed with another key is refused
// and names the key file; one signed with the key shows its claims and
// lists what is wrong with its config.
func TestVerifyTelemetryToken(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	token, err := SignTelemetryClaims(key, []byte(`{"hostname": "telemetry.example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	v := VerifyTelemetryToken(token, &other.PublicKey, "other.pem", now)
	if v.OK || v.Claims != nil || len(v.Findings) != 1 || !strings.Contains(v.Findings[0], "does not verify with the key in other.pem") {
		t.Errorf("another key: %+v", v)
	}

	v = VerifyTelemetryToken(token, &key.PublicKey, "key.pem", now)
	if v.OK || !strings.Contains(string(v.Claims), `  "hostname": "telemetry.example.com"`) {
		t.Errorf("the key: %+v", v)
	}
	if len(v.Findings) < 2 || v.Findings[0] != "the signature is valid: signed with the key in key.pem" || !strings.HasPrefix(v.Findings[1], "problem: ") {
		t.Errorf("findings %q: want the signature's verdict, then the config's problems (port, exp, fields missing)", v.Findings)
	}
}

// TestVerifyingKey: a private key file that is not there gives no key
// (the token's iss decides) unless the person named it.
func TestVerifyingKey(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "key.pem")
	if pub, err := VerifyingKey(missing, false, false); pub != nil || err != nil {
		t.Errorf("default key missing: %v, %v; want no key, no error", pub, err)
	}
	if _, err := VerifyingKey(missing, false, true); err == nil {
		t.Error("named key missing: no error")
	}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := SavePrivateKey(missing, key); err != nil {
		t.Fatal(err)
	}
	if pub, err := VerifyingKey(missing, false, true); err != nil || !pub.Equal(&key.PublicKey) {
		t.Errorf("private key's public half: %v, %v", pub, err)
	}
}
