package setup

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Access to the setup page. Behind Home Assistant's ingress, Home Assistant
// has authenticated the user: requests from the Supervisor's address with
// X-Ingress-Path are trusted. Anywhere else the page asks for a password.
// Either way the browser holds a session cookie (HttpOnly, SameSite=Lax)
// whose session carries the CSRF token every form and script request must
// echo. Tesla's login comes back to the vehicle listener on the public
// hostname, not here (step_callback.go): no session is needed there.

const (
	// sessionCookie names the session cookie. It has no Path attribute,
	// so the browser scopes it to the directory the page is served from,
	// which keeps it right under any path prefix.
	sessionCookie = "fleet2mqtt_setup"
	// csrfField and csrfHeader carry the CSRF token in forms and in the
	// page script's requests.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
	// ingressHeader is the path prefix Home Assistant's ingress adds.
	ingressHeader = "X-Ingress-Path"

	sessionIdle = 12 * time.Hour // a session unused this long ends
	maxSessions = 256            // oldest logged-in sessions are dropped beyond this
)

// session is one browser's session.
type session struct {
	id     string
	csrf   string
	authed bool
	seen   time.Time
	// flash is a message shown once on the next page.
	flash string
}

// sessionStore keeps logged-in sessions in memory: a restart asks for the
// password again, which is fine for a page used a few times.
//
// A visitor who has not logged in yet holds an anonymous session, which is
// not stored at all: its id is in the cookie and its CSRF token is derived
// from the id with a key of this process (anonymous). So no number of
// strangers can push the owner's login form out of memory ("CSRF check
// failed" on the right password), and strangers cost no memory.
type sessionStore struct {
	now     func() time.Time
	anonKey []byte // keys the CSRF tokens of anonymous sessions
	mu      sync.Mutex
	m       map[string]*session
}

func newSessionStore(now func() time.Time) *sessionStore {
	key := make([]byte, 32)
	rand.Read(key)
	return &sessionStore{now: now, anonKey: key, m: make(map[string]*session)}
}

// anonymous returns the anonymous session of id, a cookie value; nil when
// id cannot be one of ours. Nothing is stored: the CSRF token is
// HMAC-SHA256(key, id), which only this process can compute, so a form
// posted with it came from a page this process served to that cookie.
func (s *sessionStore) anonymous(id string) *session {
	if !validSessionID(id) {
		return nil
	}
	mac := hmac.New(sha256.New, s.anonKey)
	mac.Write([]byte("fleet2mqtt setup login form\x00"))
	mac.Write([]byte(id))
	return &session{id: id, csrf: base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), seen: s.now()}
}

// newAnonymous starts an anonymous session (nothing stored).
func (s *sessionStore) newAnonymous() *session {
	return s.anonymous(rand.Text() + rand.Text())
}

// validSessionID accepts what rand.Text()+rand.Text() makes: 52
// characters of the base32 alphabet.
func validSessionID(id string) bool {
	if len(id) != 52 {
		return false
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// get returns the live session of id, or nil.
func (s *sessionStore) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return nil
	}
	now := s.now()
	if now.Sub(sess.seen) > sessionIdle {
		delete(s.m, id)
		return nil
	}
	sess.seen = now
	return sess
}

// create starts a session: a stored one when authed (logged in, or behind
// trusted ingress), else an anonymous one (newAnonymous), which is not
// stored.
func (s *sessionStore) create(authed bool) *session {
	if !authed {
		return s.newAnonymous()
	}
	sess := &session{id: rand.Text() + rand.Text(), csrf: rand.Text(), authed: true, seen: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		// Drop the least recently used session. Only people who know the
		// password (or came through Home Assistant) make sessions here.
		var victim *session
		for _, c := range s.m {
			if victim == nil || c.seen.Before(victim.seen) {
				victim = c
			}
		}
		delete(s.m, victim.id)
	}
	s.m[sess.id] = sess
	return sess
}

// delete ends a session.
func (s *sessionStore) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// update runs fn on a session under the store's lock.
func (s *sessionStore) update(sess *session, fn func(*session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(sess)
}

// limiter slows down password guessing, per client: after a few failures
// from one client each further attempt must wait, twice as long after
// every failure, up to maxLockout. A client is an address, an IPv6 /64
// network (one home's share), or behind Home Assistant's Supervisor the
// forwarded client (see access). Over all clients there is a ceiling as
// well: past freeGlobalFailures, every client that has failed waits as
// long as the global lockout. A client that has not failed never waits, so
// that strangers guessing from elsewhere cannot lock the owner out; a
// success clears the client.
type limiter struct {
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]*attempts // by client
	global attempts
}

type attempts struct {
	failures int
	until    time.Time
	last     time.Time
}

const (
	freeFailures       = 5  // wrong passwords per client before waits start
	freeGlobalFailures = 20 // over all clients
	maxLockout         = 15 * time.Minute
	forgetAfter        = time.Hour
	// maxClients bounds the clients remembered; past it the one that
	// failed longest ago is forgotten first.
	maxClients = 4096
)

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, m: make(map[string]*attempts)}
}

// clientKey is who a request's address counts as: the address, or for
// IPv6 its /64 network, since one home gets a whole /64 to choose from.
func clientKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// wait returns how long addr must wait before trying a password again.
func (l *limiter) wait(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := clientKey(addr)
	a := l.m[key]
	if a == nil {
		return 0
	}
	if now.Sub(a.last) > forgetAfter {
		delete(l.m, key)
		return 0
	}
	w := a.until.Sub(now)
	if now.Sub(l.global.last) <= forgetAfter {
		w = max(w, l.global.until.Sub(now))
	}
	return max(w, 0)
}

// fail records a wrong password from addr.
func (l *limiter) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := clientKey(addr)
	a := l.m[key]
	if a == nil {
		l.makeRoom(now)
		a = &attempts{}
		l.m[key] = a
	}
	if now.Sub(l.global.last) > forgetAfter {
		l.global = attempts{}
	}
	a.count(now, freeFailures)
	l.global.count(now, freeGlobalFailures)
}

// count notes one failure; past free of them, the next attempt waits.
func (a *attempts) count(now time.Time, free int) {
	a.failures++
	a.last = now
	if over := a.failures - free + 1; over > 0 {
		a.until = now.Add(min(time.Second<<min(over-1, 20), maxLockout))
	}
}

// makeRoom forgets clients whose failures are old, and when maxClients
// are still remembered, the one whose last failure is the oldest.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.m) < maxClients {
		return
	}
	var oldest string
	for k, a := range l.m {
		if now.Sub(a.last) > forgetAfter {
			delete(l.m, k)
			continue
		}
		if oldest == "" || a.last.Before(l.m[oldest].last) {
			oldest = k
		}
	}
	if len(l.m) >= maxClients {
		delete(l.m, oldest)
	}
}

// succeed forgets addr's failures.
func (l *limiter) succeed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, clientKey(addr))
}

// passwordFileData is the generated password's hash, kept in
// passwordFile.
type passwordFileData struct {
	Algorithm  string `json:"algorithm"` // pbkdf2-sha256
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Hash       []byte `json:"hash"`
}

const pbkdf2Iterations = 200_000

// password checks the setup page's password: the configured one, or the
// generated one whose hash is in the data directory.
type password struct {
	configured [32]byte // SHA-256 of the configured password
	file       *passwordFileData
}

// loadPassword returns the configured password, or the generated one,
// making and printing it to out on the first start.
func loadPassword(cfg Secret, path string, out io.Writer) (*password, error) {
	if cfg != "" {
		return &password{configured: sha256.Sum256([]byte(cfg))}, nil
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var pf passwordFileData
		if err := json.Unmarshal(data, &pf); err != nil || pf.Algorithm != "pbkdf2-sha256" || pf.Iterations < 1 || len(pf.Hash) == 0 {
			return nil, fmt.Errorf("setup password file %s is damaged: delete it to have a new password generated", path)
		}
		return &password{file: &pf}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read setup password: %w", err)
	}

	plain := rand.Text()
	pf := &passwordFileData{Algorithm: "pbkdf2-sha256", Iterations: pbkdf2Iterations, Salt: []byte(rand.Text())}
	if pf.Hash, err = pbkdf2.Key(sha256.New, plain, pf.Salt, pf.Iterations, 32); err != nil {
		return nil, fmt.Errorf("hash setup password: %w", err)
	}
	data, err = json.Marshal(pf)
	if err != nil {
		return nil, fmt.Errorf("save setup password: %w", err)
	}
	if err := fleetapi.WriteFileAtomic(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("save setup password: %w", err)
	}
	// Printed, not logged: log lines travel to places a password must not.
	fmt.Fprintf(out, "\nfleet2mqtt setup page password (shown only this once): %s\n"+
		"Set setup.password in the configuration instead, or delete %s to get a new one.\n\n", plain, path)
	return &password{file: pf}, nil
}

// check reports whether guess is the password.
func (p *password) check(guess string) bool {
	if p.file == nil {
		sum := sha256.Sum256([]byte(guess))
		return subtle.ConstantTimeCompare(sum[:], p.configured[:]) == 1
	}
	h, err := pbkdf2.Key(sha256.New, guess, p.file.Salt, p.file.Iterations, len(p.file.Hash))
	return err == nil && subtle.ConstantTimeCompare(h, p.file.Hash) == 1
}

// remoteAddr is the request's peer address.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ingressPrefix returns the X-Ingress-Path of a trusted ingress request;
// ok is false when the request did not come through ingress. A request
// that carries the header from anywhere else is forged: refused.
func (s *site) ingressPrefix(r *http.Request) (prefix string, ok bool, err error) {
	vals := r.Header.Values(ingressHeader)
	if len(vals) == 0 {
		return "", false, nil
	}
	if !s.trustIngress || remoteAddr(r) != s.ingress {
		return "", false, errors.New("X-Ingress-Path from an address that is not Home Assistant's Supervisor")
	}
	p := vals[0]
	if len(vals) > 1 || !validPrefix(p) {
		return "", false, errors.New("malformed X-Ingress-Path")
	}
	return strings.TrimSuffix(p, "/"), true, nil
}

// validPrefix accepts an absolute path of safe characters.
func validPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > 256 || strings.Contains(p, "//") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/-_.~", c)) {
			return false
		}
	}
	return true
}

// reqInfo is what the access layer learned about a request.
type reqInfo struct {
	sess    *session
	ingress bool
	prefix  string // X-Ingress-Path, when through ingress
}

type ctxKey struct{}

// access wraps the page handlers: it refuses forged ingress requests,
// answers paths the page does not have (404, 405) at once, finds or
// starts the session, lets the login page and static assets through, and
// sends everyone else without a session to the login page (or answers 401
// to scripts and forms). Every page lives at the top level, next to the
// login page, so the relative redirect to it lands there; a deeper,
// unknown path must not be redirected relative to itself, which would
// loop.
func (s *site) access(next *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(rw)
		prefix, ingress, err := s.ingressPrefix(r)
		if err != nil {
			s.log.Warn("setup page: refused request", "reason", err.Error(), "remote", remoteAddr(r).String())
			http.Error(rw, "Forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		if !ingress {
			// Outside Home Assistant the page must not be framed.
			rw.Header().Set("X-Frame-Options", "DENY")
		}
		_, pattern := next.Handler(r)
		if pattern == "" && !strings.HasPrefix(path.Clean(r.URL.Path), "/static/") && !otherMethod(next, r) {
			s.notFound(rw, r)
			return
		}
		if pattern == "" || strings.HasPrefix(path.Clean(r.URL.Path), "/static/") {
			next.ServeHTTP(rw, r) // 405, and the assets
			return
		}
		if !ingress {
			r = s.forwardedClient(r)
		}
		info := &reqInfo{ingress: ingress, prefix: prefix}
		if c, err := r.Cookie(sessionCookie); err == nil {
			info.sess = s.sessions.get(c.Value)
			if info.sess == nil && !ingress {
				info.sess = s.sessions.anonymous(c.Value)
			}
		}
		if info.sess == nil || (ingress && !info.sess.authed) {
			// Ingress users are authenticated by Home Assistant; everyone
			// else gets an anonymous session for the login form's token.
			info.sess = s.sessions.create(ingress)
			setSessionCookie(rw, r, info, info.sess)
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))

		if r.URL.Path != "/login" && !info.sess.authed {
			if r.Method == http.MethodGet && !wantsJSON(r) {
				redirect(rw, "login")
				return
			}
			http.Error(rw, "Unauthorized: log in to the setup page first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !checkCSRF(rw, r, info.sess) {
			http.Error(rw, "Forbidden: the form is out of date or was not sent by this page (CSRF check failed). Reload the page and try again.", http.StatusForbidden)
			return
		}
		if i, ok := routeSteps[pattern]; ok && s.gate(rw, r, i) {
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// forwardedClient returns r with the address of the client Home
// Assistant's Supervisor forwards for (the last X-Forwarded-For hop, which
// the Supervisor appends) as its RemoteAddr, when r comes from the trusted
// Supervisor without the ingress header. Everyone behind the Supervisor
// shares its address; the password limits count each of them on its own.
// From any other address X-Forwarded-For is not believed.
func (s *site) forwardedClient(r *http.Request) *http.Request {
	if !s.trustIngress || remoteAddr(r) != s.ingress {
		return r
	}
	vals := r.Header.Values("X-Forwarded-For")
	if len(vals) == 0 {
		return r
	}
	hops := strings.Split(vals[len(vals)-1], ",")
	client, err := netip.ParseAddr(strings.TrimSpace(hops[len(hops)-1]))
	if err != nil {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.RemoteAddr = netip.AddrPortFrom(client.Unmap(), 0).String()
	return r2
}

// otherMethod reports whether r's path is a page with other methods, which
// the mux answers with 405 Method Not Allowed.
func otherMethod(mux *http.ServeMux, r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			return true
		}
	}
	return false
}

// notFound answers a path the page does not have with a page that says
// so and leads back to the setup, from however deep the path is.
func (s *site) notFound(rw http.ResponseWriter, r *http.Request) {
	root := strings.Repeat("../", max(strings.Count(path.Clean("/"+r.URL.Path), "/")-1, 0))
	if root == "" {
		root = "./"
	}
	s.render(rw, r, http.StatusNotFound, "notfound", &page{Title: "This page does not exist", Step: -1, Root: root})
}

// infoOf returns what access learned about the request.
func infoOf(r *http.Request) *reqInfo {
	info, _ := r.Context().Value(ctxKey{}).(*reqInfo)
	return info
}

// checkCSRF compares the request's token (form field or header) with the
// session's.
// The form is parsed here, once, for the handlers.
func checkCSRF(rw http.ResponseWriter, r *http.Request, sess *session) bool {
	r.Body = http.MaxBytesReader(rw, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return false
	}
	token := r.Header.Get(csrfHeader)
	if token == "" {
		token = r.PostForm.Get(csrfField)
	}
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(sess.csrf)) == 1
}

func setSessionCookie(rw http.ResponseWriter, r *http.Request, info *reqInfo, sess *session) {
	http.SetCookie(rw, &http.Cookie{
		Name:     sessionCookie,
		Value:    sess.id,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   scheme(r, info) == "https",
	})
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// setSecurityHeaders keeps the page from loading anything but its own
// assets, from being cached, and from leaking its address.
func setSecurityHeaders(rw http.ResponseWriter) {
	h := rw.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// redirect sends the browser to a page by a relative URL, so that it
// stays under whatever path prefix the browser sees. (http.Redirect would
// turn it into an absolute path.)
func redirect(rw http.ResponseWriter, to string) {
	rw.Header().Set("Location", "./"+to)
	rw.WriteHeader(http.StatusSeeOther)
}

// retryAfter formats a wait for the Retry-After header.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}
