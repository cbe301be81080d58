// Package hostport checks the listen addresses of the configuration
// (host:port) at load time, so that -check-config refuses what a listener
// would refuse at start.
package hostport

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Check reports why addr cannot be listened on: it must be host:port with
// a port from 0 to 65535 (0 picks a free one) and a host that is empty
// (every interface), an IP address (IPv6 in brackets, with an optional
// zone) or a host name made of letters, digits, '-' and '.'.
func Check(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		if n, err := strconv.ParseUint(port, 10, 64); err == nil {
			return fmt.Errorf("%q: port %d is out of range (0 to 65535)", addr, n)
		}
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if strings.HasPrefix(addr, "[") {
		return fmt.Errorf("%q: %q is not an IPv6 address", addr, host)
	}
	if !validHostName(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

// validHostName reports whether name is a DNS host name: labels of
// letters, digits and '-' (not at either end), at most 63 bytes each,
// separated by dots, at most 253 bytes in all; a final dot is allowed.
func validHostName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
