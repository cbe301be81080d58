package setup

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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
	maxSessions = 256            // oldest sessions are dropped beyond this
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

// sessionStore keeps sessions in memory: a restart asks for the password
// again, which is fine for a page used a few times.
type sessionStore struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessionStore(now func() time.Time) *sessionStore {
	return &sessionStore{now: now, m: make(map[string]*session)}
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

// create starts a session.
func (s *sessionStore) create(authed bool) *session {
	sess := &session{id: rand.Text() + rand.Text(), csrf: rand.Text(), authed: authed, seen: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		// Drop the least recently used session, preferring anonymous
		// ones, so that a flood of visitors cannot push out the owner.
		var victim *session
		for _, c := range s.m {
			if victim == nil || (victim.authed && !c.authed) || (victim.authed == c.authed && c.seen.Before(victim.seen)) {
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

// limiter slows down password guessing: after a few failures from one
// address (or many from all), each further attempt must wait, twice as
// long after every failure, up to maxLockout. A success clears the address.
type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*attempts
}

type attempts struct {
	failures int
	until    time.Time
	last     time.Time
}

const (
	freeFailures       = 5  // wrong passwords per address before waits start
	freeGlobalFailures = 20 // over all addresses
	maxLockout         = 15 * time.Minute
	forgetAfter        = time.Hour
	globalKey          = "*"
)

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, m: make(map[string]*attempts)}
}

// wait returns how long addr must wait before trying a password again.
func (l *limiter) wait(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var longest time.Duration
	for _, key := range []string{addr, globalKey} {
		a := l.m[key]
		if a == nil {
			continue
		}
		if now.Sub(a.last) > forgetAfter {
			delete(l.m, key)
			continue
		}
		longest = max(longest, a.until.Sub(now))
	}
	return longest
}

// fail records a wrong password from addr.
func (l *limiter) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for key, free := range map[string]int{addr: freeFailures, globalKey: freeGlobalFailures} {
		a := l.m[key]
		if a == nil {
			a = &attempts{}
			l.m[key] = a
		}
		a.failures++
		a.last = now
		if over := a.failures - free + 1; over > 0 {
			a.until = now.Add(min(time.Second<<min(over-1, 20), maxLockout))
		}
	}
}

// succeed forgets addr's failures.
func (l *limiter) succeed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, addr)
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
		if _, pattern := next.Handler(r); pattern == "" || strings.HasPrefix(path.Clean(r.URL.Path), "/static/") {
			next.ServeHTTP(rw, r)
			return
		}
		info := &reqInfo{ingress: ingress, prefix: prefix}
		if c, err := r.Cookie(sessionCookie); err == nil {
			info.sess = s.sessions.get(c.Value)
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
		next.ServeHTTP(rw, r)
	})
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
