package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// flow is the wizard's logic between the page and Tesla: it reads and
// changes the state through the store, makes every call to Tesla, and
// returns view models for the pages. It knows nothing of HTTP requests,
// sessions or templates, so that a handler on any listener (the local web
// page, or the vehicle listener on the public hostname) can drive it.
type flow struct {
	cfg    Config
	deps   Deps
	timing Timing
	log    *slog.Logger
	store  *store
	seen   *seenCars
	tesla  teslaCache
	// logins are the owner logins sent to Tesla's page, waiting for
	// their callback on the public hostname.
	logins pendingLogins

	// pairMu guards the throttle of fleet_status questions while the
	// pairing page waits.
	pairMu   sync.Mutex
	pairPoll time.Time // last question
	pairErr  error     // its answer, while it is fresh

	// placesMu serialises the owner's changes to the places (places.go).
	placesMu sync.Mutex
}

// teslaTimeout bounds one step's conversation with Tesla.
const teslaTimeout = 45 * time.Second

// Errors of the wizard's own making.
var (
	errNoCredentials = errors.New("the Tesla application's client id and secret are not set")
	errNoKey         = errors.New("the key pair does not exist yet")
	errNoCA          = errors.New("the vehicle listener has no certificate chain to put in the config")
	errNoConfig      = errors.New("no config was pushed to this car")
)

// failKind says whose a step's failure is, which the page turns into its
// status. The zero kind leaves it to the error: a failure on this
// computer's files (fleetapi.IsLocal) or else at Tesla.
type failKind int

const (
	badInput    failKind = iota + 1 // the owner's answer cannot be used (422)
	notReady                        // an earlier step or the server is not ready (409)
	badRequest                      // a request the flow did not expect, such as a stray login callback (400)
	localFault                      // this computer failed, such as its disk (500)
	remoteFault                     // Tesla, or the way there, failed (502)
)

// stepError is a failure the flow has classified, and put in words when
// text is set; otherwise the page explains err.
type stepError struct {
	kind failKind
	text string
	err  error
}

func (e *stepError) Error() string {
	if e.text != "" {
		return e.text
	}
	return e.err.Error()
}

func (e *stepError) Unwrap() error { return e.err }

// refuse is an answer of the owner's that the step cannot use, in words
// for the page.
func refuse(format string, args ...any) error {
	return &stepError{kind: badInput, text: fmt.Sprintf(format, args...)}
}

// unready is a step that cannot run yet because of err.
func unready(err error) error { return &stepError{kind: notReady, err: err} }

// The effective settings: the configuration file's values, else the
// page's.

// host is the public hostname.
func (f *flow) host(st *state) string {
	if f.cfg.PublicHostname != "" {
		return f.cfg.PublicHostname
	}
	return st.PublicHostname
}

// credentials returns the client id and secret.
func (f *flow) credentials(st *state) (id, secret string) {
	if f.cfg.ClientID != "" {
		return f.cfg.ClientID, string(f.cfg.ClientSecret)
	}
	return st.ClientID, st.ClientSecret
}

// redirectURL is the OAuth redirect URI: setup.redirect_url when it names
// a callback of the vehicle listener (…/oauth/callback), else the public
// hostname's, https://<public hostname>/oauth/callback; "" while there is
// no hostname.
func (f *flow) redirectURL(st *state) string {
	if u := f.cfg.RedirectURL; u != "" && !isLegacyRedirect(u) {
		return u
	}
	if h := f.host(st); h != "" {
		return "https://" + h + CallbackPath
	}
	return ""
}

// oldRedirectURL is a redirect URI of the setup page itself (…/callback),
// as earlier versions had the owner register at Tesla, still saved or
// configured; "" when there is none or it is the current one. The page
// tells the owner to replace it at developer.tesla.com.
func (f *flow) oldRedirectURL(st *state) string {
	old := st.RedirectURL
	if u := f.cfg.RedirectURL; u != "" && isLegacyRedirect(u) {
		old = u
	}
	if old == f.redirectURL(st) {
		return ""
	}
	return old
}

// regions returns the regions chosen on the page, else the
// configuration's.
func (f *flow) regions(st *state) []fleetapi.Region {
	if len(st.Regions) > 0 {
		return st.Regions
	}
	rs, _ := parseRegions(f.cfg.Regions)
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

// teslaCache keeps the Tesla client built from the current settings, and
// the owner's session on it, across requests.
type teslaCache struct {
	mu       sync.Mutex
	settings string // what client was built from
	client   *fleetapi.Client
	owner    *fleetapi.Owner
}

// client returns the Tesla client for the current settings, building a
// new one when they changed.
func (f *flow) client() (*fleetapi.Client, error) {
	var id, secret, redirect string
	var auth fleetapi.Region
	f.store.read(func(st *state) {
		id, secret = f.credentials(st)
		redirect = f.redirectURL(st)
		auth = authRegion(f.regions(st))
	})
	if id == "" || secret == "" {
		return nil, errNoCredentials
	}
	settings := id + "\x00" + secret + "\x00" + redirect + "\x00" + string(auth)
	f.tesla.mu.Lock()
	defer f.tesla.mu.Unlock()
	if f.tesla.client != nil && f.tesla.settings == settings {
		return f.tesla.client, nil
	}
	c, err := fleetapi.New(fleetapi.Config{
		ClientID:     id,
		ClientSecret: secret,
		RedirectURL:  redirect,
		AuthRegion:   auth,
		Endpoints:    f.deps.TeslaEndpoints,
		HTTPClient:   f.deps.TeslaHTTPClient,
	}, f.log)
	if err != nil {
		return nil, err
	}
	f.tesla.client, f.tesla.settings, f.tesla.owner = c, settings, nil
	return c, nil
}

// owner returns the owner's session, from the stored token.
func (f *flow) owner() (*fleetapi.Owner, error) {
	c, err := f.client()
	if err != nil {
		return nil, err
	}
	var region fleetapi.Region
	f.store.read(func(st *state) {
		if st.Owner != nil {
			region = st.Owner.Region
		}
	})
	f.tesla.mu.Lock()
	defer f.tesla.mu.Unlock()
	if f.tesla.client == c && f.tesla.owner != nil {
		return f.tesla.owner, nil
	}
	o := c.Owner(f.store.tokens(), region)
	if f.tesla.client == c {
		f.tesla.owner = o
	}
	return o, nil
}

// loggedIn keeps the session of a fresh login, unless the settings changed
// meanwhile.
func (f *flow) loggedIn(c *fleetapi.Client, o *fleetapi.Owner) {
	f.tesla.mu.Lock()
	defer f.tesla.mu.Unlock()
	if f.tesla.client == c {
		f.tesla.owner = o
	}
}

// teslaFailed notes what an error from Tesla means for the state: a grant
// that is gone sends the owner back to the login step.
func (f *flow) teslaFailed(err error) {
	if !errors.Is(err, fleetapi.ErrLoginRequired) {
		return
	}
	err = f.store.update(func(st *state) error {
		if st.Owner == nil || st.Owner.GrantGone {
			return errNoSave
		}
		st.Owner.GrantGone = true
		return nil
	})
	f.logSaveError(err)
}

// teslaFailure says for the log what kind of failure err is when the flow
// tried to do what with Tesla: Tesla refusing is one thing, Tesla out of
// reach (DNS, connection, timeout) quite another, and this computer's own
// files a third. refusal is the line when Tesla refused; the others read
// "could not reach tesla (DNS or connection failure) to <what>" and so
// on.
func teslaFailure(err error, what, refusal string) string {
	var apiErr *fleetapi.APIError
	var netErr net.Error
	switch {
	case fleetapi.IsLocal(err):
		return "could not " + what + ": this computer failed"
	case errors.As(err, &apiErr) && (errors.Is(err, fleetapi.ErrUnauthorized) || apiErr.Status == http.StatusBadRequest || apiErr.Status == http.StatusForbidden):
		return refusal
	case errors.As(err, &apiErr) && errors.Is(err, fleetapi.ErrServer):
		return "tesla failed (server error) to " + what
	case errors.As(err, &apiErr):
		return "tesla answered with an error to " + what
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "tesla did not answer in time to " + what
	case errors.As(err, &netErr):
		return "could not reach tesla (DNS or connection failure) to " + what
	case errors.Is(err, errNoCredentials):
		return "could not " + what + ": the client id and secret are not set"
	}
	return "could not " + what
}

// logSaveError logs a failed save where no page shows it: the state in
// memory stays right and the next update saves it again.
func (f *flow) logSaveError(err error) {
	if err != nil {
		f.log.Error("setup: cannot save state", "err", err)
	}
}
