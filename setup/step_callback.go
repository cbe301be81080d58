package setup

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"html/template"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The owner's login comes back to the public hostname: Tesla sends the
// browser to https://<public hostname>/oauth/callback, which the vehicle
// listener serves (Wizard.PublicHandler) next to the application's public
// key. Nothing of the setup page's session is needed there, so the login
// works from inside Home Assistant's ingress (whose SameSite=Strict
// cookie never comes along on a redirect from Tesla) and from a phone
// anywhere. The logins under way live in the flow, found by their state;
// the setup page, polling, moves on when one completes.

// CallbackPath is where the vehicle listener takes Tesla's login answer.
const CallbackPath = "/oauth/callback"

const (
	// loginLifetime is how long a login sent to Tesla's page waits for
	// its callback: time to type a password and pass multi-factor
	// authentication, not much more.
	loginLifetime = 15 * time.Minute
	// maxPendingLogins bounds the logins waiting at once. Only the owner,
	// logged in to the setup page, starts one (with the form's CSRF
	// token), so no stranger can push the owner's login out; beyond the
	// bound the owner's own oldest one goes.
	maxPendingLogins = 8
)

// pendingLogin is a login sent to Tesla's page: the callback must bring
// back its state, and the id_token its nonce.
type pendingLogin struct {
	state, nonce string
	started      time.Time
}

// loginOutcome is how the latest login that came back ended, for the
// setup page that waits for it.
type loginOutcome struct {
	seq uint64 // 0: none yet
	ok  bool
	// problem says, on failure, what went wrong and what to do.
	problem string
	// next is the step to go to on success; notice is said there.
	next, notice string
}

// pendingLogins are the logins under way and the outcome of the latest.
type pendingLogins struct {
	mu      sync.Mutex
	list    []pendingLogin // oldest first
	outcome loginOutcome
}

// add keeps l, dropping expired logins and, beyond the bound, the oldest.
func (p *pendingLogins) add(l pendingLogin, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	if len(p.list) >= maxPendingLogins {
		p.list = p.list[len(p.list)-maxPendingLogins+1:]
	}
	p.list = append(p.list, l)
}

// take removes and returns the unexpired login whose state is state. Every
// login is compared in constant time, so that the time taken says nothing
// about how much of a state was right.
func (p *pendingLogins) take(state string, now time.Time) (pendingLogin, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	found := -1
	for i, l := range p.list {
		if state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(l.state)) == 1 {
			found = i
		}
	}
	if found < 0 {
		return pendingLogin{}, false
	}
	l := p.list[found]
	p.list = append(p.list[:found], p.list[found+1:]...)
	return l, true
}

func (p *pendingLogins) expireLocked(now time.Time) {
	keep := p.list[:0]
	for _, l := range p.list {
		if now.Sub(l.started) < loginLifetime {
			keep = append(keep, l)
		}
	}
	clear(p.list[len(keep):])
	p.list = keep
}

// finished records how a login ended.
func (p *pendingLogins) finished(o loginOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o.seq = p.outcome.seq + 1
	p.outcome = o
}

// latest is the outcome of the latest login that came back.
func (p *pendingLogins) latest() loginOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outcome
}

// startLogin starts a login and returns the address of Tesla's login page
// for it. It refuses while there is no redirect URI that can work: no
// public hostname, or a vehicle listener not reached there yet.
func (f *flow) startLogin() (string, error) {
	var missing string
	f.store.read(func(st *state) { missing = f.callbackMissing(st) })
	if missing != "" {
		return "", &stepError{kind: notReady, text: missing}
	}
	client, err := f.client()
	if err != nil {
		return "", unready(err)
	}
	l := pendingLogin{state: rand.Text(), nonce: rand.Text(), started: f.timing.Now()}
	f.logins.add(l, l.started)
	// A login that lacks scopes fleet2mqtt asks for now (the command
	// scopes, for logins made before commands) asks Tesla to show the
	// owner just those again.
	reconsent := len(f.missingCommandScopes()) > 0
	return client.AuthCodeURL(l.state, l.nonce, fleetapi.AuthURLOptions{ShowKeypairStep: true, PromptMissingScopes: reconsent}), nil
}

// callbackMissing says what keeps Tesla from sending the browser back to
// the callback ("" when nothing does): the public hostname, and the
// vehicle listener answering there (the key check of step 2 proved it).
func (f *flow) callbackMissing(st *state) string {
	if f.cfg.RedirectURL != "" && !isLegacyRedirect(f.cfg.RedirectURL) {
		return "" // the configuration names the callback's address
	}
	host := f.host(st)
	if host == "" {
		return "There is no public hostname yet, and Tesla's login sends you back to https://<public hostname>" + CallbackPath + ", which fleet2mqtt's vehicle listener answers. Enter the hostname in step 1."
	}
	if !f.done(st, stepKey) {
		return "Tesla's login sends you back to https://" + host + CallbackPath + ", which fleet2mqtt's vehicle listener answers, but it has not been reached at https://" + host + " yet. Run the key check in step 2 first: it fetches the public key from there."
	}
	return ""
}

// loginResult is a completed login, for the tab that completed it.
type loginResult struct {
	who string // "Alex Owner (owner@example.com)", or "" when Tesla did not say
}

// finishLogin completes the login whose state the callback's query
// carries. A query that belongs to no login under way (a stranger's, a
// replayed one, an expired one) is refused with errStrayCallback, and ends
// no login. For one that does, the code is exchanged (the id_token's nonce
// checked, the tokens saved before use), the owner's region looked up, and
// the outcome recorded for the setup page.
func (f *flow) finishLogin(ctx context.Context, query url.Values) (loginResult, error) {
	l, ok := f.logins.take(query.Get("state"), f.timing.Now())
	if !ok {
		return loginResult{}, errStrayCallback
	}
	region, registered, who, err := f.exchange(ctx, query, l)
	if err != nil {
		f.log.Info("setup: owner login failed", "err", err)
		f.logins.finished(loginOutcome{problem: problemOf(err).Text})
		return loginResult{}, err
	}
	f.log.Info("setup: owner logged in", "region", region)
	o := loginOutcome{ok: true, next: steps[stepVehicles].path}
	if !registered {
		// The owner's data lives where the application is not registered:
		// every vehicle call would answer 412.
		o.next = steps[stepRegister].path
		o.notice = "Your Tesla account lives in " + region.Name() + ", where the application is not registered yet. Register there in step 3 too."
	}
	f.logins.finished(o)
	return loginResult{who: who}, nil
}

// errStrayCallback is a callback that belongs to no login under way.
var errStrayCallback = &stepError{kind: badRequest,
	text: "This login answer belongs to no login this fleet2mqtt started, or it was used already or expired. Start the login again from the setup page.",
	err:  fleetapi.ErrStateMismatch}

func (f *flow) exchange(ctx context.Context, query url.Values, l pendingLogin) (region fleetapi.Region, registered bool, who string, err error) {
	code, err := fleetapi.ParseCallback(query, l.state)
	if err != nil {
		return "", false, "", &stepError{kind: badRequest, err: err}
	}
	client, err := f.client()
	if err != nil {
		return "", false, "", unready(err)
	}
	var id string
	f.store.read(func(st *state) { id, _ = f.credentials(st) })
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	owner, err := client.Exchange(ctx, code, l.nonce, f.store.tokens())
	if err != nil {
		return "", false, "", err
	}
	if region, err = owner.DiscoverRegion(ctx); err != nil {
		return "", false, "", err
	}
	// Who logged in is a courtesy: the login stands without it.
	if p, err := owner.Me(ctx); err != nil {
		f.log.Info("setup: cannot read the owner's account summary", "err", err)
	} else {
		who = p.FullName
		if p.Email != "" {
			if who != "" {
				who += " (" + p.Email + ")"
			} else {
				who = p.Email
			}
		}
	}
	f.loggedIn(client, owner)
	err = f.store.update(func(st *state) error {
		st.Owner = &ownerLogin{ClientID: id, Region: region, At: f.timing.Now(), Refreshable: owner.Refreshable()}
		registered = f.registered(st, region)
		// Tesla sent the browser to the current redirect URI: the old
		// one no longer matters.
		st.RedirectURL = ""
		return nil
	})
	return region, registered, who, err
}

// publicSite is what the vehicle listener serves for the setup page on the
// public hostname: the application's public key and the login callback.
// It is on the internet: the callback is rate limited, and every answer
// is a plain page that cannot be framed and loads nothing.
type publicSite struct {
	flow  *flow
	limit *callbackLimiter
}

func (p publicSite) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(fleetapi.PublicKeyPath, publicKey{p.flow.store})
	p.mount(mux)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		mux.ServeHTTP(rw, r)
	})
}

func (p publicSite) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+CallbackPath, p.callback)
}

// callback takes Tesla's answer to a login. Only an answer whose state is
// a login this instance started is looked at further; anything else gets
// a plain error page and changes nothing.
func (p publicSite) callback(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Cache-Control", "no-store")
	query := r.URL.Query()
	addr := remoteAddr(r)
	if wait := p.limit.take(addr, p.flow.logins.waiting(query.Get("state"))); wait > 0 {
		rw.Header().Set("Retry-After", retryAfter(wait))
		renderCallback(rw, http.StatusTooManyRequests, callbackView{Problem: "Too many requests. Wait " + wait.Round(time.Second).String() + " and try again."})
		return
	}
	res, err := p.flow.finishLogin(r.Context(), query)
	if err == errStrayCallback {
		p.flow.log.Info("setup: ignored a login callback that belongs to no login under way", "remote", addr.String())
	}
	if err != nil {
		status, text := statusOf(err), problemOf(err).Text
		if status == http.StatusInternalServerError {
			// What failed on this computer (its paths, its disk) is for
			// the setup page, not for a page on the internet.
			text = "fleet2mqtt could not complete the login on its own computer. The setup page says what went wrong."
		}
		renderCallback(rw, status, callbackView{Problem: text})
		return
	}
	renderCallback(rw, http.StatusOK, callbackView{LoggedIn: true, Who: res.who})
}

// waiting reports whether state is a login under way, without taking it:
// the rate limit lets those through its global ceiling.
func (p *pendingLogins) waiting(state string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := false
	for _, l := range p.list {
		if state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(l.state)) == 1 {
			ok = true
		}
	}
	return ok
}

// callbackView is what the callback's tab shows.
type callbackView struct {
	LoggedIn bool
	Who      string
	Problem  string
}

var callbackPage = template.Must(template.New("callback").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fleet2mqtt: Tesla login</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}
.ok{color:#1a7f37}.problem{color:#b42318}</style></head>
<body><main>
<h1>fleet2mqtt: Tesla login</h1>
{{if .LoggedIn}}<p class="ok" id="result">✓ Logged in as {{if .Who}}{{.Who}}{{else}}the owner of this Tesla account{{end}}, you can close this tab.</p>
<p>The setup page moves on by itself.</p>
{{else}}<div class="problem" role="alert" id="result"><p>{{.Problem}}</p></div>
<p>You can close this tab and go back to the setup page.</p>{{end}}
</main></body></html>
`))

func renderCallback(rw http.ResponseWriter, status int, v callbackView) {
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	callbackPage.Execute(rw, v)
}

// The callback's rate limit: a token bucket per client address (IPv6 by
// /64, what one home or host gets) and a global ceiling. An answer that
// carries the state of a login under way passes the ceiling (it needs
// only its own address's tokens), so strangers filling the ceiling cannot
// keep the owner from logging in.
const (
	callbackAddrBurst    = 10
	callbackAddrPerSec   = 1.0 / 6 // 10 a minute
	callbackGlobalBurst  = 60
	callbackGlobalPerSec = 1.0
	callbackMaxAddrs     = 4096
)

// callbackLimiter is the callback's rate limit.
type callbackLimiter struct {
	now    func() time.Time
	mu     sync.Mutex
	addrs  map[netip.Prefix]*tokenBucket
	global tokenBucket
}

func newCallbackLimiter(now func() time.Time) *callbackLimiter {
	return &callbackLimiter{
		now:    now,
		addrs:  make(map[netip.Prefix]*tokenBucket),
		global: tokenBucket{burst: callbackGlobalBurst, perSec: callbackGlobalPerSec, tokens: callbackGlobalBurst, at: now()},
	}
}

// take spends a token of addr (and of the global ceiling, unless the
// request answers a login under way). It returns 0 when the request may
// go on, else how long to wait.
func (c *callbackLimiter) take(addr netip.Addr, underWay bool) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	key := clientPrefix(addr)
	b := c.addrs[key]
	if b == nil {
		if len(c.addrs) >= callbackMaxAddrs {
			c.pruneLocked(now)
		}
		b = &tokenBucket{burst: callbackAddrBurst, perSec: callbackAddrPerSec, tokens: callbackAddrBurst, at: now}
		c.addrs[key] = b
	}
	if wait := b.wait(now); wait > 0 {
		return wait
	}
	if !underWay {
		if wait := c.global.wait(now); wait > 0 {
			return wait
		}
		c.global.spend()
	}
	b.spend()
	return 0
}

// pruneLocked makes room: buckets that refilled are forgotten (they say
// nothing), and if none did, one arbitrary address is, which keeps memory
// bounded whatever the number of addresses (the global ceiling still
// holds them all).
func (c *callbackLimiter) pruneLocked(now time.Time) {
	for k, b := range c.addrs {
		if b.full(now) {
			delete(c.addrs, k)
		}
	}
	for k := range c.addrs {
		if len(c.addrs) < callbackMaxAddrs {
			break
		}
		delete(c.addrs, k)
	}
}

// clientPrefix is what one client is counted as: an IPv4 address, or an
// IPv6 /64.
func clientPrefix(a netip.Addr) netip.Prefix {
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{} // no address: all such requests share one bucket
	}
	return p
}

// tokenBucket refills perSec tokens a second up to burst.
type tokenBucket struct {
	burst, perSec, tokens float64
	at                    time.Time
}

func (b *tokenBucket) refill(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+d.Seconds()*b.perSec)
		b.at = now
	}
}

// wait is how long until a token is there (0: there is one now).
func (b *tokenBucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1-b.tokens)/b.perSec)) * time.Second
}

func (b *tokenBucket) spend() { b.tokens-- }

func (b *tokenBucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.burst
}

// ownerStatus is the owner page's poll: whether a login completed since
// the page was shown (since is the outcome it knew then).
func (f *flow) ownerStatus(since uint64) (pollAnswer, loginOutcome) {
	o := f.logins.latest()
	if o.seq <= since {
		return pollAnswer{Items: []pollItem{{ID: "login-status", Text: "Waiting for Tesla's login (it opens in a new tab).", State: "wait"}}}, loginOutcome{}
	}
	if !o.ok {
		return pollAnswer{Items: []pollItem{{ID: "login-status", Text: "The login did not complete: " + o.problem + " Log in again.", State: "bad"}}}, o
	}
	return pollAnswer{Done: true, Next: o.next, Items: []pollItem{{ID: "login-status", Text: "Logged in with Tesla.", State: "ok"}}}, o
}

// loginSeq is the outcome the owner page knows when it is shown.
func (f *flow) loginSeq() string { return strconv.FormatUint(f.logins.latest().seq, 10) }
