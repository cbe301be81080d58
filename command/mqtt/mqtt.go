// Package mqtt carries vehicle commands from MQTT to the command engine:
// the command topics <prefix>/<VIN>/command/<name> (Tesla's REST command
// names, a JSON object of arguments or a plain value for commands of one
// argument) and the per-control topics <prefix>/<VIN>/set/<control> that
// the Home Assistant controls publish on (ON, 80, LOCK, PRESS). Each
// outcome is published on the topic the command came on with /result
// appended: the engine's Result as JSON (ok, reason in words, fault,
// duration, woken), not retained.
//
// Who may publish commands is the broker's to enforce (the embedded
// broker's ACL, see embedded.CommandACL; an external broker's own ACL).
// The handler checks again for the embedded broker, whose clients it
// knows by user name, and refuses retained commands: a retained command
// would run again at every restart. The embedded broker flags them; an
// external broker is asked not to send retained messages on subscribing
// and to flag messages published retained (see External).
package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// Message is a command published by an MQTT client.
type Message struct {
	Topic   string
	Payload []byte
	// User is the publisher's user name; "" for an anonymous client.
	User string
	// Known: the broker told who published (the embedded broker); an
	// external broker does not, and its own ACL decides.
	Known bool
	// Retained: delivered as a retained message.
	Retained bool
}

// Source delivers the messages published on a topic filter.
type Source interface {
	Subscribe(ctx context.Context, filter string, handle func(Message)) error
}

// Embedded is the embedded broker as a Source: it names each publisher.
type Embedded struct{ Broker *embedded.Broker }

// Subscribe implements Source.
func (e Embedded) Subscribe(ctx context.Context, filter string, handle func(Message)) error {
	return e.Broker.SubscribePublications(ctx, filter, func(p embedded.Publication) {
		handle(Message{Topic: p.Topic, Payload: p.Payload, User: p.User, Known: true, Retained: p.Retained})
	})
}

// External is an external broker as a Source: who published is unknown
// (the broker's ACL decides who may), and the identity logged is "mqtt".
//
// A Subscriber that is a RetainAwareSubscriber (*external.Client) is
// asked for no retained messages on subscribing (MQTT 5 Retain Handling
// 2: a command retained on the broker never runs, at a start or a
// reconnection) and for each message's retain flag as published, so that
// a command published with it is refused as on the embedded broker.
// Another Subscriber cannot tell retained messages: it gets what its
// broker sends.
type External struct{ Subscriber pubsub.Subscriber }

// RetainAwareSubscriber subscribes with MQTT 5 options and tells each
// message's retain flag: *external.Client.
type RetainAwareSubscriber interface {
	SubscribeWith(ctx context.Context, filter string, opts external.SubscribeOptions, handle func(external.Delivery)) error
}

var _ RetainAwareSubscriber = (*external.Client)(nil)

// Subscribe implements Source.
func (e External) Subscribe(ctx context.Context, filter string, handle func(Message)) error {
	if r, ok := e.Subscriber.(RetainAwareSubscriber); ok {
		return r.SubscribeWith(ctx, filter, external.SubscribeOptions{NoRetained: true}, func(d external.Delivery) {
			handle(Message{Topic: d.Topic, Payload: d.Payload, Retained: d.Retain})
		})
	}
	return e.Subscriber.Subscribe(ctx, filter, func(topic string, payload []byte) {
		handle(Message{Topic: topic, Payload: payload})
	})
}

// Executor runs commands: *command.Engine.
type Executor interface {
	Execute(ctx context.Context, req command.Request) command.Result
}

// Budget is an Executor that can tell, spending nothing, that a car's
// command budget is spent (*command.Engine): when every slot is taken, a
// command for such a car is answered with the rate limit rather than
// "too many commands in flight".
type Budget interface {
	RateLimited(vin string) error
}

var _ Budget = (*command.Engine)(nil)

// Config configures a Handler.
type Config struct {
	// Prefix is the topic prefix (mqtt.prefix), such as "tesla".
	Prefix string
	// Settings are the commands section: enabled, categories, users.
	Settings command.Settings
	Engine   Executor
	Source   Source
	// Publisher receives the results.
	Publisher pubsub.Publisher
	// QoS of the results.
	QoS byte
	// MaxInFlight bounds the commands running at once (a command may wait
	// a minute for a car to wake); DefaultMaxInFlight when 0.
	MaxInFlight int
}

// DefaultMaxInFlight is Config.MaxInFlight when unset.
const DefaultMaxInFlight = 32

// Handler subscribes to the command topics and runs what arrives.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	slots chan struct{}
	wg    sync.WaitGroup
}

// New returns a Handler that logs to log (nil discards); Start starts
// it.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	if cfg.Prefix == "" || cfg.Engine == nil || cfg.Source == nil || cfg.Publisher == nil {
		return nil, errors.New("command mqtt: prefix, engine, source and publisher are required")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log, slots: make(chan struct{}, cfg.MaxInFlight)}, nil
}

// Filters are the topic filters of commands under prefix.
func Filters(prefix string) []string {
	return []string{prefix + "/+/command/+", prefix + "/+/set/+"}
}

// Start subscribes to the command topics until ctx ends.
func (h *Handler) Start(ctx context.Context) error {
	for _, f := range Filters(h.cfg.Prefix) {
		if err := h.cfg.Source.Subscribe(ctx, f, func(m Message) { h.receive(ctx, m) }); err != nil {
			return fmt.Errorf("command topics: %w", err)
		}
	}
	return nil
}

// Wait blocks until the commands in flight are done.
func (h *Handler) Wait() { h.wg.Wait() }

// MaxPayload bounds a command message's payload, as the proxy API bounds
// a command's body: arguments are a few bytes, and a payload past this is
// refused before it is parsed (padding included).
const MaxPayload = 64 << 10

// request is a parsed command message.
type request struct {
	vin, kind, name string // kind: "command" or "set"
	resultTopic     string
	req             command.Request
}

// receive runs on the publisher's goroutine: it checks the message and
// hands the command to a goroutine of its own.
func (h *Handler) receive(ctx context.Context, m Message) {
	who := "mqtt"
	if m.Known {
		who = "mqtt:" + m.User
		if m.User == "" {
			who = "mqtt:anonymous"
		}
	}
	r, err := h.parse(m)
	if r == nil {
		h.log.Debug("ignored message on a command topic", "topic", m.Topic, "err", err)
		return
	}
	r.req.Who = who
	if err == nil {
		err = h.authorize(m, r.req.Name)
	}
	if err != nil {
		h.log.Warn("vehicle command refused", "who", who, "vin", r.vin, "command", r.req.Name, "topic", m.Topic, "reason", err)
		h.publish(ctx, r.resultTopic, command.Result{VIN: r.vin, Command: r.req.Name, Reason: err.Error(), Err: err})
		return
	}
	select {
	case h.slots <- struct{}{}:
	default:
		// A car whose budget is spent is told so, as it would be with a
		// slot free: "try again shortly" would not be true for it.
		err := fmt.Errorf("too many commands in flight (%d); try again shortly", h.cfg.MaxInFlight)
		if b, ok := h.cfg.Engine.(Budget); ok {
			if spent := b.RateLimited(r.vin); spent != nil {
				err = spent
			}
		}
		h.publish(ctx, r.resultTopic, command.Result{VIN: r.vin, Command: r.req.Name, Reason: err.Error(), Err: err})
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer func() { <-h.slots }()
		res := h.cfg.Engine.Execute(ctx, r.req)
		h.publish(context.WithoutCancel(ctx), r.resultTopic, res)
	}()
}

// parse reads a command message; r is nil when the topic is not one
// (such as a result topic), err says why a command is invalid.
func (h *Handler) parse(m Message) (*request, error) {
	rest, ok := strings.CutPrefix(m.Topic, h.cfg.Prefix+"/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || (parts[1] != "command" && parts[1] != "set") || parts[0] == "" || parts[2] == "" {
		return nil, nil
	}
	r := &request{vin: parts[0], kind: parts[1], name: parts[2], resultTopic: m.Topic + "/result"}
	r.req.VIN = r.vin
	if m.Retained {
		r.req.Name = r.name
		return r, errors.New("retained commands are not run (they would run again at every start): publish without the retain flag, and clear the retained message")
	}
	if len(m.Payload) > MaxPayload {
		r.req.Name = r.name
		return r, fmt.Errorf("%w: the payload is %d bytes; a command's arguments take at most %d", command.ErrInvalidCommand, len(m.Payload), MaxPayload)
	}
	if r.kind == "set" {
		name, args, err := ParseControl(h.cfg.Prefix, m.Topic, m.Payload)
		r.req.Name, r.req.Args = name, args
		if err != nil {
			r.req.Name = r.name
		}
		return r, err
	}
	r.req.Name = r.name
	args, onlyIfAwake, err := commandArgs(r.name, m.Payload)
	r.req.Args, r.req.OnlyIfAwake = args, onlyIfAwake
	return r, err
}

// authorize applies the commands section: enabled, the category, and for
// the embedded broker the users (the broker's ACL enforces them already).
func (h *Handler) authorize(m Message, name string) error {
	s := h.cfg.Settings
	if err := s.Allows(name); err != nil {
		return err
	}
	if !m.Known {
		return nil
	}
	if m.User == "" {
		if !s.AllowAnonymous {
			return fmt.Errorf("%w: anonymous MQTT clients may not command the cars (commands.allow_anonymous)", command.ErrNotAllowed)
		}
		return nil
	}
	for _, u := range s.MQTTUsers {
		if u == m.User {
			return nil
		}
	}
	return fmt.Errorf("%w: MQTT user %q is not in commands.mqtt_users", command.ErrNotAllowed, m.User)
}

func (h *Handler) publish(ctx context.Context, topic string, res command.Result) {
	payload, err := json.Marshal(res)
	if err != nil {
		h.log.Warn("command result does not encode", "err", err)
		return
	}
	if err := h.cfg.Publisher.Publish(ctx, []pubsub.Message{{Topic: topic, Payload: payload, QoS: h.cfg.QoS}}); err != nil {
		h.log.Warn("could not publish a command's result", "topic", topic, "err", err)
	}
}
