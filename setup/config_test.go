package setup

import (
	"fmt"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"everything set", func(c *Config) {
			c.PublicHostname, c.ClientID, c.ClientSecret = "fleet.example.org", "id", "secret"
			c.RedirectURL, c.TrustIngress, c.Regions = "https://fleet.example.org/oauth/callback", true, []string{"EU", "cn"}
		}, ""},
		{"hostname with scheme", func(c *Config) { c.PublicHostname = "https://fleet.example.org" }, "setup.public_hostname: \"https://fleet.example.org\" has a scheme"},
		{"hostname with port", func(c *Config) { c.PublicHostname = "fleet.example.org:443" }, "has a port"},
		{"hostname an address", func(c *Config) { c.PublicHostname = "192.0.2.1" }, "is an IP address"},
		{"port zero", func(c *Config) { c.Port = 0 }, "setup.port: 0 is not a TCP port"},
		{"port too big", func(c *Config) { c.Port = 70000 }, "setup.port: 70000 is not a TCP port"},
		{"unknown region", func(c *Config) { c.Regions = []string{"na", "mars"} }, `setup.regions: "mars" is not a Tesla region: want na, eu or cn`},
		{"secret without id", func(c *Config) { c.ClientSecret = "s" }, "setup.client_secret: set without client_id"},
		{"redirect not callback", func(c *Config) { c.RedirectURL = "https://x.example/auth" }, "the path must end in /oauth/callback"},
		{"redirect relative", func(c *Config) { c.RedirectURL = "/callback" }, "want an http:// or https:// address"},
		{"ingress address", func(c *Config) { c.TrustIngress, c.IngressAddress = true, "supervisor" }, `setup.ingress_address: "supervisor" is not an IP address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.modify(&c)
			// As the configuration file's owner reports it.
			err := configerr.Prefix("setup", c.Validate())
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigYAML: the section reads from YAML with its documented keys.
func TestConfigYAML(t *testing.T) {
	src := `
public_hostname: fleet.example.org
port: 8443
password: hunter2
regions: [eu]
client_id: abc
client_secret: xyz
trust_ingress: true
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Port != 8443 || c.Password != "hunter2" || c.ClientSecret != "xyz" || c.Regions[0] != "eu" || c.IngressAddress != "172.30.32.2" {
		t.Errorf("decoded %#v", c)
	}
}

// TestSecretRedacted: secrets do not print.
func TestSecretRedacted(t *testing.T) {
	s := Secret("hunter2")
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "password", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), fmt.Sprintf("%+v", Config{Password: s}), logged.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if Secret("").String() != "" {
		t.Error("an empty secret prints as set")
	}
}
