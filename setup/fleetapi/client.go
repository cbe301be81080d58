package fleetapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// DefaultScopes are the permissions asked of an owner: identity, a refresh
// token, the account's region, vehicle data and location (streaming), and
// CommandScopes (vehicle commands).
var DefaultScopes = []string{"openid", "offline_access", "user_data", "vehicle_device_data", "vehicle_location", "vehicle_cmds", "vehicle_charging_cmds"}

// DefaultPartnerScopes are the scopes of partner tokens (client
// credentials); Tesla wants at least one vehicle scope there.
var DefaultPartnerScopes = []string{"openid", "vehicle_device_data", "vehicle_cmds", "vehicle_charging_cmds"}

// maxResponseSize bounds how much of a response body is read.
const maxResponseSize = 4 << 20

// Config configures a Client for one developer application.
type Config struct {
	// ClientID and ClientSecret are the application's credentials from
	// developer.tesla.com.
	ClientID     string
	ClientSecret string
	// RedirectURL is the OAuth callback, exactly as entered as Allowed
	// Redirect URI for the application.
	RedirectURL string
	// Scopes asked of owners; DefaultScopes when empty.
	Scopes []string
	// PartnerScopes of partner tokens; DefaultPartnerScopes when empty.
	PartnerScopes []string
	// AuthRegion is the region whose base URL is the audience of owner
	// logins; RegionNA when empty. Tokens for na and eu serve both, and
	// the client follows an owner to their region by itself.
	AuthRegion Region
	// Endpoints are Tesla's addresses; DefaultEndpoints when zero.
	Endpoints Endpoints
	// HTTPClient sends every request; a client with a 30 s timeout when nil.
	HTTPClient *http.Client
	// UserAgent is sent with every Fleet API request.
	UserAgent string
}

// LogValue keeps the client secret out of logs.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.ClientSecret != "" {
		secret = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", secret),
		slog.String("redirect_url", c.RedirectURL),
		slog.String("auth_region", string(c.AuthRegion)),
	)
}

// Client talks to Tesla's authentication server and Fleet API for one
// developer application. It is safe for concurrent use.
type Client struct {
	cfg  Config
	ep   Endpoints
	http *http.Client
	log  *slog.Logger
	now  func() time.Time

	// login serves the authorize URL and the code exchange; refresher
	// refreshes owner tokens, without the client secret as Tesla
	// documents.
	login, refresher oauth2.Config

	partnerMu sync.Mutex
	partner   map[Region]*oauth2.Token
}

// New returns a Client. It checks the configuration but sends nothing.
// log receives debug lines per request (never tokens or secrets); nil
// discards them.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("fleetapi: client id must be set")
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	if len(cfg.PartnerScopes) == 0 {
		cfg.PartnerScopes = DefaultPartnerScopes
	}
	if cfg.AuthRegion == "" {
		cfg.AuthRegion = RegionNA
	}
	if cfg.Endpoints.AuthorizeURL == "" && cfg.Endpoints.TokenURL == "" && len(cfg.Endpoints.APIBase) == 0 {
		cfg.Endpoints = DefaultEndpoints()
	}
	if err := cfg.Endpoints.validate(); err != nil {
		return nil, fmt.Errorf("fleetapi: %w", err)
	}
	if _, err := cfg.Endpoints.BaseURL(cfg.AuthRegion); err != nil {
		return nil, fmt.Errorf("fleetapi: auth region: %w", err)
	}
	if cfg.RedirectURL != "" {
		if u, err := url.Parse(cfg.RedirectURL); err != nil || !u.IsAbs() {
			return nil, fmt.Errorf("fleetapi: redirect url %q is not an absolute URL", cfg.RedirectURL)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "fleet2mqtt"
	}
	endpoint := oauth2.Endpoint{
		AuthURL:   cfg.Endpoints.AuthorizeURL,
		TokenURL:  cfg.Endpoints.TokenURL,
		AuthStyle: oauth2.AuthStyleInParams,
	}
	c := &Client{
		cfg:  cfg,
		ep:   cfg.Endpoints,
		http: cfg.HTTPClient,
		log:  log,
		now:  time.Now,
		login: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       cfg.Scopes,
		},
		refresher: oauth2.Config{ClientID: cfg.ClientID, Endpoint: endpoint},
		partner:   make(map[Region]*oauth2.Token),
	}
	return c, nil
}

// Endpoints returns the addresses the client uses.
func (c *Client) Endpoints() Endpoints { return c.ep }

// oauthContext carries our HTTP client into golang.org/x/oauth2.
func (c *Client) oauthContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// PartnerToken returns a partner token (client credentials grant) for
// region, fetching a new one when the cached one has expired. Partner
// tokens act for the application itself: registration and partner-wide
// queries.
func (c *Client) PartnerToken(ctx context.Context, region Region) (*oauth2.Token, error) {
	return c.partnerToken(ctx, region, false)
}

func (c *Client) partnerToken(ctx context.Context, region Region, fresh bool) (*oauth2.Token, error) {
	base, err := c.ep.BaseURL(region)
	if err != nil {
		return nil, err
	}
	c.partnerMu.Lock()
	defer c.partnerMu.Unlock()
	if tok := c.partner[region]; tok != nil && tok.Valid() && !fresh {
		return tok, nil
	}
	if c.cfg.ClientSecret == "" {
		return nil, errors.New("fleetapi: partner token: client secret must be set")
	}
	cc := clientcredentials.Config{
		ClientID:       c.cfg.ClientID,
		ClientSecret:   c.cfg.ClientSecret,
		TokenURL:       c.ep.TokenURL,
		Scopes:         c.cfg.PartnerScopes,
		EndpointParams: url.Values{"audience": {base}},
		AuthStyle:      oauth2.AuthStyleInParams,
	}
	tok, err := cc.Token(c.oauthContext(ctx))
	if err != nil {
		return nil, c.tokenError(err)
	}
	c.partner[region] = tok
	return tok, nil
}

// tokenError turns an error of golang.org/x/oauth2 into an *APIError when
// Tesla answered, keeping the body's secrets-free error fields only.
func (c *Client) tokenError(err error) error {
	endpoint := "POST " + pathOf(c.ep.TokenURL)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &APIError{Endpoint: endpoint, Code: re.ErrorCode, Message: re.ErrorDescription}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
			e.RateLimit = parseRateLimit(re.Response.Header, c.now())
		}
		if e.Code == "" && e.Message == "" {
			e.Message = excerpt(re.Body)
		}
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("token request: %w", err)
	}
	// Anything else is an answer oauth2 could not read, such as a 200
	// without an access token.
	return fmt.Errorf("%w: token endpoint: %v", ErrMalformedResponse, err)
}

func pathOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Path != "" {
		return u.Path
	}
	return raw
}

// call is one Fleet API request.
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	// out receives the value of the "response" member; nil ignores it.
	out any
}

func (cl call) endpoint() string { return cl.method + " " + cl.path }

// roundTrip sends cl to region with the given access token, unwraps the
// {"response": …} envelope into cl.out, and turns error answers into
// *APIError.
func (c *Client) roundTrip(ctx context.Context, region Region, accessToken string, cl call) error {
	base, err := c.ep.BaseURL(region)
	if err != nil {
		return err
	}
	target := base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return fmt.Errorf("%s: encode body: %w", cl.endpoint(), err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, body)
	if err != nil {
		return fmt.Errorf("%s: %w", cl.endpoint(), err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	// Tesla's conventions ask for it on every request, bodies or not.
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.log.Debug("tesla request failed", "endpoint", cl.endpoint(), "region", region, "err", err)
		return fmt.Errorf("%s: %w", cl.endpoint(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", cl.endpoint(), err)
	}
	c.log.Debug("tesla request", "endpoint", cl.endpoint(), "region", region, "status", resp.StatusCode)
	if len(raw) > maxResponseSize {
		return fmt.Errorf("%w: %s: answer larger than %d bytes", ErrMalformedResponse, cl.endpoint(), maxResponseSize)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(resp, raw, region, cl)
	}
	if cl.out == nil {
		return nil // nothing to read (a DELETE may answer with an empty body)
	}
	var env struct {
		Response json.RawMessage `json:"response"`
		Error    any             `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedResponse, cl.endpoint(), err)
	}
	if len(env.Response) == 0 || string(env.Response) == "null" {
		if msg := errorText(env.Error); msg != "" {
			return &APIError{Status: resp.StatusCode, Code: msg, Endpoint: cl.endpoint(), Region: region}
		}
		return fmt.Errorf("%w: %s: no \"response\" in the answer", ErrMalformedResponse, cl.endpoint())
	}
	if err := json.Unmarshal(env.Response, cl.out); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedResponse, cl.endpoint(), err)
	}
	return nil
}

// apiError builds the *APIError of an error answer.
func (c *Client) apiError(resp *http.Response, raw []byte, region Region, cl call) *APIError {
	e := &APIError{Status: resp.StatusCode, Endpoint: cl.endpoint(), Region: region}
	var body struct {
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(raw, &body) == nil {
		e.Code = errorText(body.Error)
		e.Message = body.ErrorDescription
	} else {
		e.Message = excerpt(raw)
	}
	e.RateLimit = parseRateLimit(resp.Header, c.now())
	if e.Status == http.StatusMisdirectedRequest {
		e.RegionURL = regionURLFrom(e.Code+" "+e.Message, resp.Header)
	}
	return e
}

// errorText renders Tesla's "error" member, normally a string.
func errorText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return excerpt(b)
	}
}

var baseURLInText = regexp.MustCompile(`use base URL:\s*(https?://[^\s"',;]+)`)

// regionURLFrom finds the base URL a 421 names: in the error text ("… use
// base URL: https://…"), else in an Alt-Svc header ("h2=https://host").
func regionURLFrom(text string, h http.Header) string {
	if m := baseURLInText.FindStringSubmatch(text); m != nil {
		return strings.TrimRight(m[1], "./")
	}
	for _, v := range h.Values("Alt-Svc") {
		for alt := range strings.SplitSeq(v, ",") {
			proto, val, ok := strings.Cut(strings.TrimSpace(alt), "=")
			if !ok || proto != "h2" {
				continue
			}
			val, _, _ = strings.Cut(val, ";")
			val = strings.Trim(strings.TrimSpace(val), `"`)
			if strings.HasPrefix(val, ":") || val == "" {
				continue // same host, another port: names no region
			}
			if !strings.HasPrefix(val, "http://") && !strings.HasPrefix(val, "https://") {
				val = "https://" + strings.TrimSuffix(val, ":443")
			}
			return strings.TrimRight(val, "/")
		}
	}
	return ""
}

// excerpt returns the start of a body as printable text, for messages.
func excerpt(b []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(b))
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = s[:limit]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// partnerCall sends cl with a partner token of region, retrying once with
// a fresh token if Tesla refuses the cached one.
func (c *Client) partnerCall(ctx context.Context, region Region, cl call) error {
	fresh := false
	for {
		tok, err := c.partnerToken(ctx, region, fresh)
		if err != nil {
			return err
		}
		err = c.roundTrip(ctx, region, tok.AccessToken, cl)
		if !fresh && errors.Is(err, ErrUnauthorized) {
			fresh = true
			continue
		}
		return err
	}
}
