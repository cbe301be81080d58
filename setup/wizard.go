package setup

import (
	"crypto/ecdsa"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

//go:embed web
var webFS embed.FS

// Deps are what the wizard needs from the rest of fleet2mqtt, and the
// seams tests use. Every field is optional.
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
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PagePollInterval is how often the page's script asks for news while
	// it waits for pairing, the car's config and the first record; 3 s
	// when zero.
	PagePollInterval time.Duration
	// TeslaPollInterval is the least time between two questions to Tesla
	// about the same thing while a page waits (pairing, config state);
	// 10 s when zero. Tesla bills data requests.
	TeslaPollInterval time.Duration
	// SyncCheckInterval is how often Run asks Tesla about configs the cars
	// have not picked up yet; 5 min when zero.
	SyncCheckInterval time.Duration
	// RepushCheckInterval is how often Run looks for configs to push
	// again (near expiry, or the server's CA chain changed); 6 h when
	// zero.
	RepushCheckInterval time.Duration
	// Announcer, when set, is told what Home Assistant's announcer needs
	// to know from the setup page.
	Announcer Announcer
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

// teslaTimeout bounds one step's conversation with Tesla.
const teslaTimeout = 45 * time.Second

// maxSeenCars bounds the cars RecordSeen remembers.
const maxSeenCars = 1000

// Wizard is the setup page: the handlers of the local web listener, the
// public key for the vehicle listener, and the background work that keeps
// the cars' configs current. It is safe for concurrent use.
type Wizard struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	dir     string
	now     func() time.Time
	ingress netip.Addr

	pages    map[string]*template.Template
	static   fs.FS
	sessions *sessionStore
	limiter  *limiter
	password *password

	// mu guards the state and everything derived from it.
	mu        sync.Mutex
	st        *state
	key       *ecdsa.PrivateKey
	publicPEM []byte
	client    *fleetapi.Client
	clientKey string // the settings client was built from
	owner     *fleetapi.Owner
	pairPoll  time.Time // last fleet_status question while a page waits
	pairErr   error     // its answer, while it is fresh

	// seen holds, per VIN, *seenCar: when records arrived (RecordSeen).
	seen      sync.Map
	seenCount atomic.Int32
}

// seenCar is when a car's records arrived, in Unix nanoseconds.
type seenCar struct {
	first, last atomic.Int64
}

// New returns the wizard, its state loaded from dataDir/setup. On the first
// start without a configured password it generates one and prints it to
// deps.PasswordOut. Zero values of cfg take their defaults.
func New(cfg Config, dataDir string, deps Deps, logger *slog.Logger) (*Wizard, error) {
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
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.PasswordOut == nil {
		deps.PasswordOut = os.Stderr
	}
	if deps.PublicKeyURL == nil {
		deps.PublicKeyURL = func(host string) string { return "https://" + host + fleetapi.PublicKeyPath }
	}
	if deps.CheckHTTPClient == nil {
		deps.CheckHTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	setDefault(&deps.PagePollInterval, 3*time.Second)
	setDefault(&deps.TeslaPollInterval, 10*time.Second)
	setDefault(&deps.SyncCheckInterval, 5*time.Minute)
	setDefault(&deps.RepushCheckInterval, 6*time.Hour)

	w := &Wizard{
		cfg:      cfg,
		deps:     deps,
		log:      logger,
		dir:      filepath.Join(dataDir, "setup"),
		now:      deps.Now,
		ingress:  netip.MustParseAddr(cfg.IngressAddress),
		sessions: newSessionStore(deps.Now),
		limiter:  newLimiter(deps.Now),
	}
	if err := ensureDir(w.dir); err != nil {
		return nil, err
	}
	var err error
	if w.st, err = loadState(join(w.dir, stateFile)); err != nil {
		return nil, err
	}
	if _, statErr := os.Stat(join(w.dir, keyFile)); statErr == nil {
		key, err := fleetapi.LoadPrivateKey(join(w.dir, keyFile))
		if err != nil {
			return nil, fmt.Errorf("setup key: %w", err)
		}
		if err := w.setKey(key); err != nil {
			return nil, err
		}
	}
	if w.password, err = loadPassword(cfg.Password, join(w.dir, passwordFile), deps.PasswordOut); err != nil {
		return nil, err
	}
	if w.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if w.static, err = fs.Sub(webFS, "web/static"); err != nil {
		return nil, fmt.Errorf("setup assets: %w", err)
	}
	return w, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// setKey installs the application's key pair.
func (w *Wizard) setKey(key *ecdsa.PrivateKey) error {
	pemBytes, err := fleetapi.MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("setup key: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.key, w.publicPEM = key, pemBytes
	return nil
}

// Handler serves the setup page. Mount it at / of the local web listener;
// it also works under a path prefix (Home Assistant ingress or another
// reverse proxy), since every URL it sends is relative.
func (w *Wizard) Handler() http.Handler {
	mux := http.NewServeMux()
	static := http.StripPrefix("/static/", http.FileServerFS(w.static))
	mux.Handle("GET /static/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(rw, r) // no directory listings
			return
		}
		rw.Header().Set("Cache-Control", "no-cache")
		static.ServeHTTP(rw, r)
	}))
	mux.HandleFunc("GET /{$}", w.handleIndex)
	mux.HandleFunc("GET /login", w.handleLoginPage)
	mux.HandleFunc("POST /login", w.handleLogin)
	mux.HandleFunc("POST /logout", w.handleLogout)

	mux.HandleFunc("GET /app", w.handleAppPage)
	mux.HandleFunc("POST /app", w.handleApp)
	mux.HandleFunc("GET /key", w.handleKeyPage)
	mux.HandleFunc("POST /key", w.handleKey)
	mux.HandleFunc("GET /register", w.handleRegisterPage)
	mux.HandleFunc("POST /register", w.handleRegister)
	mux.HandleFunc("GET /owner", w.handleOwnerPage)
	mux.HandleFunc("POST /owner", w.handleOwnerLogin)
	mux.HandleFunc("GET /callback", w.handleCallback)
	mux.HandleFunc("GET /vehicles", w.handleVehiclesPage)
	mux.HandleFunc("POST /vehicles", w.handleVehicles)
	mux.HandleFunc("GET /pairing", w.handlePairingPage)
	mux.HandleFunc("GET /pairing-status", w.handlePairingStatus)
	mux.HandleFunc("GET /fields", w.handleFieldsPage)
	mux.HandleFunc("POST /fields", w.handleFields)
	mux.HandleFunc("POST /estimate", w.handleEstimate)
	mux.HandleFunc("GET /push", w.handlePushPage)
	mux.HandleFunc("POST /push", w.handlePush)
	mux.HandleFunc("GET /verify", w.handleVerifyPage)
	mux.HandleFunc("GET /verify-status", w.handleVerifyStatus)
	mux.HandleFunc("POST /remove", w.handleRemove)
	return w.access(mux)
}

// PublicKeyHandler serves the application's public key (PEM) for GET
// /.well-known/appspecific/com.tesla.3p.public-key.pem on the vehicle
// listener, where Tesla fetches it at registration and the Tesla app when
// pairing. It answers 404 until the key pair exists. The listener must
// serve it without asking for a client certificate.
func (w *Wizard) PublicKeyHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.mu.Lock()
		pemBytes := w.publicPEM
		w.mu.Unlock()
		if pemBytes == nil {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "application/x-pem-file")
		rw.Header().Set("Cache-Control", "no-cache")
		rw.Write(pemBytes)
	})
}

// RecordSeen notes that ingest accepted a record from vin at time at. It
// is cheap and never blocks on the page: the verification step shows the
// first record live.
func (w *Wizard) RecordSeen(vin string, at time.Time) {
	ns := at.UnixNano()
	if v, ok := w.seen.Load(vin); ok {
		v.(*seenCar).note(ns)
		return
	}
	if w.seenCount.Load() >= maxSeenCars {
		return
	}
	sc := &seenCar{}
	sc.first.Store(ns)
	sc.last.Store(ns)
	if v, loaded := w.seen.LoadOrStore(vin, sc); loaded {
		v.(*seenCar).note(ns)
		return
	}
	w.seenCount.Add(1)
}

// note widens the car's first–last span to include ns; records of
// concurrent connections may arrive slightly out of order.
func (sc *seenCar) note(ns int64) {
	for {
		old := sc.last.Load()
		if ns <= old || sc.last.CompareAndSwap(old, ns) {
			break
		}
	}
	for {
		old := sc.first.Load()
		if ns >= old || sc.first.CompareAndSwap(old, ns) {
			return
		}
	}
}

// seenTimes returns when vin's first and last records arrived (zero when
// none did).
func (w *Wizard) seenTimes(vin string) (first, last time.Time) {
	v, ok := w.seen.Load(vin)
	if !ok {
		return time.Time{}, time.Time{}
	}
	sc := v.(*seenCar)
	return time.Unix(0, sc.first.Load()), time.Unix(0, sc.last.Load())
}

// Errors of the wizard's own making.
var (
	errNoCredentials = errors.New("the Tesla application's client id and secret are not set")
	errNoKey         = errors.New("the key pair does not exist yet")
	errNoCA          = errors.New("the vehicle listener has no certificate chain to put in the config")
)

// host is the public hostname: the configuration's, else the page's.
func (w *Wizard) hostLocked() string {
	if w.cfg.PublicHostname != "" {
		return w.cfg.PublicHostname
	}
	return w.st.PublicHostname
}

// credentialsLocked returns the client id and secret: the
// configuration's, else the page's.
func (w *Wizard) credentialsLocked() (id, secret string) {
	if w.cfg.ClientID != "" {
		return w.cfg.ClientID, string(w.cfg.ClientSecret)
	}
	return w.st.ClientID, w.st.ClientSecret
}

func (w *Wizard) redirectURLLocked() string {
	if w.cfg.RedirectURL != "" {
		return w.cfg.RedirectURL
	}
	return w.st.RedirectURL
}

// regionsLocked returns the regions chosen on the page, else the
// configuration's.
func (w *Wizard) regionsLocked() []fleetapi.Region {
	if len(w.st.Regions) > 0 {
		return w.st.Regions
	}
	rs, _ := parseRegions(w.cfg.Regions)
	return rs
}

// authRegion is the region owner logins are made for: tokens for North
// America serve Europe too, China stands alone.
func authRegion(regions []fleetapi.Region) fleetapi.Region {
	for _, r := range []fleetapi.Region{fleetapi.RegionNA, fleetapi.RegionEU, fleetapi.RegionCN} {
		if containsRegion(regions, r) {
			return r
		}
	}
	return fleetapi.RegionNA
}

// clientLocked returns the Tesla client for the current settings,
// building a new one when they changed.
func (w *Wizard) clientLocked() (*fleetapi.Client, error) {
	id, secret := w.credentialsLocked()
	if id == "" || secret == "" {
		return nil, errNoCredentials
	}
	redirect := w.redirectURLLocked()
	auth := authRegion(w.regionsLocked())
	key := id + "\x00" + secret + "\x00" + redirect + "\x00" + string(auth)
	if w.client != nil && w.clientKey == key {
		return w.client, nil
	}
	c, err := fleetapi.New(fleetapi.Config{
		ClientID:     id,
		ClientSecret: secret,
		RedirectURL:  redirect,
		AuthRegion:   auth,
		Endpoints:    w.deps.TeslaEndpoints,
		HTTPClient:   w.deps.TeslaHTTPClient,
		Logger:       w.log,
	})
	if err != nil {
		return nil, err
	}
	w.client, w.clientKey, w.owner = c, key, nil
	return c, nil
}

// ownerLocked returns the owner's session, from the stored token.
func (w *Wizard) ownerLocked() (*fleetapi.Owner, error) {
	c, err := w.clientLocked()
	if err != nil {
		return nil, err
	}
	if w.owner == nil {
		var region fleetapi.Region
		if w.st.Owner != nil {
			region = w.st.Owner.Region
		}
		w.owner = c.Owner(fleetapi.FileTokenStore{Path: join(w.dir, tokenFile)}, region)
	}
	return w.owner, nil
}

// owner returns the owner's session.
func (w *Wizard) ownerSession() (*fleetapi.Owner, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ownerLocked()
}

// teslaFailed notes what an error from Tesla means for the state: a grant
// that is gone sends the owner back to the login step.
func (w *Wizard) teslaFailed(err error) {
	if !errors.Is(err, fleetapi.ErrLoginRequired) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.Owner != nil && !w.st.Owner.GrantGone {
		w.st.Owner.GrantGone = true
		w.saveLocked()
	}
}

// noteOwnerRegion keeps the region the owner's session moved to.
func (w *Wizard) noteOwnerRegionLocked(o *fleetapi.Owner) {
	if w.st.Owner != nil && o != nil && w.st.Owner.Region != o.Region() {
		w.st.Owner.Region = o.Region()
	}
}

// saveLocked writes the state; a failure is logged and otherwise ignored,
// since the state in memory stays right and the next save tries again.
func (w *Wizard) saveLocked() {
	if err := w.st.save(join(w.dir, stateFile)); err != nil {
		w.log.Error("setup: cannot save state", "err", err)
	}
}
