package setup

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/secret"
)

// Config is the "setup" section of the configuration file: the setup page
// that takes a Tesla account from nothing to cars streaming.
type Config struct {
	// PublicHostname is the DNS name under which cars and Tesla reach the
	// vehicle listener, such as telemetry.example.com: the domain of the
	// Tesla application, of the pairing link and of the cars' streaming
	// config. The listener's certificate must name it. Empty: the setup
	// page asks for it.
	PublicHostname string `yaml:"public_hostname"`
	// Port is the TCP port cars connect to on PublicHostname. Default 443.
	// Tesla and phones fetch the public key on port 443 whatever it is.
	Port int `yaml:"port"`
	// Password protects the setup page. Empty: a password is generated at
	// the first start, printed once on standard error and kept hashed in
	// the data directory (delete setup/password.json there to get a new
	// one).
	Password Secret `yaml:"password"`
	// Regions are the Tesla regions the application registers in: na
	// (North America, Asia-Pacific), eu (Europe, Middle East, Africa),
	// cn (China). Default na and eu. The page lets the owner change them.
	Regions []string `yaml:"regions"`
	// ClientID and ClientSecret are the Tesla application's credentials
	// from developer.tesla.com. Empty: entered on the setup page and kept
	// in the data directory (mode 0600).
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// RedirectURL is the OAuth callback entered as Allowed Redirect URI
	// of the Tesla application. Empty:
	// https://<public hostname>/oauth/callback, served by the vehicle
	// listener. Set it only when the vehicle listener's /oauth/callback is
	// reached at another address. A value ending in /callback but not in
	// /oauth/callback (the setup page's own address, as earlier versions
	// used) is no longer used: the page shows what to change at Tesla.
	RedirectURL string `yaml:"redirect_url"`
	// TrustIngress admits Home Assistant ingress without a password:
	// requests from IngressAddress carrying X-Ingress-Path, which Home
	// Assistant has authenticated already. The add-on sets it.
	TrustIngress bool `yaml:"trust_ingress"`
	// IngressAddress is the address ingress requests come from: Home
	// Assistant's Supervisor, 172.30.32.2.
	IngressAddress string `yaml:"ingress_address"`
}

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Port:           443,
		Regions:        []string{string(fleetapi.RegionNA), string(fleetapi.RegionEU)},
		IngressAddress: "172.30.32.2",
	}
}

// Validate reports every setting that cannot work, each naming its key
// relative to this section ("port", see package configerr).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, configerr.Errorf(key, format, args...))
	}
	if c.PublicHostname != "" {
		if err := fleetapi.ValidateDomain(c.PublicHostname); err != nil {
			bad("public_hostname", "%v", strings.TrimPrefix(err.Error(), "domain: "))
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port", "%d is not a TCP port: want 1 to 65535 (usually 443)", c.Port)
	}
	if _, err := parseRegions(c.Regions); err != nil {
		bad("regions", "%v", err)
	}
	if c.ClientSecret != "" && c.ClientID == "" {
		bad("client_secret", "set without client_id: set both or neither")
	}
	if c.RedirectURL != "" {
		if err := checkRedirectURL(c.RedirectURL); err != nil {
			bad("redirect_url", "%v", err)
		}
	}
	if c.TrustIngress || c.IngressAddress != "" {
		if _, err := netip.ParseAddr(c.IngressAddress); err != nil {
			bad("ingress_address", "%q is not an IP address (Home Assistant's Supervisor is 172.30.32.2)", c.IngressAddress)
		}
	}
	return errors.Join(errs...)
}

// parseRegions reads region names; empty means none.
func parseRegions(names []string) ([]fleetapi.Region, error) {
	var out []fleetapi.Region
	for _, n := range names {
		r, err := fleetapi.ParseRegion(n)
		if err != nil {
			return nil, fmt.Errorf("%q is not a Tesla region: want na, eu or cn", n)
		}
		if !containsRegion(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func containsRegion(rs []fleetapi.Region, r fleetapi.Region) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// checkRedirectURL accepts an absolute http or https URL whose path ends
// in /oauth/callback, where the vehicle listener takes Tesla's answer, or
// in /callback, the setup page's own address of earlier versions (kept so
// that an old configuration still starts; it is not used, see
// isLegacyRedirect).
func checkRedirectURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: want an http:// or https:// address", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: want no query or fragment", s)
	case !strings.HasSuffix(u.Path, "/callback"):
		return fmt.Errorf("%q: the path must end in %s, where the vehicle listener takes Tesla's answer", s, CallbackPath)
	}
	return nil
}

// isLegacyRedirect reports whether a redirect URI is the setup page's own
// callback of earlier versions rather than the vehicle listener's.
func isLegacyRedirect(s string) bool {
	u, err := url.Parse(s)
	return err != nil || !strings.HasSuffix(u.Path, CallbackPath)
}

// Secret is a string that does not show itself in logs, printed
// configuration or encoded output (it reads [redacted]).
type Secret = secret.Secret
