package setup

import (
	"net/http"
	"strconv"
)

// Step 4: the owner logs in on Tesla's page (OAuth authorization code with
// state and nonce), opened in a new tab: Tesla's page refuses to be framed,
// and Home Assistant shows this page in a frame. Tesla sends that tab to
// the callback on the public hostname (step_callback.go); this page polls
// and moves on when the login completes.

type ownerData struct {
	LoggedIn    bool
	GrantGone   bool
	Region      string
	At          string
	Refreshable bool
	// Unregistered names the owner's region when the application is not
	// registered there.
	Unregistered string
	// Redirect is the redirect URI Tesla sends the browser back to.
	Redirect string
	// OldRedirect is the setup page's own callback of earlier versions,
	// still registered at Tesla: replace it with Redirect.
	OldRedirect string
	// Missing says why no login can work yet ("" when one can).
	Missing string
	// Since is the latest login outcome the page knows of; its script
	// waits for a newer one.
	Since string
	// MissingScopes are the command scopes the stored login lacks: a
	// login made before fleet2mqtt asked for them. Logging in again asks
	// Tesla for just those (prompt_missing_scopes).
	MissingScopes []string
}

func (f *flow) ownerView() *ownerData {
	d := &ownerData{Since: f.loginSeq(), MissingScopes: f.missingCommandScopes()}
	f.store.read(func(st *state) {
		d.LoggedIn = f.done(st, stepOwner)
		d.Redirect = f.redirectURL(st)
		d.OldRedirect = f.oldRedirectURL(st)
		d.Missing = f.callbackMissing(st)
		if o := st.Owner; o != nil {
			d.GrantGone = o.GrantGone
			d.Region = o.Region.Name()
			d.At = o.At.Local().Format("2 Jan 2006 15:04")
			d.Refreshable = o.Refreshable
			if d.LoggedIn && !f.registered(st, o.Region) {
				d.Unregistered = o.Region.Name()
			}
		}
	})
	return d
}

// ownerStep serves step 4: the page, the start of the login (in a new
// tab), the page's poll, and the setup page's old callback address.
type ownerStep struct{ *site }

func (s ownerStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /owner", s.page)
	mux.HandleFunc("POST /owner", s.login)
	mux.HandleFunc("GET /owner-status", s.status)
	mux.HandleFunc("GET /callback", s.oldCallback)
}

func (s ownerStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepOwner) {
		return
	}
	s.render(rw, r, http.StatusOK, "owner", &page{Step: stepOwner, Data: s.flow.ownerView()})
}

// login starts a login and sends the browser (the new tab the form opened)
// to Tesla's login page.
func (s ownerStep) login(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepOwner) {
		return
	}
	authURL, err := s.flow.startLogin()
	if err != nil {
		s.render(rw, r, statusOf(err), "owner", &page{Step: stepOwner, Problem: problemOf(err), Data: s.flow.ownerView()})
		return
	}
	rw.Header().Set("Location", authURL)
	rw.WriteHeader(http.StatusSeeOther)
}

// status answers the page's poll: done, with the next step, once a login
// newer than the page completed.
func (s ownerStep) status(rw http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	answer, o := s.flow.ownerStatus(since)
	if o.notice != "" {
		s.flash(r, o.notice)
	}
	writeJSON(rw, http.StatusOK, answer)
}

// oldCallback is the setup page's own callback address of earlier
// versions. Tesla no longer sends anyone here (the redirect URI is on the
// public hostname now), so whatever arrives is not looked at: it ends no
// login and none of its text is shown. The page says what changed.
func (s ownerStep) oldCallback(rw http.ResponseWriter, r *http.Request) {
	d := s.flow.ownerView()
	err := &stepError{kind: badRequest, text: "Tesla's login no longer comes back to the setup page: it comes back to " + d.Redirect + ", on the vehicle listener. If Tesla's login page says it does not recognise the redirect URI, add that address to your application's Allowed Redirect URI(s) on developer.tesla.com, then log in again."}
	s.render(rw, r, statusOf(err), "owner", &page{Step: stepOwner, Problem: problemOf(err), Data: d})
}
