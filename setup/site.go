package setup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// site is the HTTP side of the setup page: access (password, sessions,
// CSRF, ingress), templates, and the handlers of every step, which parse
// the request, ask the flow and render what it returns. It changes no state
// itself.
type site struct {
	flow *flow
	log  *slog.Logger

	trustIngress bool
	ingress      netip.Addr // the Supervisor's address
	pollMS       int64      // the page script's polling interval
	sessions     *sessionStore
	limiter      *limiter
	password     *password
	pages        map[string]*template.Template
	static       fs.FS
}

// A resource is one part of the page (a step, the login): it adds its
// routes to a mux. A resource that must answer on another listener, such
// as the vehicle listener on the public hostname, is mounted on that
// listener's mux and shares the flow, and so the state, with the page.
type resource interface {
	mount(mux *http.ServeMux)
}

// handler is Wizard.Handler: every resource of the page behind access.
func (s *site) handler() http.Handler {
	mux := http.NewServeMux()
	static := http.StripPrefix("/static/", http.FileServerFS(s.static))
	mux.Handle("GET /static/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(rw, r) // no directory listings
			return
		}
		rw.Header().Set("Cache-Control", "no-cache")
		static.ServeHTTP(rw, r)
	}))
	for _, res := range []resource{
		loginPage{s},
		appStep{s}, keyStep{s}, registerStep{s}, ownerStep{s}, vehiclesStep{s},
		pairingStep{s}, fieldsStep{s}, pushStep{s}, verifyStep{s},
		commandsStep{s},
	} {
		res.mount(mux)
	}
	return s.access(mux)
}

// publicKey serves the application's public key: Wizard.PublicKeyHandler.
type publicKey struct{ store *store }

func (p publicKey) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key := p.store.appKey()
	if key == nil {
		http.NotFound(rw, r)
		return
	}
	rw.Header().Set("Content-Type", "application/x-pem-file")
	rw.Header().Set("Cache-Control", "no-cache")
	rw.Write(key.publicPEM)
}

// pageNames are the templates under web/, each rendered inside
// web/layout.html.
var pageNames = []string{"notfound", "login", "app", "key", "register", "owner", "vehicles", "pairing", "fields", "push", "verify", "commands"}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").ParseFS(webFS, "web/layout.html", "web/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("setup page %s: %w", name, err)
		}
		pages[name] = t
	}
	// The assets are embedded: a missing one is a build mistake, caught
	// by tests, not a runtime condition.
	if _, err := fs.Stat(webFS, "web/static/app.js"); err != nil {
		return nil, fmt.Errorf("setup assets: %w", err)
	}
	return pages, nil
}

// page is what every template gets.
type page struct {
	Title string
	// Step is the index of the page's step in steps (-1 off the steps).
	Step     int
	Progress []progressItem
	// StepNum and StepCount read "step 3 of 9".
	StepNum, StepCount int
	CSRF               string
	// Problem is what went wrong, in plain words, with what to do.
	Problem *problem
	Flash   string
	// PollMS is the page script's polling interval.
	PollMS int64
	Authed bool
	// Password is false behind trusted ingress (no logout button).
	Password bool
	// Root leads from the page's address to the setup's top level
	// ("../../" on a deep path that does not exist); "" on every page.
	Root string
	Data any
}

// problem is an error as the page shows it.
type problem struct {
	Text string
	// Login offers the owner login (the grant is gone).
	Login bool
}

// explain turns an error into what the page shows.
func explain(err error) *problem {
	if err == nil {
		return nil
	}
	p := &problem{Text: fleetapi.Explain(err)}
	switch {
	case errors.Is(err, fleetapi.ErrLoginRequired):
		p.Login = true
	case errors.Is(err, errNoCredentials):
		p.Text = "The Tesla application's client ID and secret are missing: enter them in step 1."
	case errors.Is(err, errNoKey):
		p.Text = "The key pair does not exist yet: create it in step 2."
	case errors.Is(err, errNoCA):
		p.Text = "The vehicle listener has no certificate chain to tell the car about. Configure vehicle.cert_file and vehicle.key_file (a certificate for your hostname, with its chain), restart fleet2mqtt, then push again."
	}
	return p
}

// statusOf is the status of a page whose step failed with err: the kind
// the flow gave it, else 502 Bad Gateway when Tesla, or the way there,
// failed, and 500 when the failure was on this computer, such as a full or
// read-only disk met while saving the setup state or the owner's refreshed
// token (fleetapi.IsLocal). The page explains either (problemOf).
func statusOf(err error) int {
	var se *stepError
	if errors.As(err, &se) {
		switch se.kind {
		case badInput:
			return http.StatusUnprocessableEntity
		case notReady:
			return http.StatusConflict
		case badRequest:
			return http.StatusBadRequest
		case localFault:
			return http.StatusInternalServerError
		case remoteFault:
			return http.StatusBadGateway
		}
	}
	if fleetapi.IsLocal(err) {
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// problemOf is what the page shows for a failed step: the flow's words,
// else the explanation of the error.
func problemOf(err error) *problem {
	var se *stepError
	if errors.As(err, &se) && se.text != "" {
		return &problem{Text: se.text}
	}
	return explain(err)
}

// problemText is a problem of the page's own making.
func problemText(format string, args ...any) *problem {
	return &problem{Text: fmt.Sprintf(format, args...)}
}

// render writes a page with status.
func (s *site) render(rw http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	info := infoOf(r)
	if info != nil && info.sess != nil {
		p.CSRF = info.sess.csrf
		p.Authed = info.sess.authed
		p.Password = !info.ingress
		if p.Flash == "" {
			s.sessions.update(info.sess, func(sess *session) { p.Flash, sess.flash = sess.flash, "" })
		}
	}
	p.PollMS = s.pollMS
	p.StepCount = len(steps)
	if p.Step >= 0 {
		p.StepNum = p.Step + 1
		p.Progress = s.flow.progress(p.Step)
		if p.Title == "" {
			p.Title = steps[p.Step].title
		}
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.log.Error("setup: render page", "page", name, "err", err)
		http.Error(rw, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

// flash keeps a message for the next page of this session.
func (s *site) flash(r *http.Request, msg string) {
	if info := infoOf(r); info != nil && info.sess != nil {
		s.sessions.update(info.sess, func(sess *session) { sess.flash = msg })
	}
}

// writeJSON answers a page script.
func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	json.NewEncoder(rw).Encode(v)
}

// pollAnswer is what the page script understands: items to update by
// element id, and whether the wait is over.
type pollAnswer struct {
	Items []pollItem `json:"items"`
	Done  bool       `json:"done"`
	// Problem is shown above the items (plain words).
	Problem string `json:"problem,omitempty"`
	// Next, when set, is the page (relative) the script goes to once
	// done.
	Next string `json:"next,omitempty"`
	// More keeps the page asking after Done, for an item still waiting
	// (Home Assistant connecting after the first record).
	More bool `json:"more,omitempty"`
}

// pollItem sets the text and state (ok, wait, bad) of one element.
type pollItem struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	State string `json:"state"`
}

// scheme is how the browser reaches the page: https or http. Behind
// trusted ingress Home Assistant says so in X-Forwarded-Proto.
func scheme(r *http.Request, info *reqInfo) string {
	if info != nil && info.ingress {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			return p
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// jsonText is v as JSON for a data attribute; values here are lists and
// maps of names and numbers, which always encode.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}
