package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs/acme"
)

func TestACMEConfig(t *testing.T) {
	tests := []struct {
		name, yaml, want string // want "" = valid
	}{
		{"enabled with the public hostname", "vehicle:\n  acme:\n    enabled: true\n    email: me@example.com\nsetup:\n  public_hostname: car.example.com\n", ""},
		{"enabled with hostnames", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [car.example.com, Other.example.com]\nsetup:\n  public_hostname: other.example.com\n", ""},
		{"disabled needs nothing", "vehicle:\n  acme:\n    enabled: false\n", ""},
		{"unknown key", "vehicle:\n  acme:\n    enable: true\n", `unknown key "enable"`},
		{"no name at all", "vehicle:\n  acme:\n    enabled: true\n", "vehicle.acme.hostnames: empty, and setup.public_hostname is not set"},
		{"public hostname not covered", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [car.example.com]\nsetup:\n  public_hostname: other.example.com\n", `setup.public_hostname "other.example.com" is not among vehicle.acme.hostnames`},
		{"with cert_file", "vehicle:\n  cert_file: a.pem\n  key_file: a.key\n  acme:\n    enabled: true\nsetup:\n  public_hostname: car.example.com\n", "choose one"},
		{"bad directory", "vehicle:\n  acme:\n    enabled: true\n    directory_url: ftp://x\nsetup:\n  public_hostname: car.example.com\n", "vehicle.acme.directory_url"},
		{"bad hostname", "vehicle:\n  acme:\n    enabled: true\n    hostnames: [\"car.example.com:443\"]\n", "vehicle.acme.hostnames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Vehicle.Listen == "" {
					t.Error("vehicle.listen lost its default next to vehicle.acme")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestACMEConfigDefaults(t *testing.T) {
	c := Config{DataDir: "/data", Vehicle: VehicleConfig{ACME: acme.Config{Enabled: true}}}
	c.Setup.PublicHostname = "car.example.com"
	got := c.ACME()
	if !slices.Equal(got.Hostnames, []string{"car.example.com"}) || got.CacheDir != filepath.Join("/data", "acme") || got.Directory() != acme.LetsEncrypt {
		t.Errorf("defaults: %+v", got)
	}
	c.Vehicle.ACME.Hostnames, c.Vehicle.ACME.CacheDir = []string{"x.example.com"}, "/cache"
	got = c.ACME()
	if !slices.Equal(got.Hostnames, []string{"x.example.com"}) || got.CacheDir != "/cache" {
		t.Errorf("explicit values replaced: %+v", got)
	}
}
