package embedded

import (
	"bytes"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// guard is the broker hook that decides who may connect and what clients
// may publish. Only the bridge (the in-process inline client, which mochi
// does not check) writes under the protected prefixes; every client may
// subscribe to anything.
type guard struct {
	mqtt.HookBase
	server    *mqtt.Server
	users     map[string][]byte // name → password or bcrypt hash
	anonymous Anonymous
	protected atomic.Pointer[[]string]   // "<prefix>/", one per protected prefix
	commands  atomic.Pointer[CommandACL] // the exception: command topics (commands.go)
	owned     ownedTopics                // topics whose contents only the bridge writes (owned.go)
	log       *slog.Logger
}

func newGuard(cfg *Config, log *slog.Logger) *guard {
	g := &guard{
		users:     make(map[string][]byte, len(cfg.Users)),
		anonymous: cfg.AllowAnonymous,
		log:       log,
	}
	for _, u := range cfg.Users {
		g.users[u.Name] = []byte(u.Password)
	}
	return g
}

// protect reserves prefix and everything under it for the bridge. It may
// be called while the broker runs.
func (g *guard) protect(prefix string) {
	for {
		old := g.protected.Load()
		var list []string
		if old != nil {
			list = slices.Clone(*old)
		}
		list = append(list, prefix+"/")
		if g.protected.CompareAndSwap(old, &list) {
			return
		}
	}
}

func (g *guard) ID() string { return "fleet2mqtt-guard" }

func (g *guard) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnect refuses a client whose last will would publish under a
// protected prefix: mochi does not check wills against the ACL, and such a
// will could, for example, declare the bridge offline.
func (g *guard) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.Connect.WillFlag && (!g.mayPublish(pk.Connect.WillTopic) || g.owned.owns(pk.Connect.WillTopic)) {
		g.log.Warn("refused MQTT client: last will on a topic only the bridge writes",
			"client", cl.ID, "remote", cl.Net.Remote, "will_topic", pk.Connect.WillTopic)
		if err := g.server.SendConnack(cl, packets.ErrNotAuthorized, false, nil); err != nil {
			return err
		}
		return packets.ErrNotAuthorized
	}
	return nil
}

// OnConnectAuthenticate admits a client with a known user name and its
// password, or without credentials as allow_anonymous says.
func (g *guard) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	name, password := pk.Connect.Username, pk.Connect.Password
	if len(name) == 0 && len(password) == 0 {
		if anonymousAllowed(g.anonymous, cl.Net.Remote) {
			return true
		}
		g.log.Info("refused anonymous MQTT client", "remote", cl.Net.Remote, "allow_anonymous", string(g.anonymous))
		return false
	}
	if stored, ok := g.users[string(name)]; ok && passwordMatches(stored, password) {
		return true
	}
	g.log.Info("refused MQTT client: wrong user name or password", "remote", cl.Net.Remote, "user", string(name))
	return false
}

// OnACLCheck lets every client read everything and publish anywhere except
// under the protected prefixes and on $ topics (the broker's own).
func (g *guard) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return g.mayRead(cl, topic)
	}
	if cl.Net.Inline {
		return true
	}
	if g.mayPublish(topic) || g.mayCommand(cl, topic) {
		return true
	}
	g.log.Debug("refused MQTT publish", "client", cl.ID, "remote", cl.Net.Remote, "topic", topic)
	return false
}

// mayRead reports whether a client may receive the messages of topic:
// every client may read everything. The bridge's own deliveries (fanout)
// ask here too, since they do not pass through mochi's ACL check.
func (g *guard) mayRead(*mqtt.Client, string) bool { return true }

// bridgeOnly reports whether only the bridge may publish on topic: a
// protected prefix (not $ topics, which mochi itself writes).
func (g *guard) bridgeOnly(topic string) bool {
	return !strings.HasPrefix(topic, "$") && !g.mayPublish(topic)
}

// mayPublish reports whether a client may publish on topic.
func (g *guard) mayPublish(topic string) bool {
	if strings.HasPrefix(topic, "$") {
		return false
	}
	list := g.protected.Load()
	if list == nil {
		return true
	}
	for _, p := range *list {
		if strings.HasPrefix(topic, p) || topic == p[:len(p)-1] {
			return false
		}
	}
	return true
}

// anonymousAllowed decides whether a client without credentials may
// connect from remote (host:port, as the listener reports it).
func anonymousAllowed(policy Anonymous, remote string) bool {
	switch policy {
	case AnonymousAlways:
		return true
	case AnonymousLoopback:
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			return false
		}
		addr, err := netip.ParseAddr(host)
		return err == nil && addr.Unmap().IsLoopback()
	}
	return false
}

// passwordMatches compares a given password with a stored one: a bcrypt
// hash, or clear text compared in constant time.
func passwordMatches(stored, given []byte) bool {
	if isBcrypt(stored) {
		return bcrypt.CompareHashAndPassword(stored, given) == nil
	}
	return subtle.ConstantTimeCompare(stored, given) == 1
}

func isBcrypt(p []byte) bool {
	return bytes.HasPrefix(p, []byte("$2a$")) || bytes.HasPrefix(p, []byte("$2b$")) || bytes.HasPrefix(p, []byte("$2y$"))
}
