package fleetapitest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Options configure the fake. The zero value works: one developer
// application with DefaultClientID and DefaultClientSecret, an owner in
// North America without cars.
type Options struct {
	// ClientID and ClientSecret of the developer application; defaults
	// DefaultClientID and DefaultClientSecret.
	ClientID     string
	ClientSecret string
	// RedirectURIs are the application's allowed redirect URIs; the login
	// page refuses any other. SetRedirectURIs changes them later (a test
	// often knows its callback address only after starting its server).
	RedirectURIs []string
	// AllowedOrigins are the application's allowed origins, such as
	// "https://example.com"; a registered domain must be one of their
	// hosts. Empty allows any domain.
	AllowedOrigins []string
	// OwnerRegion is where the owner's account lives; RegionNA by default.
	// Vehicle calls to another region answer 421.
	OwnerRegion fleetapi.Region
	// Vehicles are the owner's cars.
	Vehicles []Vehicle
	// PublicKeyURL says where registration fetches a domain's public key,
	// as Tesla fetches https://<domain>/.well-known/appspecific/… by
	// default. Point it at a loopback server in tests, or use SetPublicKey
	// to skip fetching.
	PublicKeyURL func(domain string) string
	// HTTPClient fetches public keys; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Now is the fake's clock; time.Now when nil.
	Now func() time.Time
	// Logf, when set, receives one line per request (t.Logf).
	Logf func(format string, args ...any)
}

// Defaults of Options.
const (
	DefaultClientID     = "fake-client-id"
	DefaultClientSecret = "fake-client-secret"
	// OwnerEmail and OwnerName are the fake owner's account summary
	// (GET /api/1/users/me).
	OwnerEmail = "owner@example.com"
	OwnerName  = "Alex Owner"
	// TokenLifetime is the expires_in of every access token, as Tesla's.
	TokenLifetime = 8 * time.Hour
	// codeLifetime bounds how long an authorization code is accepted.
	codeLifetime = 10 * time.Minute
)

// Vehicle is one car of the fake owner, with knobs for what it does.
type Vehicle struct {
	VIN         string
	DisplayName string
	// ID is Tesla's vehicle id; assigned when 0.
	ID int64
	// State is "online" (default), "asleep" or "offline".
	State string
	// AccessType is "OWNER" (default) or "DRIVER".
	AccessType string
	// FirmwareVersion defaults to "2025.20.6".
	FirmwareVersion string
	// FleetTelemetryVersion defaults to "1.1.0".
	FleetTelemetryVersion string
	// TotalKeys is total_number_of_keys in fleet_status.
	TotalKeys int
	// SafetyScreenStreamingToggle is safety_screen_streaming_toggle_enabled.
	SafetyScreenStreamingToggle *bool

	// Paired: the car holds the application's virtual key.
	Paired bool
	// PairAfterPolls > 0 makes the car answer unpaired to that many
	// fleet_status calls and paired from then on (the owner pairing).
	PairAfterPolls int
	// Skip forces a skip reason on every push ("missing_key",
	// "unsupported_hardware", "unsupported_firmware", "max_configs"); when
	// empty an unpaired car is skipped with missing_key.
	Skip string
	// SyncAfterPolls: after a push, that many config queries answer
	// synced:false before the car has it.
	SyncAfterPolls int
	// RejectConfig: once synced, the car holds no config (synced:true,
	// config:null, limit_reached:true), as when too many applications
	// stream from it.
	RejectConfig bool
	// LimitReached is limit_reached in config answers.
	LimitReached bool
	// PredatesCommandProtocol makes the car one that predates the Vehicle
	// Command Protocol, as older Model S and X: fleet_status answers
	// vehicle_command_protocol_required false, signed_command 422, and
	// REST commands work (see Car.SetLegacy).
	PredatesCommandProtocol bool
	// Errors are the car's fleet_telemetry_errors.
	Errors []StreamError
}

// StreamError is one entry of fleet_telemetry_errors.
type StreamError struct {
	Name, Error, VIN, CreatedAt, ErrorName, TxID, Hostname string
	Port                                                   int
}

// Failure makes the fake answer matching requests with an error (or any
// status and body) before looking at them, as a load balancer or a failing
// Tesla would.
type Failure struct {
	// Method and Path select requests ("" matches any); Path is exact,
	// e.g. "/api/1/vehicles" or "/oauth2/v3/token".
	Method, Path string
	// Region selects a Fleet API region ("" matches any, and the
	// authentication server).
	Region fleetapi.Region
	// Status of the answer.
	Status int
	// Error and Description make a JSON error body, unless Body is set.
	Error, Description string
	// Body is sent as is (a malformed answer), with ContentType
	// ("text/html" when empty).
	Body        string
	ContentType string
	// Header is added to the answer. A 429 without one gets RateLimit-*
	// and Retry-After headers (60 requests, reset in 30 s).
	Header http.Header
	// Times is how many requests it answers (1 when 0; -1 for ever).
	Times int
}

// Request is one request the fake received.
type Request struct {
	Method, Path string
	// Region is the Fleet API region, "" for the authentication server.
	Region fleetapi.Region
	// Bearer is the access token the request carried, if any.
	Bearer string
	// Status is the answer's status code.
	Status int
}

// Server is a fake Tesla: the authentication server (login page and token
// endpoint) and one Fleet API server per region, all on loopback. It checks
// requests as Tesla does and keeps state (tokens, registrations, pushed
// configs) in memory. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	auth    *httptest.Server
	regions map[fleetapi.Region]*httptest.Server

	mu         sync.Mutex
	now        func() time.Time
	redirects  []string
	codes      map[string]*authCode
	access     map[string]*accessToken
	refresh    map[string]*refreshGrant
	registered map[fleetapi.Region]*registration
	keys       map[string]*ecdsa.PublicKey
	vehicles   []*vehicleState
	failures   []*Failure
	requests   []Request
	partnerErr []StreamError
	denyLogin  bool
	ownerRgn   fleetapi.Region
	nextID     int64
	cars       carFleet // the cars' command side (commands.go)
}

type tokenKind int

const (
	partnerToken tokenKind = iota + 1
	ownerToken
)

type accessToken struct {
	kind    tokenKind
	aud     []string
	scopes  []string
	expires time.Time
}

type refreshGrant struct {
	aud    []string
	scopes []string
	used   bool
}

type authCode struct {
	redirectURI string
	nonce       string
	scopes      []string
	expires     time.Time
	used        bool
}

type registration struct {
	domain string
	key    *ecdsa.PublicKey
}

type vehicleState struct {
	Vehicle
	pairPolls int
	config    json.RawMessage // pushed claims; nil when none
	syncPolls int
}

// New starts a fake Tesla. Close it when done.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.OwnerRegion == "" {
		opts.OwnerRegion = fleetapi.RegionNA
	}
	if opts.PublicKeyURL == nil {
		opts.PublicKeyURL = func(domain string) string { return "https://" + domain + fleetapi.PublicKeyPath }
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	s := &Server{
		opts:       opts,
		regions:    make(map[fleetapi.Region]*httptest.Server),
		now:        opts.Now,
		redirects:  slices.Clone(opts.RedirectURIs),
		codes:      make(map[string]*authCode),
		access:     make(map[string]*accessToken),
		refresh:    make(map[string]*refreshGrant),
		registered: make(map[fleetapi.Region]*registration),
		keys:       make(map[string]*ecdsa.PublicKey),
		ownerRgn:   opts.OwnerRegion,
		nextID:     3744582737186151,
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, v := range opts.Vehicles {
		s.addVehicleLocked(v)
	}
	s.auth = httptest.NewServer(s.middleware("", s.authMux()))
	for _, r := range fleetapi.Regions {
		s.regions[r] = httptest.NewServer(s.middleware(r, s.fleetMux(r)))
	}
	return s
}

// Close stops every server of the fake.
func (s *Server) Close() {
	s.auth.Close()
	for _, srv := range s.regions {
		srv.Close()
	}
}

// Endpoints are the fake's addresses, for fleetapi.Config.Endpoints.
func (s *Server) Endpoints() fleetapi.Endpoints {
	e := fleetapi.Endpoints{
		AuthorizeURL: s.auth.URL + "/oauth2/v3/authorize",
		TokenURL:     s.auth.URL + "/oauth2/v3/token",
		APIBase:      make(map[fleetapi.Region]string),
	}
	for r, srv := range s.regions {
		e.APIBase[r] = srv.URL
	}
	return e
}

// BaseURL is the Fleet API base URL of region.
func (s *Server) BaseURL(r fleetapi.Region) string { return s.regions[r].URL }

// Issuer is the issuer the login callback names.
func (s *Server) Issuer() string { return s.auth.URL + "/oauth2/v3" }

// ClientID and ClientSecret are the fake application's credentials.
func (s *Server) ClientID() string     { return s.opts.ClientID }
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// SetRedirectURIs replaces the application's allowed redirect URIs.
func (s *Server) SetRedirectURIs(uris ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirects = slices.Clone(uris)
}

// SetOwnerRegion moves the owner's account to another region.
func (s *Server) SetOwnerRegion(r fleetapi.Region) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ownerRgn = r
}

// SetPublicKey makes registration of domain use pub without fetching it.
func (s *Server) SetPublicKey(domain string, pub *ecdsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[domain] = pub
}

// Register registers domain with pub in region directly, as if the
// partner registration had happened.
func (s *Server) Register(region fleetapi.Region, domain string, pub *ecdsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered[region] = &registration{domain: domain, key: pub}
}

// Registered returns the domain registered in region ("" when none).
func (s *Server) Registered(region fleetapi.Region) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reg := s.registered[region]; reg != nil {
		return reg.domain
	}
	return ""
}

// AddVehicle gives the owner another car.
func (s *Server) AddVehicle(v Vehicle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addVehicleLocked(v)
}

func (s *Server) addVehicleLocked(v Vehicle) {
	if v.ID == 0 {
		v.ID = s.nextID
		s.nextID += 7
	}
	if v.State == "" {
		v.State = "online"
	}
	if v.AccessType == "" {
		v.AccessType = "OWNER"
	}
	if v.FirmwareVersion == "" {
		v.FirmwareVersion = "2025.20.6"
	}
	if v.FleetTelemetryVersion == "" {
		v.FleetTelemetryVersion = "1.1.0"
	}
	if v.DisplayName == "" {
		v.DisplayName = "Car " + v.VIN[max(0, len(v.VIN)-4):]
	}
	s.vehicles = append(s.vehicles, &vehicleState{Vehicle: v, pairPolls: v.PairAfterPolls})
}

// UpdateVehicle changes the knobs of a car; fn runs under the fake's lock.
// It reports whether the car exists.
func (s *Server) UpdateVehicle(vin string, fn func(*Vehicle)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vehicleLocked(vin)
	if v == nil {
		return false
	}
	fn(&v.Vehicle)
	v.pairPolls = v.PairAfterPolls
	return true
}

func (s *Server) vehicleLocked(vin string) *vehicleState {
	for _, v := range s.vehicles {
		if v.VIN == vin {
			return v
		}
	}
	return nil
}

// PushedConfig returns the claims last pushed to a car (iss and aud
// included), or nil.
func (s *Server) PushedConfig(vin string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vehicleLocked(vin); v != nil {
		return slices.Clone(v.config)
	}
	return nil
}

// SetPartnerErrors sets errors that only the partner-wide errors endpoint
// reports, in addition to the cars' own.
func (s *Server) SetPartnerErrors(errs ...StreamError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partnerErr = slices.Clone(errs)
}

// DenyLogin makes the login page answer access_denied (the owner clicked
// "cancel").
func (s *Server) DenyLogin(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denyLogin = deny
}

// RevokeGrant makes every refresh token invalid, as when the owner removes
// the application in the Tesla app or three months pass: the next refresh
// answers 401 login_required. Access tokens keep working until they
// expire.
func (s *Server) RevokeGrant() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		g.used = true
	}
}

// ExpireAccessTokens makes every access token expire now (server side; the
// client's clock still thinks they are valid).
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.access {
		t.expires = s.now().Add(-time.Second)
	}
}

// Fail queues a failure (see Failure).
func (s *Server) Fail(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.failures = append(s.failures, &f)
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// TokenUsed reports whether any Fleet API request carried access token tok.
func (s *Server) TokenUsed(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.requests {
		if r.Region != "" && r.Bearer == tok {
			return true
		}
	}
	return false
}

// statusWriter remembers the status of an answer for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// middleware logs each request and applies queued failures first.
func (s *Server) middleware(region fleetapi.Region, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		defer func() {
			s.mu.Lock()
			s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Region: region, Bearer: bearer, Status: sw.status})
			s.mu.Unlock()
			if s.opts.Logf != nil {
				where := "auth"
				if region != "" {
					where = string(region)
				}
				s.opts.Logf("fake tesla %s: %s %s → %d", where, r.Method, r.URL.Path, sw.status)
			}
		}()
		if f := s.takeFailure(region, r); f != nil {
			writeFailure(sw, f)
			return
		}
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) takeFailure(region fleetapi.Region, r *http.Request) *Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.failures {
		if (f.Method != "" && f.Method != r.Method) || (f.Path != "" && f.Path != r.URL.Path) || (f.Region != "" && f.Region != region) {
			continue
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.failures = slices.Delete(s.failures, i, i+1)
			}
		}
		return f
	}
	return nil
}

func writeFailure(w http.ResponseWriter, f *Failure) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if f.Status == http.StatusTooManyRequests && f.Header == nil {
		for k, vs := range rateLimitHeaders(60, 30) {
			w.Header()[k] = vs
		}
	}
	if f.Body != "" {
		ct := f.ContentType
		if ct == "" {
			ct = "text/html"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return
	}
	code := f.Error
	if code == "" {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(f.Status), " ", "_"))
	}
	writeJSON(w, f.Status, errorBody(code, f.Description))
}

// writeJSON sends v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newToken returns a JWT-shaped random token with the given claims. The
// fake recognizes its tokens by lookup, not by signature.
func newToken(claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"fake"}`))
	payload, _ := json.Marshal(claims)
	sig := make([]byte, 32)
	_, _ = rand.Read(sig)
	return header + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func itoa(n int) string { return strconv.Itoa(n) }

func formatID(id int64) string { return strconv.FormatInt(id, 10) }

// hostOf returns the host of an absolute URL.
func hostOf(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}
