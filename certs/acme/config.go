package acme

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// LetsEncrypt is the directory of Let's Encrypt's production CA, the
// default ACME server. Its root (ISRG Root X1) is in every system's trust
// store, so the "ca" computed for cars is known without configuration.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Config is the vehicle listener's ACME section (vehicle.acme).
type Config struct {
	// Enabled makes the vehicle listener obtain and renew its certificate
	// from the ACME server by the TLS-ALPN-01 challenge on its own port
	// (which must be reachable as <hostname>:443 from the internet).
	// Enabling it accepts the ACME server's terms of service.
	Enabled bool `yaml:"enabled"`
	// Email is the contact address given to the ACME server, which warns
	// there about problems with the certificate. Optional.
	Email string `yaml:"email"`
	// DirectoryURL is the ACME server's directory; Let's Encrypt
	// production (LetsEncrypt) when empty.
	DirectoryURL string `yaml:"directory_url"`
	// Hostnames are the DNS names the certificate covers; the setup page's
	// public hostname when empty. Only these names are ever requested.
	Hostnames []string `yaml:"hostnames"`
	// CacheDir keeps the account key and the certificates between runs
	// (mode 0700); <data dir>/acme when empty. Without it every restart
	// would ask for a new certificate and soon hit the CA's rate limits.
	CacheDir string `yaml:"cache_dir"`
	// RootCAFile is a PEM bundle of extra roots, for a private ACME server
	// whose root the system does not trust (such as step-ca): it is
	// trusted for the ACME server's HTTPS and for computing the cars' "ca".
	RootCAFile string `yaml:"root_ca_file"`
}

// Directory returns the ACME directory URL in effect.
func (c Config) Directory() string {
	if c.DirectoryURL == "" {
		return LetsEncrypt
	}
	return c.DirectoryURL
}

// Validate reports the first setting that cannot work. Keys are named
// relative to the section ("hostnames", not "vehicle.acme.hostnames"); the
// configuration's owner adds the prefix (see package configerr). Nothing is checked when ACME is disabled.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.Email != "" {
		if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
			return configerr.Errorf("email", "%q is not a plain e-mail address, e.g. you@example.com", c.Email)
		}
	}
	if c.DirectoryURL != "" {
		u, err := url.Parse(c.DirectoryURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return configerr.Errorf("directory_url", "%q is not an https:// URL, e.g. %s", c.DirectoryURL, LetsEncrypt)
		}
	}
	for _, h := range c.Hostnames {
		if err := ValidateHostname(h); err != nil {
			return configerr.Errorf("hostnames", "%w", err)
		}
	}
	return nil
}

// ValidateHostname checks that h is a DNS name an ACME server can issue a
// certificate for: no scheme, port, path, wildcard or IP address, and at
// least two labels.
func ValidateHostname(h string) error {
	switch {
	case h == "":
		return errors.New("empty name: want the DNS name cars connect to, e.g. telemetry.example.com")
	case strings.Contains(h, "://"):
		return fmt.Errorf("%q has a scheme: want only the name, e.g. telemetry.example.com", h)
	case strings.ContainsAny(h, "/?#@:"):
		return fmt.Errorf("%q has a port or path: want only the name, e.g. telemetry.example.com", h)
	case strings.HasPrefix(h, "*"):
		return fmt.Errorf("%q is a wildcard: TLS-ALPN-01 cannot prove wildcards; name the host", h)
	case net.ParseIP(h) != nil:
		return fmt.Errorf("%q is an IP address: cars need a DNS name", h)
	case !strings.Contains(strings.Trim(h, "."), "."):
		return fmt.Errorf("%q is not a public DNS name (it has one label)", h)
	case strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%q contains spaces or control characters", h)
	}
	return nil
}
