package setup

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

//go:embed web
var webFS embed.FS

// Deps are what the wizard needs from the rest of fleet2mqtt. Every field
// is optional.
type Deps struct {
	// TeslaEndpoints are Tesla's addresses; fleetapi.DefaultEndpoints()
	// when zero. Tests point them at a fleetapitest server.
	TeslaEndpoints fleetapi.Endpoints
	// TeslaHTTPClient sends every request to Tesla; fleetapi's default (a
	// 30 s timeout) when nil.
	TeslaHTTPClient *http.Client
	// ServerCAPEM returns the PEM of the CA chain that validates the
	// certificate the vehicle listener serves, computed from the chain it
	// actually serves. It becomes the "ca" of the cars' config; pushing is
	// refused while it returns nothing.
	ServerCAPEM func() []byte
	// PublicKeyURL returns the address where the key check fetches the
	// public key of host: https://<host>/.well-known/appspecific/
	// com.tesla.3p.public-key.pem (as Tesla and phones do) when nil.
	PublicKeyURL func(host string) string
	// CheckHTTPClient fetches the public key for that check; a client
	// with a 15 s timeout when nil.
	CheckHTTPClient *http.Client
	// PasswordOut receives the generated password, once; os.Stderr when
	// nil.
	PasswordOut io.Writer
	// Announcer, when set, is told what Home Assistant's announcer needs
	// to know from the setup page.
	Announcer Announcer
	// HomeAssistantSeen, when set, reports whether Home Assistant is
	// connected to the MQTT broker fleet2mqtt publishes to: ok with the
	// time of Home Assistant's latest "online" on its status topic
	// (homeassistant/status, its birth message), false when none came
	// since fleet2mqtt started or the latest said "offline". The last
	// page of the setup says so and, when not, what to do. nil: unknown,
	// and the page says it cannot tell. It must not block.
	HomeAssistantSeen func() (at time.Time, ok bool)
	// Commands, when set, is the vehicle command engine; the setup page's
	// Commands section shows its settings and usage, tells it which cars
	// predate the command protocol (from fleet_status), and runs its
	// "flash the lights" test through it. nil: commands are off, and the
	// section says how to turn them on.
	Commands Commands
}

// Commands is what the setup page needs of vehicle commands
// (command.Engine with its settings and counters; cmd/fleet2mqtt wires it).
// Execute may take as long as the command does (a sleeping car is woken);
// the other methods must not block.
type Commands interface {
	// Execute sends one command through the engine, with its safety
	// rules; the page checks Settings().Allows first.
	Execute(ctx context.Context, req command.Request) command.Result
	// Usage is every car's billed requests in month (command.Month).
	Usage(month string) map[string]command.Usage
	// SetProtocolRequired passes on what fleet_status says of a car:
	// false sends it REST commands.
	SetProtocolRequired(vin string, required bool)
	// Settings is the configuration's commands section.
	Settings() command.Settings
}

// Announcer is what the setup page tells Home Assistant discovery
// (*announce.Announcer): the signals a car was configured to stream,
// after Tesla accepted a pushed config for it (discovery announces
// those), and each car's display name from the owner's vehicle list.
// Its methods must not block.
type Announcer interface {
	SetStreaming(vin string, fields []telemetry.Field)
	SetDisplayName(vin, name string)
}

// Timing is the wizard's clock and how often it polls. Production leaves
// it zero (every field takes its default); tests shorten the intervals or
// set the clock, with WithTiming.
type Timing struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PagePoll is how often the page's script asks for news while it
	// waits for pairing, the car's config and the first record; 3 s when
	// zero.
	PagePoll time.Duration
	// TeslaPoll is the least time between two questions to Tesla about
	// the same thing while a page waits (pairing, config state); 10 s
	// when zero. Tesla bills data requests.
	TeslaPoll time.Duration
	// SyncCheck is how often Run asks Tesla about configs the cars have
	// not picked up yet; 5 min when zero.
	SyncCheck time.Duration
	// RepushCheck is how often Run looks for configs to push again (near
	// expiry, or the server's CA chain changed); 6 h when zero.
	RepushCheck time.Duration
}

// withDefaults fills the zero fields.
func (t Timing) withDefaults() Timing {
	if t.Now == nil {
		t.Now = time.Now
	}
	setDefault(&t.PagePoll, 3*time.Second)
	setDefault(&t.TeslaPoll, 10*time.Second)
	setDefault(&t.SyncCheck, 5*time.Minute)
	setDefault(&t.RepushCheck, 6*time.Hour)
	return t
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// An Option changes how New builds the wizard.
type Option func(*options)

type options struct {
	timing Timing
}

// WithTiming sets the wizard's clock and poll intervals (tests).
func WithTiming(t Timing) Option {
	return func(o *options) { o.timing = t }
}

// Wizard is the setup page: the handlers of the local web listener, the
// public key for the vehicle listener, and the background work that keeps
// the cars' configs current. It is safe for concurrent use.
//
// Inside, three layers: the store owns the state and its file; the flow
// makes the calls to Tesla and builds what the pages show; the site's
// handlers (one file per step, step_*.go) parse forms and render.
type Wizard struct {
	flow   *flow
	site   *site
	public publicSite
	seen   seenCars
}

// New returns the wizard, its state loaded from dataDir/setup. On the first
// start without a configured password it generates one and prints it to
// deps.PasswordOut. Zero values of cfg take their defaults.
func New(cfg Config, dataDir string, deps Deps, logger *slog.Logger, opts ...Option) (*Wizard, error) {
	def := DefaultConfig()
	if cfg.Port == 0 {
		cfg.Port = def.Port
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = def.Regions
	}
	if cfg.IngressAddress == "" {
		cfg.IngressAddress = def.IngressAddress
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	timing := o.timing.withDefaults()
	if deps.PasswordOut == nil {
		deps.PasswordOut = os.Stderr
	}
	if deps.PublicKeyURL == nil {
		deps.PublicKeyURL = func(host string) string { return "https://" + host + fleetapi.PublicKeyPath }
	}
	if deps.CheckHTTPClient == nil {
		deps.CheckHTTPClient = &http.Client{Timeout: 15 * time.Second}
	}

	dir := filepath.Join(dataDir, "setup")
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	w := &Wizard{}
	w.flow = &flow{cfg: cfg, deps: deps, timing: timing, log: logger, store: st, seen: &w.seen}
	s := &site{
		flow:         w.flow,
		log:          logger,
		trustIngress: cfg.TrustIngress,
		ingress:      netip.MustParseAddr(cfg.IngressAddress),
		pollMS:       timing.PagePoll.Milliseconds(),
		sessions:     newSessionStore(timing.Now),
		limiter:      newLimiter(timing.Now),
	}
	if s.password, err = loadPassword(cfg.Password, join(dir, passwordFile), deps.PasswordOut); err != nil {
		return nil, err
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if s.static, err = fs.Sub(webFS, "web/static"); err != nil {
		return nil, fmt.Errorf("setup assets: %w", err)
	}
	w.site = s
	w.public = publicSite{flow: w.flow, limit: newCallbackLimiter(timing.Now)}
	return w, nil
}

// Handler serves the setup page. Mount it at / of the local web listener;
// it also works under a path prefix (Home Assistant ingress or another
// reverse proxy), since every URL it sends is relative.
func (w *Wizard) Handler() http.Handler { return w.site.handler() }

// PublicKeyHandler serves the application's public key (PEM) for GET
// /.well-known/appspecific/com.tesla.3p.public-key.pem on the vehicle
// listener, where Tesla fetches it at registration and the Tesla app when
// pairing. It answers 404 until the key pair exists. The listener must
// serve it without asking for a client certificate.
func (w *Wizard) PublicKeyHandler() http.Handler { return publicKey{w.flow.store} }

// PublicHandler serves what the vehicle listener answers for the setup
// page on the public hostname, without a client certificate: the public
// key (as PublicKeyHandler) and the owner login's callback, GET
// /oauth/callback, where Tesla's login page sends the browser back
// (https://<public hostname>/oauth/callback is the redirect URI to
// register at Tesla). Every other path answers 404. Mount it on the
// vehicle listener's mux for both paths (or as its fallback handler).
func (w *Wizard) PublicHandler() http.Handler { return w.public.handler() }

// RecordSeen notes that ingest accepted a record from vin at time at. It
// is cheap and never blocks on the page: the verification step shows the
// first record live.
func (w *Wizard) RecordSeen(vin string, at time.Time) { w.seen.record(vin, at) }

// Run keeps the cars' configs current until ctx ends: it asks Tesla every
// Timing.SyncCheck whether pending configs reached their cars, and every
// Timing.RepushCheck (and once at the start) pushes a config again when
// it nears its expiry (fleetapi.RepushMargin before exp) or when the
// server's CA chain changed. Failures are logged and shown on the page;
// Run returns nil when ctx ends.
func (w *Wizard) Run(ctx context.Context) error { return w.flow.run(ctx) }
