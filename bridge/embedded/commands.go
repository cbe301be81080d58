package embedded

import (
	"context"
	"fmt"
	"math"
	"slices"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
)

// Command topics: the only topics under the protected prefix that clients
// other than the bridge may publish on, and only the clients named for it.

// CommandACL says which topic filters carry vehicle commands and who may
// publish on them.
type CommandACL struct {
	// Filters are the command topics, such as "tesla/+/command/+".
	Filters []string
	// Users may publish on them.
	Users []string
	// Anonymous lets clients without a user name publish on them (as far
	// as allow_anonymous lets them connect).
	Anonymous bool
}

// AllowCommands opens the command topics of acl to its users (and only
// them); before it is called, or with no filters, nobody but the bridge
// publishes under the protected prefixes. It may be called while the
// broker runs.
func (b *Broker) AllowCommands(acl CommandACL) {
	acl.Filters, acl.Users = slices.Clone(acl.Filters), slices.Clone(acl.Users)
	b.guard.commands.Store(&acl)
}

// mayCommand reports whether cl may publish on topic as a command.
func (g *guard) mayCommand(cl *mqtt.Client, t string) bool {
	acl := g.commands.Load()
	if acl == nil || !slices.ContainsFunc(acl.Filters, func(f string) bool { return topic.Match(f, t) }) {
		return false
	}
	user := string(cl.Properties.Username)
	if user == "" {
		return acl.Anonymous
	}
	return slices.Contains(acl.Users, user)
}

// Publication is a message a client published, with who published it.
type Publication struct {
	Topic   string
	Payload []byte
	// User is the publishing client's user name, "" for an anonymous one.
	User string
	// ClientID is the publishing client's id.
	ClientID string
	// Retained: the message carries the retain flag, or is a retained
	// message delivered on subscribing.
	Retained bool
}

// SubscribePublications calls handle for every message published on
// filter, with the publishing client's identity, until ctx ends. Unlike
// Subscribe it reports retained messages as such (commands must not be
// replayed from them). handle runs on the publisher's goroutine: it must
// not block.
func (b *Broker) SubscribePublications(ctx context.Context, filter string, handle func(Publication)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := int(b.subID.Add(1) % math.MaxInt32)
	err := b.server.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		if ctx.Err() != nil {
			return
		}
		p := Publication{Topic: pk.TopicName, Payload: slices.Clone(pk.Payload), ClientID: pk.Origin, Retained: pk.FixedHeader.Retain}
		if cl, ok := b.server.Clients.Get(pk.Origin); ok && !cl.Net.Inline {
			p.User = string(cl.Properties.Username)
		}
		handle(p)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	context.AfterFunc(ctx, func() {
		if err := b.server.Unsubscribe(filter, id); err != nil {
			b.log.Debug("unsubscribe", "filter", filter, "error", err)
		}
	})
	return nil
}
