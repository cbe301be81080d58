package fleetapitest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// knownScopes are the scopes Tesla's login knows.
var knownScopes = []string{
	"openid", "offline_access", "user_data", "vehicle_device_data", "vehicle_location",
	"vehicle_cmds", "vehicle_charging_cmds", "energy_device_data", "energy_cmds",
}

func (s *Server) authMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth2/v3/authorize", s.handleLoginPage)
	mux.HandleFunc("POST /oauth2/v3/authorize", s.handleAuthorize)
	mux.HandleFunc("POST /oauth2/v3/token", s.handleToken)
	return mux
}

// authorizeParams are the parameters Tesla's login page accepts.
var authorizeParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"prompt_missing_scopes", "show_keypair_step", "locale", "prompt"}

// checkClientAndRedirect answers with an error page, as Tesla shows, when
// the request has unknown or repeated parameters, or an unknown client or
// redirect URI: there is nowhere safe to send the browser then. It returns
// the redirect URI and whether the owner was asked to decline.
func (s *Server) checkClientAndRedirect(w http.ResponseWriter, q url.Values) (redirect string, deny, ok bool) {
	for k, vs := range q {
		if !slices.Contains(authorizeParams, k) {
			http.Error(w, "unknown parameter "+k, http.StatusBadRequest)
			return "", false, false
		}
		if len(vs) != 1 {
			http.Error(w, "repeated parameter "+k, http.StatusBadRequest)
			return "", false, false
		}
	}
	if q.Get("client_id") != s.opts.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return "", false, false
	}
	redirect = q.Get("redirect_uri")
	s.mu.Lock()
	known := slices.Contains(s.redirects, redirect)
	deny = s.denyLogin
	s.mu.Unlock()
	if !known {
		http.Error(w, "We don't recognize this redirect_uri", http.StatusBadRequest)
		return "", false, false
	}
	return redirect, deny, true
}

// loginPage is the fake's login and consent page: one button that posts
// the login's parameters back.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tesla account (fake)</title></head>
<body><main>
<h1>Sign in to your Tesla account</h1>
<p>This application asks to see your vehicles' information and location.</p>
<form method="post" action="authorize">
{{range $k, $v := .}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">
{{end}}<button type="submit" id="allow">Sign in and allow</button>
</form>
</main></body></html>
`))

// handleLoginPage is Tesla's login page as a browser sees it. Like Tesla's,
// it refuses to be shown inside a frame (X-Frame-Options: DENY and the
// frame-ancestors directive).
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
	q := r.URL.Query()
	if _, _, ok := s.checkClientAndRedirect(w, q); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	loginPage.Execute(w, q)
}

// handleAuthorize is the login page's form, reduced to its outcome: the
// owner logs in and consents at once, and the browser is sent back to the
// redirect URI with a code (or with error=access_denied after DenyLogin).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.PostForm
	redirect, deny, ok := s.checkClientAndRedirect(w, q)
	if !ok {
		return
	}
	back := func(params url.Values) {
		u, _ := url.Parse(redirect)
		qq := u.Query()
		for k, vs := range params {
			qq[k] = vs
		}
		u.RawQuery = qq.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		back(url.Values{"error": {code}, "error_description": {desc}, "state": {state}})
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if state == "" {
		fail("invalid_request", "state is required")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		fail("invalid_scope", "scope is required")
		return
	}
	for _, sc := range scopes {
		if !slices.Contains(knownScopes, sc) {
			fail("invalid_scope", "unknown scope "+sc)
			return
		}
	}
	for _, flag := range []string{"prompt_missing_scopes", "show_keypair_step"} {
		if v := q.Get(flag); v != "" && v != "true" && v != "false" {
			fail("invalid_request", flag+" must be true or false")
			return
		}
	}
	if deny {
		fail("access_denied", "The user denied the request")
		return
	}
	code := rand.Text()
	s.mu.Lock()
	s.codes[code] = &authCode{redirectURI: redirect, nonce: q.Get("nonce"), scopes: scopes, expires: s.now().Add(codeLifetime)}
	s.mu.Unlock()
	back(url.Values{"code": {code}, "state": {state}, "issuer": {s.Issuer()}})
}

// Login plays the owner's browser on the login page: it opens authURL
// (from fleetapi.Client.AuthCodeURL), submits the page's form, and returns
// the callback URL the page redirects to, with its code and state, without
// following it.
func (s *Server) Login(ctx context.Context, authURL string) (*url.URL, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login page answered %s", resp.Status)
	}
	form := u.Query()
	u.RawQuery = ""
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("login page answered %s", resp.Status)
	}
	return url.Parse(resp.Header.Get("Location"))
}

// handleToken is the token endpoint: authorization_code, refresh_token and
// client_credentials grants, form encoded, each with exactly its
// documented fields.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "the token request must be form encoded"))
		return
	}
	if r.URL.RawQuery != "" {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "parameters belong in the body, not the URL"))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", err.Error()))
		return
	}
	form := r.PostForm
	for k, vs := range form {
		if len(vs) != 1 {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "repeated parameter "+k))
			return
		}
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		s.exchangeCode(w, form)
	case "refresh_token":
		s.refreshToken(w, form)
	case "client_credentials":
		s.clientCredentials(w, form)
	default:
		writeJSON(w, http.StatusBadRequest, oauthError("unsupported_grant_type", "grant_type "+form.Get("grant_type")))
	}
}

// checkFields answers 400 unless form has exactly the given fields.
func checkFields(w http.ResponseWriter, form url.Values, fields ...string) bool {
	for _, f := range fields {
		if form.Get(f) == "" {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "missing "+f))
			return false
		}
	}
	for k := range form {
		if !slices.Contains(fields, k) {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "unexpected parameter "+k+" for grant_type "+form.Get("grant_type")))
			return false
		}
	}
	return true
}

// checkClient answers 401 invalid_client unless the credentials are the
// application's.
func (s *Server) checkClient(w http.ResponseWriter, form url.Values, withSecret bool) bool {
	if form.Get("client_id") != s.opts.ClientID || (withSecret && form.Get("client_secret") != s.opts.ClientSecret) {
		writeJSON(w, http.StatusUnauthorized, oauthError("invalid_client", "client authentication failed"))
		return false
	}
	return true
}

// audienceFor checks an audience (a region's base URL) and returns the
// hosts an owner token for it serves: na and eu share tokens, cn stands
// alone.
func (s *Server) audienceFor(audience string, owner bool) ([]string, bool) {
	var region fleetapi.Region
	for r, srv := range s.regions {
		if srv.URL == audience {
			region = r
		}
	}
	switch {
	case region == "":
		return nil, false
	case !owner || region == fleetapi.RegionCN:
		return []string{audience}, true
	default:
		return []string{s.regions[fleetapi.RegionNA].URL, s.regions[fleetapi.RegionEU].URL}, true
	}
}

func (s *Server) exchangeCode(w http.ResponseWriter, form url.Values) {
	if !checkFields(w, form, "grant_type", "client_id", "client_secret", "code", "audience", "redirect_uri") || !s.checkClient(w, form, true) {
		return
	}
	aud, ok := s.audienceFor(form.Get("audience"), true)
	if !ok {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "audience must be a Fleet API base URL"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.codes[form.Get("code")]
	switch {
	case c == nil:
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", "unknown authorization code"))
		return
	case c.used:
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", "authorization code already used"))
		return
	case s.now().After(c.expires):
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", "authorization code expired"))
		return
	case c.redirectURI != form.Get("redirect_uri"):
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", "redirect_uri differs from the login's"))
		return
	}
	c.used = true
	access, refresh := s.issueOwnerLocked(aud, c.scopes)
	idToken := ""
	if slices.Contains(c.scopes, "openid") {
		now := s.now()
		idToken = newToken(map[string]any{
			"iss": s.Issuer(), "aud": s.opts.ClientID, "sub": "fake-owner",
			"nonce": c.nonce, "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix(),
		})
	}
	writeJSON(w, http.StatusOK, tokenAnswer(access, refresh, idToken, int(TokenLifetime.Seconds())))
}

// issueOwnerLocked creates an owner access token, and a refresh token when
// offline_access was granted.
func (s *Server) issueOwnerLocked(aud, scopes []string) (access, refresh string) {
	now := s.now()
	access = newToken(map[string]any{"iss": s.Issuer(), "aud": aud, "scp": scopes, "sub": "fake-owner", "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix()})
	s.access[access] = &accessToken{kind: ownerToken, aud: aud, scopes: scopes, expires: now.Add(TokenLifetime)}
	if slices.Contains(scopes, "offline_access") {
		refresh = "NA_" + rand.Text() + rand.Text()
		s.refresh[refresh] = &refreshGrant{aud: aud, scopes: scopes}
	}
	return access, refresh
}

func (s *Server) refreshToken(w http.ResponseWriter, form url.Values) {
	if form.Has("client_secret") {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "a refresh carries client_id and refresh_token, no client_secret"))
		return
	}
	if !checkFields(w, form, "grant_type", "client_id", "refresh_token") || !s.checkClient(w, form, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.refresh[form.Get("refresh_token")]
	if g == nil || g.used {
		status, body := loginRequired("the refresh token is invalid, expired or already used")
		writeJSON(w, status, body)
		return
	}
	// Single use: the old refresh token dies with this answer.
	g.used = true
	access, refresh := s.issueOwnerLocked(g.aud, g.scopes)
	writeJSON(w, http.StatusOK, tokenAnswer(access, refresh, "", int(TokenLifetime.Seconds())))
}

func (s *Server) clientCredentials(w http.ResponseWriter, form url.Values) {
	if !checkFields(w, form, "grant_type", "client_id", "client_secret", "audience", "scope") || !s.checkClient(w, form, true) {
		return
	}
	aud, ok := s.audienceFor(form.Get("audience"), false)
	if !ok {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "audience must be a Fleet API base URL"))
		return
	}
	scopes := strings.Fields(form.Get("scope"))
	for _, sc := range scopes {
		if !slices.Contains(knownScopes, sc) {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_scope", "unknown scope "+sc))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	access := newToken(map[string]any{"iss": s.Issuer(), "aud": aud, "scp": scopes, "sub": s.opts.ClientID, "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix()})
	s.access[access] = &accessToken{kind: partnerToken, aud: aud, scopes: scopes, expires: now.Add(TokenLifetime)}
	writeJSON(w, http.StatusOK, tokenAnswer(access, "", "", int(TokenLifetime.Seconds())))
}

// bearer checks the request's access token: known, unexpired, of the right
// kind, valid for this region's host. It answers 401 itself when not.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request, region fleetapi.Region, kind tokenKind) (*accessToken, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		writeJSON(w, http.StatusUnauthorized, errorBody("invalid_token", "missing bearer token"))
		return nil, false
	}
	s.mu.Lock()
	t := s.access[raw]
	var tok accessToken
	if t != nil {
		tok = *t
	}
	now := s.now()
	s.mu.Unlock()
	var problem error
	switch {
	case t == nil:
		problem = errors.New("unknown token")
	case now.After(tok.expires):
		problem = errors.New("token expired (401)")
	case tok.kind != kind && kind == partnerToken:
		problem = errors.New("this endpoint requires a partner authentication token")
	case tok.kind != kind:
		problem = errors.New("this endpoint requires a third-party (owner) token")
	case !slices.Contains(tok.aud, s.regions[region].URL):
		problem = fmt.Errorf("token audience %v does not include this host", tok.aud)
	}
	if problem != nil {
		writeJSON(w, http.StatusUnauthorized, errorBody("invalid_token", problem.Error()))
		return nil, false
	}
	return &tok, true
}
