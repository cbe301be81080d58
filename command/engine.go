package command

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	cs "github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/vcsec"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Transport carries commands to the cars: the Fleet API calls the engine
// needs. *fleetapi.Owner implements it; its TokenStore decides whose token
// is used (the owner's stored, refreshed token for the command line and
// MQTT, fleetapi.BearerToken for a caller's own token on the proxy API).
// Tesla's error answers are *fleetapi.APIError values: 408 means the car
// is asleep, 422 to signed_command that it predates the protocol.
type Transport interface {
	SignedCommand(ctx context.Context, vin string, message []byte) ([]byte, error)
	WakeUp(ctx context.Context, vin string) (*fleetapi.Vehicle, error)
	Vehicle(ctx context.Context, vin string) (*fleetapi.Vehicle, error)
	Command(ctx context.Context, vin, name string, args json.RawMessage) (*fleetapi.CommandResult, error)
}

var _ Transport = (*fleetapi.Owner)(nil)

// Defaults of Config.
const (
	DefaultWakeTimeout = 60 * time.Second
	DefaultWakePoll    = 2 * time.Second
	DefaultBackoff     = time.Second
	DefaultBusyRetries = 3
	// counterReserve is how many counters a session may use before its
	// state is written again: the cache holds a counter ahead of every one
	// used, so a restart never reuses one, and a command costs a file
	// write only every counterReserve commands.
	counterReserve = 256
)

// Config configures an Engine.
type Config struct {
	// Key is the application's P-256 private key, the one the owner paired
	// as a virtual key (the setup page's private-key.pem). Required.
	Key *ecdsa.PrivateKey
	// Transport is used for requests that do not bring their own.
	Transport Transport
	// SessionDir caches each car's sessions on disk
	// (<SessionDir>/<VIN>-<domain>.json, mode 0600) so that a restart
	// needs no new handshake, e.g. <data_dir>/commands. Empty keeps them in
	// memory only.
	SessionDir string
	// PairingDomain is the application's domain, to name the pairing link
	// (https://tesla.com/_ak/<domain>) when a car does not know the key.
	PairingDomain string
	// RateLimit per car; DefaultRateLimit when nil, none when Commands is 0.
	RateLimit *RateLimit
	// WakeTimeout bounds how long a sleeping car is waited for after a
	// wake_up; DefaultWakeTimeout when 0. WakePoll is the interval of the
	// state polls meanwhile; DefaultWakePoll when 0.
	WakeTimeout, WakePoll time.Duration
	// Backoff is the first wait before retrying a command the car was too
	// busy for (doubling each time, at most BusyRetries retries);
	// DefaultBackoff and DefaultBusyRetries when 0.
	Backoff     time.Duration
	BusyRetries int
	// Metrics is told of every billed request; nothing when nil.
	Metrics Metrics
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Errors of a Result, for errors.Is.
var (
	// ErrInvalidCommand: an unknown command, bad arguments or VIN; nothing
	// was sent.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrRateLimited: the car's command budget (RateLimit) is spent.
	ErrRateLimited = errors.New("command rate limit reached for this car")
	// ErrAsleep: the car is asleep and the command was marked "only if
	// awake".
	ErrAsleep = errors.New("the car is asleep and the command was sent only if awake; it was not woken")
	// ErrWakeTimeout: the car did not come online in time after a wake_up.
	ErrWakeTimeout = errors.New("the car did not wake up in time")
	// ErrRefused: the car received the command and refused it (its reason
	// follows), or refused it at the protocol layer (Result.Fault).
	ErrRefused = errors.New("the car refused the command")
)

// Request is one command.
type Request struct {
	VIN string
	// Name and Args are Tesla's REST command name and JSON arguments.
	Name string
	Args json.RawMessage
	// Who sent it, for the log: "mqtt:<user>", "api:<client>", "cli".
	Who string
	// OnlyIfAwake never wakes the car: a sleeping car refuses with
	// ErrAsleep, and nothing is billed for a wake.
	OnlyIfAwake bool
	// Via overrides the engine's Transport, e.g. with the caller's own
	// token on the proxy API.
	Via Transport
}

// Result is what became of a command.
type Result struct {
	VIN     string `json:"vin"`
	Command string `json:"command"`
	// OK: the car executed the command.
	OK bool `json:"ok"`
	// Reason says in words why not.
	Reason string `json:"reason,omitempty"`
	// Fault is the last protocol fault the car reported, such as "BUSY" or
	// "UNKNOWN_KEY_ID" (also when a retry then succeeded).
	Fault string `json:"fault,omitempty"`
	// Duration is the whole time taken, wake and retries included.
	Duration   time.Duration `json:"-"`
	DurationMS float64       `json:"duration_ms"`
	// Woken: the car was asleep and woken for this command.
	Woken bool `json:"woken"`
	// Attempts is how many times the command was sent (not counting
	// handshakes and wake polls).
	Attempts int `json:"attempts"`
	// Legacy: sent as a REST command, the car predating the protocol.
	Legacy bool `json:"legacy,omitempty"`
	// Err is the error behind Reason, for errors.Is.
	Err error `json:"-"`
}

// Engine sends signed commands to cars: one protocol session per car and
// domain, cached in memory and on disk, commands of one car and domain in
// order, sleeping cars woken, faults recovered, cars that predate the
// protocol commanded over REST, a rate limit per car. It is safe for
// concurrent use.
type Engine struct {
	cfg   Config
	priv  *ecdh.PrivateKey
	store sessionStore
	limit RateLimit
	log   *slog.Logger

	mu   sync.Mutex
	cars map[string]*car
}

type car struct {
	bucket bucket
	wakeMu sync.Mutex // one wake at a time per car

	mu     sync.Mutex
	legacy bool
	lanes  map[protocol.Domain]*lane
}

// lane serializes one car's commands to one domain: a Session is not safe
// for concurrent use, and vehicle security wants its counters in order.
type lane struct {
	mu       sync.Mutex
	sess     *protocol.Session
	reserved uint32 // the last counter reserved in the cache; 0: none
	// skipCache: the cached state led to a session the car refused; the
	// next session is a new handshake.
	skipCache bool
}

// New returns an Engine. log receives one line per command and wake
// progress; nil discards.
func New(cfg Config, log *slog.Logger) (*Engine, error) {
	if cfg.Key == nil {
		return nil, errors.New("command engine: no private key")
	}
	priv, err := cfg.Key.ECDH()
	if err != nil || priv.Curve() != ecdh.P256() {
		return nil, errors.New("command engine: the key must be a P-256 key")
	}
	limit := DefaultRateLimit
	if cfg.RateLimit != nil {
		limit = *cfg.RateLimit
	}
	if err := limit.Validate(); err != nil {
		return nil, fmt.Errorf("command engine: %w", err)
	}
	if cfg.WakeTimeout <= 0 {
		cfg.WakeTimeout = DefaultWakeTimeout
	}
	if cfg.WakePoll <= 0 {
		cfg.WakePoll = DefaultWakePoll
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.BusyRetries <= 0 {
		cfg.BusyRetries = DefaultBusyRetries
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{cfg: cfg, priv: priv, store: sessionStore{dir: cfg.SessionDir}, limit: limit,
		log: log, cars: make(map[string]*car)}, nil
}

func (e *Engine) car(vin string) *car {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cars[vin]
	if c == nil {
		c = &car{lanes: make(map[protocol.Domain]*lane)}
		e.cars[vin] = c
	}
	return c
}

func (c *car) lane(d protocol.Domain) *lane {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lanes[d]
	if l == nil {
		l = &lane{}
		c.lanes[d] = l
	}
	return l
}

func (c *car) isLegacy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.legacy
}

// SetProtocolRequired records what fleet_status says of a car
// (vehicle_command_protocol_required): cars that do not require the
// protocol are sent REST commands. A 422 to signed_command teaches the
// engine the same by itself.
func (e *Engine) SetProtocolRequired(vin string, required bool) {
	c := e.car(vin)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.legacy = !required
}

// job is one Execute in progress.
type job struct {
	req Request
	via Transport
	car *car
	res *Result
}

// Execute sends one command and reports what became of it. It logs who,
// what, the result and the duration.
func (e *Engine) Execute(ctx context.Context, req Request) Result {
	start := e.cfg.Now()
	res := Result{VIN: req.VIN, Command: req.Name}
	err := e.execute(ctx, req, &res)
	res.Duration = e.cfg.Now().Sub(start)
	res.DurationMS = float64(res.Duration.Microseconds()) / 1000
	if err != nil {
		res.Err, res.Reason = err, e.words(err)
	} else {
		res.OK = true
	}
	level := slog.LevelInfo
	if !res.OK {
		level = slog.LevelWarn
	}
	e.log.Log(ctx, level, "vehicle command", "who", req.Who, "vin", req.VIN, "command", req.Name,
		"ok", res.OK, "reason", res.Reason, "fault", res.Fault, "woken", res.Woken,
		"attempts", res.Attempts, "legacy", res.Legacy, "duration", res.Duration)
	return res
}

// words says what went wrong, naming the pairing link where it helps.
func (e *Engine) words(err error) string {
	s := err.Error()
	ours := false
	for _, sentinel := range []error{ErrInvalidCommand, ErrRateLimited, ErrAsleep, ErrWakeTimeout, ErrRefused} {
		ours = ours || errors.Is(err, sentinel)
	}
	if !ours {
		// Tesla's answers, tokens, the network: fleetapi's words.
		if words := fleetapi.Explain(err); !strings.HasPrefix(words, "Something went wrong") {
			s = words
		}
	}
	if e.cfg.PairingDomain != "" {
		s = strings.ReplaceAll(s, "<your domain>", e.cfg.PairingDomain)
	}
	return s
}

func validVIN(vin string) bool {
	if len(vin) == 0 || len(vin) > 32 {
		return false
	}
	for _, r := range vin {
		if (r < '0' || r > '9') && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') {
			return false
		}
	}
	return true
}

// RateLimited says, spending nothing, whether a command for vin would be
// refused now because the car's budget is spent: an error wrapping
// ErrRateLimited that says when to try again, or nil. A caller that
// sheds load asks it first, so that the answer names the real limit.
func (e *Engine) RateLimited(vin string) error {
	e.mu.Lock()
	c := e.cars[vin]
	e.mu.Unlock()
	if c == nil {
		return nil // nothing spent yet; an invalid VIN: Execute says why
	}
	if wait := c.bucket.spent(e.limit, e.cfg.Now()); wait > 0 {
		return e.limited(wait)
	}
	return nil
}

func (e *Engine) limited(wait time.Duration) error {
	return fmt.Errorf("%w (at most %d per %s, bursts of %d): try again in %s",
		ErrRateLimited, e.limit.Commands, e.limit.Per, e.limit.Burst, wait.Round(time.Second))
}

func (e *Engine) execute(ctx context.Context, req Request, res *Result) error {
	if !validVIN(req.VIN) {
		return fmt.Errorf("%w: VIN %q must be letters and digits", ErrInvalidCommand, req.VIN)
	}
	act, err := Build(req.Name, req.Args)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCommand, err)
	}
	via := req.Via
	if via == nil {
		via = e.cfg.Transport
	}
	if via == nil {
		return errors.New("command engine: no Fleet API transport configured")
	}
	j := &job{req: req, via: via, car: e.car(req.VIN), res: res}
	if ok, wait := j.car.bucket.take(e.limit, e.cfg.Now()); !ok {
		return e.limited(wait)
	}
	if act.Wake {
		return e.wakeCommand(ctx, j)
	}
	if j.car.isLegacy() {
		return e.rest(ctx, j)
	}
	l := j.car.lane(act.Domain)
	l.mu.Lock()
	defer l.mu.Unlock()
	return e.signed(ctx, j, l, act)
}

// Signals between send and its callers.
var (
	errWoken  = errors.New("the car was woken; send again")
	errLegacy = errors.New("the car predates the vehicle command protocol")
)

func isStatus(err error, status int) bool {
	var apiErr *fleetapi.APIError
	return errors.As(err, &apiErr) && apiErr.Status == status
}

// send posts a message to signed_command. A sleeping car is woken (unless
// only-if-awake) and errWoken returned, for the caller to sign again: the
// original message may have expired meanwhile.
func (e *Engine) send(ctx context.Context, j *job, msg *universalmessage.RoutableMessage) (*universalmessage.RoutableMessage, error) {
	raw, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	e.billCommand(j.req.VIN)
	out, err := j.via.SignedCommand(ctx, j.req.VIN, raw)
	switch {
	case isStatus(err, http.StatusRequestTimeout):
		return nil, e.asleep(ctx, j)
	case isStatus(err, http.StatusUnprocessableEntity):
		return nil, errLegacy
	case err != nil:
		return nil, err
	}
	var resp universalmessage.RoutableMessage
	if err := proto.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("the car's answer does not decode: %w", err)
	}
	return &resp, nil
}

// asleep handles a 408: wake the car once, or refuse.
func (e *Engine) asleep(ctx context.Context, j *job) error {
	if j.req.OnlyIfAwake {
		return ErrAsleep
	}
	if j.res.Woken {
		return fmt.Errorf("%w: it went back to sleep or offline right after waking", ErrWakeTimeout)
	}
	if err := e.wake(ctx, j); err != nil {
		return err
	}
	return errWoken
}

func (e *Engine) billCommand(vin string) {
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.CommandSent(vin)
	}
}

// wake sends wake_up and polls the car's state until it is online, at
// most WakeTimeout. Tesla bills each wake_up.
func (e *Engine) wake(ctx context.Context, j *job) error {
	j.car.wakeMu.Lock()
	defer j.car.wakeMu.Unlock()
	vin := j.req.VIN
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.WakeSent(vin)
	}
	v, err := j.via.WakeUp(ctx, vin)
	if err != nil {
		return fmt.Errorf("wake the car: %w", err)
	}
	if v.State == "online" {
		return nil
	}
	j.res.Woken = true
	start := e.cfg.Now()
	e.log.Info("waking the car", "vin", vin, "timeout", e.cfg.WakeTimeout)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.WakeTimeout)
	defer cancel()
	t := time.NewTicker(e.cfg.WakePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%w (waited %s; it may be out of reach of the mobile network)", ErrWakeTimeout, e.cfg.WakeTimeout)
			}
			return ctx.Err()
		case <-t.C:
		}
		v, err := j.via.Vehicle(ctx, vin)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				continue
			}
			return fmt.Errorf("wait for the car to wake: %w", err)
		}
		if v.State == "online" {
			e.log.Info("the car is awake", "vin", vin, "after", e.cfg.Now().Sub(start).Round(time.Millisecond))
			return nil
		}
		e.log.Info("still waiting for the car to wake", "vin", vin, "state", v.State, "waited", e.cfg.Now().Sub(start).Round(time.Second))
	}
}

// wakeCommand is the wake_up command itself.
func (e *Engine) wakeCommand(ctx context.Context, j *job) error {
	j.res.Attempts = 1
	if j.req.OnlyIfAwake {
		v, err := j.via.Vehicle(ctx, j.req.VIN)
		if err != nil {
			return err
		}
		if v.State != "online" {
			return ErrAsleep
		}
		return nil
	}
	return e.wake(ctx, j)
}

// establish makes sure the lane has a session: from the disk cache, else
// by a handshake.
func (e *Engine) establish(ctx context.Context, j *job, l *lane, d protocol.Domain) error {
	if l.sess != nil {
		return nil
	}
	sess, err := protocol.NewSession(e.priv, j.req.VIN, d)
	if err != nil {
		return err
	}
	if l.skipCache {
		// A handshake below.
	} else if st, ok, err := e.store.load(j.req.VIN, d); err != nil {
		e.log.Warn("cached command session unreadable; a new handshake follows", "vin", j.req.VIN, "err", err)
	} else if ok && sess.Restore(st) == nil {
		l.sess, l.reserved = sess, st.Counter
		return nil
	}
	for {
		hello := sess.HandshakeRequest()
		resp, err := e.send(ctx, j, hello)
		if errors.Is(err, errWoken) {
			continue
		}
		if err != nil {
			return err
		}
		if f := resp.GetSignedMessageStatus().GetSignedMessageFault(); f != universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NONE && resp.GetSessionInfo() == nil {
			return e.fault(j, &protocol.FaultError{Domain: d, Fault: f, Response: resp})
		}
		if err := sess.Update(resp, hello, e.cfg.Now()); err != nil {
			return fmt.Errorf("session with %s: %w", protocol.DomainName(d), err)
		}
		l.sess, l.reserved, l.skipCache = sess, 0, false
		return nil
	}
}

// reserve makes sure the lane may sign its next counter: once the
// counters reserved in the cache are used up (or none are, after a
// handshake, a restart or a refreshed session), it reserves the next
// counterReserve under the cache directory's lock, stepping over any
// another process sharing the cache reserved meanwhile.
func (e *Engine) reserve(vin string, l *lane) {
	st, ok := l.sess.State()
	if !ok || (l.reserved != 0 && st.Counter < l.reserved) {
		return
	}
	from, to, err := e.store.reserve(vin, l.sess.Domain(), st, counterReserve)
	if err != nil {
		e.log.Warn("could not cache the command session; the next start needs a new handshake", "vin", vin, "err", err)
	}
	l.sess.SkipCounter(from)
	l.reserved = to
}

// reset forgets the lane's session: the next command makes a new one by
// a handshake. The cache stays until then: its counter still tells the
// next reservation which counters may have been used.
func (e *Engine) reset(l *lane) {
	l.sess, l.reserved, l.skipCache = nil, 0, true
}

func (e *Engine) signed(ctx context.Context, j *job, l *lane, act Action) error {
	vin := j.req.VIN
	refreshed, busy := false, 0
	for {
		if err := e.establish(ctx, j, l, act.Domain); err != nil {
			if errors.Is(err, errLegacy) {
				return e.becomeLegacy(ctx, j)
			}
			return err
		}
		e.reserve(vin, l)
		req, err := l.sess.Sign(act.Payload, e.cfg.Now(), 0)
		if err != nil {
			e.reset(l)
			return err
		}
		j.res.Attempts++
		resp, err := e.send(ctx, j, req.Message)
		switch {
		case errors.Is(err, errWoken):
			continue
		case errors.Is(err, errLegacy):
			return e.becomeLegacy(ctx, j)
		case err != nil:
			return err
		}
		out, err := req.Open(resp)
		var fe *protocol.FaultError
		if errors.As(err, &fe) {
			j.res.Fault = faultName(fe.Fault)
			switch {
			case fe.Recovery() == protocol.RefreshSession && !refreshed:
				refreshed = true
				if uerr := l.sess.Update(fe.Response, req.Message, e.cfg.Now()); uerr != nil {
					e.log.Info("the car's fault carries no usable session info; new handshake", "vin", vin, "fault", j.res.Fault, "err", uerr)
					e.reset(l)
				} else {
					l.reserved = 0 // reserve again above the car's counter
				}
				continue
			case fe.Recovery() == protocol.Backoff && busy < e.cfg.BusyRetries:
				if err := e.backoff(ctx, busy); err != nil {
					return err
				}
				busy++
				continue
			}
			return e.fault(j, fe)
		}
		if err != nil {
			return err
		}
		ok, wait, reason := appResult(act.Domain, out.Payload)
		if wait && busy < e.cfg.BusyRetries {
			j.res.Fault = "WAIT"
			if err := e.backoff(ctx, busy); err != nil {
				return err
			}
			busy++
			continue
		}
		if !ok {
			return fmt.Errorf("%w: %s", ErrRefused, reason)
		}
		return nil
	}
}

func (e *Engine) backoff(ctx context.Context, n int) error {
	t := time.NewTimer(e.cfg.Backoff << n)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (e *Engine) fault(j *job, fe *protocol.FaultError) error {
	j.res.Fault = faultName(fe.Fault)
	return fmt.Errorf("%w: %w", ErrRefused, fe)
}

// faultName is the fault's short name, e.g. "BUSY".
func faultName(f protocol.Fault) string {
	return strings.TrimPrefix(f.String(), "MESSAGEFAULT_ERROR_")
}

// becomeLegacy remembers that the car predates the protocol and sends the
// command over REST.
func (e *Engine) becomeLegacy(ctx context.Context, j *job) error {
	j.car.mu.Lock()
	j.car.legacy = true
	j.car.mu.Unlock()
	e.log.Info("the car predates the vehicle command protocol; using REST commands", "vin", j.req.VIN)
	return e.rest(ctx, j)
}

// rest sends the command as Tesla's REST command, as Tesla's proxy does
// for cars that predate the protocol.
func (e *Engine) rest(ctx context.Context, j *job) error {
	j.res.Legacy = true
	args := j.req.Args
	if len(strings.TrimSpace(string(args))) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	for {
		j.res.Attempts++
		e.billCommand(j.req.VIN)
		r, err := j.via.Command(ctx, j.req.VIN, j.req.Name, args)
		if isStatus(err, http.StatusRequestTimeout) {
			if err := e.asleep(ctx, j); !errors.Is(err, errWoken) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !r.Result {
			return fmt.Errorf("%w: %s", ErrRefused, r.Reason)
		}
		return nil
	}
}

// appResult reads the application-layer answer: whether the car executed
// the command, whether it asks to wait and retry, and its reason.
func appResult(d protocol.Domain, payload []byte) (ok, wait bool, reason string) {
	if d == protocol.DomainVehicleSecurity {
		var m vcsec.FromVCSECMessage
		if err := proto.Unmarshal(payload, &m); err != nil {
			return false, false, "the car's answer does not decode: " + err.Error()
		}
		if ne := m.GetNominalError(); ne != nil {
			return false, false, genericErrorWords(ne.GetGenericError())
		}
		switch m.GetCommandStatus().GetOperationStatus() {
		case vcsec.OperationStatus_E_OPERATIONSTATUS_WAIT:
			return false, true, "the car's security controller asks to wait"
		case vcsec.OperationStatus_E_OPERATIONSTATUS_ERROR:
			return false, false, "the car's security controller reported an error"
		}
		return true, false, ""
	}
	var r cs.Response
	if err := proto.Unmarshal(payload, &r); err != nil {
		return false, false, "the car's answer does not decode: " + err.Error()
	}
	if r.GetActionStatus().GetResult() == cs.OperationStatus_E_OPERATIONSTATUS_ERROR {
		reason := r.GetActionStatus().GetResultReason().GetPlainText()
		if reason == "" {
			reason = "no reason given"
		}
		return false, false, reason
	}
	return true, false, ""
}

func genericErrorWords(g vcsec.GenericError_E) string {
	switch g {
	case vcsec.GenericError_E_GENERICERROR_CLOSURES_OPEN:
		return "a door, trunk or window is open"
	case vcsec.GenericError_E_GENERICERROR_ALREADY_ON:
		return "already on"
	case vcsec.GenericError_E_GENERICERROR_DISABLED_FOR_USER_COMMAND:
		return "disabled for user commands"
	case vcsec.GenericError_E_GENERICERROR_VEHICLE_NOT_IN_PARK:
		return "the car is not in park"
	case vcsec.GenericError_E_GENERICERROR_UNAUTHORIZED:
		return "the key is not authorized for this"
	case vcsec.GenericError_E_GENERICERROR_NOT_ALLOWED_OVER_TRANSPORT:
		return "not allowed over the internet"
	}
	return "the car's security controller refused it (" + g.String() + ")"
}
