package setup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// pageNames are the templates under web/, each rendered inside
// web/layout.html.
var pageNames = []string{"login", "app", "key", "register", "owner", "vehicles", "pairing", "fields", "push", "verify"}

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
	Data     any
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

// problemText is a problem of the page's own making.
func problemText(format string, args ...any) *problem {
	return &problem{Text: fmt.Sprintf(format, args...)}
}

// render writes a page with status.
func (w *Wizard) render(rw http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	info := infoOf(r)
	if info != nil && info.sess != nil {
		p.CSRF = info.sess.csrf
		p.Authed = info.sess.authed
		p.Password = !info.ingress
		if p.Flash == "" {
			w.sessions.update(info.sess, func(s *session) { p.Flash, s.flash = s.flash, "" })
		}
	}
	p.PollMS = w.deps.PagePollInterval.Milliseconds()
	p.StepCount = len(steps)
	if p.Step >= 0 {
		p.StepNum = p.Step + 1
		p.Progress = w.progress(p.Step)
		if p.Title == "" {
			p.Title = steps[p.Step].title
		}
	}
	var buf bytes.Buffer
	if err := w.pages[name].Execute(&buf, p); err != nil {
		w.log.Error("setup: render page", "page", name, "err", err)
		http.Error(rw, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

// flash keeps a message for the next page of this session.
func (w *Wizard) flash(r *http.Request, msg string) {
	if info := infoOf(r); info != nil && info.sess != nil {
		w.sessions.update(info.sess, func(s *session) { s.flash = msg })
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
}

// pollItem sets the text and state (ok, wait, bad) of one element.
type pollItem struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	State string `json:"state"`
}

// scheme is how the browser reaches the page: https or http. Behind
// trusted ingress Home Assistant says so in X-Forwarded-Proto.
func (w *Wizard) scheme(r *http.Request, info *reqInfo) string {
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

// suggestedRedirect is the callback address as the browser reaches this
// page. Behind a reverse proxy other than Home Assistant's ingress the
// server cannot know the prefix; the page script corrects the suggestion
// from the address bar.
func (w *Wizard) suggestedRedirect(r *http.Request) string {
	info := infoOf(r)
	host := r.Host
	prefix := ""
	if info != nil && info.ingress {
		if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "/\\@ ") {
			host = h
		}
		prefix = info.prefix
	}
	return w.scheme(r, info) + "://" + host + prefix + "/callback"
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
