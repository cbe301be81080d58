package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// BrokerClient returns how a command connects to the configured broker as
// a client of its own (the embedded broker of a running fleet2mqtt, or the
// external one), under a client id of idPrefix and a random suffix, and
// how to name the broker in messages.
func (cfg *Config) BrokerClient(idPrefix string) (external.Config, string, error) {
	var ec external.Config
	var where string
	switch cfg.MQTT.Broker {
	case BrokerExternal:
		ec = cfg.MQTT.External
		where = "the broker at " + ec.URL
	default:
		m := cfg.MQTT.Embedded
		if m.Listen == "" {
			return ec, "", errors.New("mqtt.embedded.listen is empty: the embedded broker has no plain MQTT listener to connect to; set one (such as 127.0.0.1:1883) and restart fleet2mqtt")
		}
		addr := loopbackAddr(m.Listen)
		ec.URL = "mqtt://" + addr
		where = "the embedded broker of fleet2mqtt at " + addr + " (is fleet2mqtt running?)"
		if m.AllowAnonymous == embedded.AnonymousNever {
			u, ok := plainUser(m.Users)
			if !ok {
				return ec, "", errors.New("mqtt.embedded.allow_anonymous is never and no user of mqtt.embedded.users has a plain password to connect with")
			}
			ec.Username, ec.Password = u.Name, external.Secret(u.Password)
		}
	}
	// Never the running bridge's client id: the broker would disconnect it.
	var id [4]byte
	_, _ = rand.Read(id[:])
	ec.ClientID = idPrefix + hex.EncodeToString(id[:])
	ec.SessionExpiry = time.Second
	ec = ec.WithDefaults()
	if err := ec.Validate(); err != nil {
		return ec, "", configerr.Prefix("mqtt.external", err)
	}
	return ec, where, nil
}

// plainUser returns the first user whose password is not a bcrypt hash.
func plainUser(users []embedded.User) (embedded.User, bool) {
	for _, u := range users {
		if !strings.HasPrefix(u.Password.Reveal(), "$2") {
			return u, true
		}
	}
	return embedded.User{}, false
}

// loopbackAddr is the address to connect to a listener on listen from
// this machine: its host, or 127.0.0.1 for a wildcard or missing host.
func loopbackAddr(listen string) string {
	h, p, err := net.SplitHostPort(listen)
	if err != nil || h == "" || h == "::" || h == "0.0.0.0" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}
