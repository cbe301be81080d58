package fleetapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"
)

// AuthURLOptions are the optional parameters of Tesla's login page.
type AuthURLOptions struct {
	// PromptMissingScopes asks the owner again for scopes they did not
	// grant before (when the application asks for more later).
	PromptMissingScopes bool
	// ShowKeypairStep tells the owner that pairing the virtual key comes
	// next.
	ShowKeypairStep bool
	// Locale is the language of Tesla's page, such as "de-DE" (optional).
	Locale string
}

// AuthCodeURL returns the address of Tesla's login page for the owner's
// browser. state and nonce must be fresh random values (crypto/rand.Text)
// kept in the browser session: check state with ParseCallback and pass
// nonce to Exchange.
func (c *Client) AuthCodeURL(state, nonce string, opts AuthURLOptions) string {
	params := []oauth2.AuthCodeOption{}
	if nonce != "" {
		params = append(params, oauth2.SetAuthURLParam("nonce", nonce))
	}
	if opts.PromptMissingScopes {
		params = append(params, oauth2.SetAuthURLParam("prompt_missing_scopes", "true"))
	}
	if opts.ShowKeypairStep {
		params = append(params, oauth2.SetAuthURLParam("show_keypair_step", "true"))
	}
	if opts.Locale != "" {
		params = append(params, oauth2.SetAuthURLParam("locale", opts.Locale))
	}
	return c.login.AuthCodeURL(state, params...)
}

// ParseCallback reads the query of the OAuth callback (code, state,
// issuer; or error and error_description) and checks that its state is
// wantState. It returns the authorization code for Exchange.
func ParseCallback(query url.Values, wantState string) (code string, err error) {
	if e := query.Get("error"); e != "" {
		desc := query.Get("error_description")
		if e == "access_denied" {
			if desc != "" {
				return "", fmt.Errorf("%w: %s", ErrAccessDenied, desc)
			}
			return "", ErrAccessDenied
		}
		if desc != "" {
			return "", fmt.Errorf("%w: %s: %s", ErrLoginFailed, e, desc)
		}
		return "", fmt.Errorf("%w: %s", ErrLoginFailed, e)
	}
	if wantState == "" || !constantTimeEqual(query.Get("state"), wantState) {
		return "", ErrStateMismatch
	}
	code = query.Get("code")
	if code == "" {
		return "", fmt.Errorf("%w: login callback without a code", ErrMalformedResponse)
	}
	return code, nil
}

// Exchange turns the authorization code of a login into the owner's
// tokens, checks the id_token's nonce (when nonce is not empty), saves the
// tokens in store before returning, and returns the owner's session. The
// session starts in the client's AuthRegion; call Owner.DiscoverRegion
// next.
func (c *Client) Exchange(ctx context.Context, code, nonce string, store TokenStore) (*Owner, error) {
	if store == nil {
		return nil, errors.New("fleetapi: exchange: nil token store")
	}
	if c.login.RedirectURL == "" {
		return nil, errors.New("fleetapi: exchange: redirect url must be set")
	}
	audience, err := c.ep.BaseURL(c.cfg.AuthRegion)
	if err != nil {
		return nil, err
	}
	tok, err := c.login.Exchange(c.oauthContext(ctx), code, oauth2.SetAuthURLParam("audience", audience))
	if err != nil {
		return nil, c.tokenError(err)
	}
	if nonce != "" {
		idToken, _ := tok.Extra("id_token").(string)
		if err := checkNonce(idToken, nonce); err != nil {
			return nil, err
		}
	}
	if err := store.SaveToken(tok); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	o := c.Owner(store, c.cfg.AuthRegion)
	o.tokens.tok = tok
	return o, nil
}

// checkNonce compares the nonce claim of an id_token with want. The token
// came straight from Tesla's token endpoint over TLS, which authenticates
// it (OpenID Connect Core 3.1.3.7); its signature is not checked.
func checkNonce(idToken, want string) error {
	if idToken == "" {
		return fmt.Errorf("%w: the answer has no id_token (is the openid scope asked?)", ErrNonceMismatch)
	}
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: id_token is not a JWT", ErrNonceMismatch)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return fmt.Errorf("%w: id_token payload: %v", ErrNonceMismatch, err)
	}
	var claims struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("%w: id_token payload: %v", ErrNonceMismatch, err)
	}
	if !constantTimeEqual(claims.Nonce, want) {
		return ErrNonceMismatch
	}
	return nil
}

// ownerTokens hands out the owner's access token, refreshing it when it
// expires and persisting every rotated token before it is used.
type ownerTokens struct {
	c     *Client
	store TokenStore

	mu sync.Mutex
	// tok is the newest token; unsaved marks one the store has not
	// accepted yet (it is saved again before use).
	tok     *oauth2.Token
	unsaved bool
}

// token returns a valid access token. When Tesla refused an access token
// that looked valid, pass it as refused: the token is refreshed unless
// another caller has replaced it meanwhile.
func (t *ownerTokens) token(ctx context.Context, refused string) (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == nil {
		tok, err := t.store.LoadToken()
		if err != nil {
			return nil, fmt.Errorf("owner token: %w", err)
		}
		if tok == nil {
			return nil, fmt.Errorf("%w: no stored token", ErrLoginRequired)
		}
		t.tok = tok
	}
	if t.unsaved {
		if err := t.store.SaveToken(t.tok); err != nil {
			return nil, fmt.Errorf("save rotated token: %w", err)
		}
		t.unsaved = false
	}
	if t.tok.Valid() && (refused == "" || refused != t.tok.AccessToken) {
		return t.tok, nil
	}
	if t.tok.RefreshToken == "" {
		return nil, fmt.Errorf("%w: the access token expired and there is no refresh token", ErrLoginRequired)
	}
	src := t.c.refresher.TokenSource(t.c.oauthContext(ctx), &oauth2.Token{RefreshToken: t.tok.RefreshToken})
	tok, err := src.Token()
	if err != nil {
		return nil, t.c.tokenError(err)
	}
	// The old refresh token is spent now: keep the new one whatever
	// happens next, and persist it before anyone uses the access token.
	t.tok, t.unsaved = tok, true
	if err := t.store.SaveToken(tok); err != nil {
		return nil, fmt.Errorf("save rotated token: %w", err)
	}
	t.unsaved = false
	return tok, nil
}

// current returns the newest token without refreshing.
func (t *ownerTokens) current() *oauth2.Token {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tok
}
