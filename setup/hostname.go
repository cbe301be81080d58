package setup

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// normalizeHost turns what people paste into the public hostname field
// into the bare, lower-case DNS name fleet2mqtt stores: a scheme, a
// trailing slash or dot, upper case and port 443 (or port, the one the
// cars are told to dial) are dropped. Anything that cannot be the name
// alone, such as another port or a path, is refused with one sentence
// that says what to enter instead.
func normalizeHost(raw string, port int) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", fmt.Errorf("enter the public hostname: the DNS name your cars will connect to, such as telemetry.example.com")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return "", fmt.Errorf("the public hostname %q is not a web address: enter the name alone, such as telemetry.example.com", s)
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("the public hostname %q is more than a name: enter the name alone, such as %s", s, u.Hostname())
		}
		s = u.Host
	}
	s = strings.TrimSuffix(s, "/")
	if strings.ContainsAny(s, "/@?# ") {
		return "", fmt.Errorf("the public hostname %q is more than a name: enter the name alone, such as telemetry.example.com", s)
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || (n != 443 && n != port) {
			dial := "cars and Tesla always connect on port 443"
			if port != 443 {
				dial = fmt.Sprintf("Tesla fetches the key on port 443 and the cars dial port %d (setup.port)", port)
			}
			return "", fmt.Errorf("port %s cannot be used in the public hostname: %s, so enter the name alone (%s) and forward port 443 to fleet2mqtt", p, dial, strings.ToLower(h))
		}
		s = h
	}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if err := fleetapi.ValidateDomain(s); err != nil {
		return "", fmt.Errorf("the public hostname cannot be used: %s; enter the DNS name your cars will connect to, such as telemetry.example.com", strings.TrimPrefix(err.Error(), "domain: "))
	}
	return s, nil
}

// bareHost is the name part of whatever was typed, for showing the origin
// while the answer is still refused: never a doubled scheme, a path or a
// port. The page script does the same as the owner types.
func bareHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], ":") {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}
