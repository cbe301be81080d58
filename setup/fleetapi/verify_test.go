package fleetapi

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

func TestCheckSignedClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ca, err := certs.NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	caJSON, err := json.Marshal(string(ca.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	valid := `"hostname":"t.example.com","port":443,"exp":1900000000,"fields":{"Soc":{"interval_seconds":60}},"ca":` + string(caJSON)
	tests := []struct {
		name    string
		claims  string
		want    []string // prefixes of the problems, in order
		wantErr bool
	}{
		{"signed streaming config", `{` + valid + `,"iss":"x","aud":"` + TelemetryAudience + `"}`, nil, false},
		{"another audience", `{` + valid + `,"aud":"com.tesla.vehicle.X"}`, []string{`aud is com.tesla.vehicle.X, not "` + TelemetryAudience + `"`}, false},
		{"no audience, an unknown key", `{` + valid + `,"foo":1}`, []string{"aud is <nil>", "foo: not a key"}, false},
		{"not an object", `[1]`, []string{"aud is <nil>"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, err := CheckSignedClaims([]byte(tt.claims), now)
			if (err != nil) != tt.wantErr {
				t.Errorf("err %v, want an error: %v", err, tt.wantErr)
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("problems %q, want %q", problems, tt.want)
			}
			for i, p := range problems {
				if !strings.HasPrefix(p, tt.want[i]) {
					t.Errorf("problem %d: %q, want %q...", i, p, tt.want[i])
				}
			}
		})
	}
}

func TestLoadPublicKey(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pub, err := LoadPublicKey(write("pub.pem", pubPEM))
	if err != nil || !pub.Equal(&key.PublicKey) {
		t.Errorf("LoadPublicKey: %v, %v", pub, err)
	}
	priv := write("priv.pem", privPEM)
	if _, err := LoadPublicKey(priv); err == nil || !strings.HasPrefix(err.Error(), priv+": public key:") {
		t.Errorf("a private key: %v, want the file named", err)
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "none.pem")); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read public key:") {
		t.Errorf("a missing file: %v", err)
	}
	big := write("big.pem", slices.Repeat([]byte{'a'}, maxPublicKeyFile+1))
	if _, err := LoadPublicKey(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a file too large: %v", err)
	}
}
