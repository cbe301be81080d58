package setup

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/url"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 4: the owner logs in on Tesla's page (OAuth authorization code with
// state and nonce); Tesla sends the browser back to /callback.

type ownerData struct {
	LoggedIn    bool
	GrantGone   bool
	Region      string
	At          string
	Refreshable bool
	// Unregistered names the owner's region when the application is not
	// registered there.
	Unregistered string
}

func (f *flow) ownerView() *ownerData {
	d := &ownerData{}
	f.store.read(func(st *state) {
		d.LoggedIn = f.done(st, stepOwner)
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

// pendingLogin is a login sent to Tesla's page: the callback must bring
// back its state, and the id_token its nonce.
type pendingLogin struct {
	state, nonce string
}

// answers reports whether a callback's state is this login's (in
// constant time). An empty login matches nothing.
func (l pendingLogin) answers(state string) bool {
	return l.state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(l.state)) == 1
}

// startLogin returns a fresh login and the address of Tesla's login page
// for it.
func (f *flow) startLogin() (pendingLogin, string, error) {
	client, err := f.client()
	if err != nil {
		return pendingLogin{}, "", unready(err)
	}
	l := pendingLogin{state: rand.Text(), nonce: rand.Text()}
	return l, client.AuthCodeURL(l.state, l.nonce, fleetapi.AuthURLOptions{ShowKeypairStep: true}), nil
}

// finishLogin completes login l with the callback's query: the state
// must be l's, the code is exchanged (the id_token's nonce checked, the
// tokens saved before use), and the owner's region is looked up. It
// returns that region and whether the application is registered there.
func (f *flow) finishLogin(ctx context.Context, query url.Values, l pendingLogin) (fleetapi.Region, bool, error) {
	region, registered, err := f.exchange(ctx, query, l)
	if err != nil {
		f.log.Info("setup: owner login failed", "err", err)
		return "", false, err
	}
	f.log.Info("setup: owner logged in", "region", region)
	return region, registered, nil
}

func (f *flow) exchange(ctx context.Context, query url.Values, l pendingLogin) (region fleetapi.Region, registered bool, err error) {
	code, err := fleetapi.ParseCallback(query, l.state)
	if err != nil {
		return "", false, &stepError{kind: badRequest, err: err}
	}
	client, err := f.client()
	if err != nil {
		return "", false, unready(err)
	}
	var id string
	f.store.read(func(st *state) { id, _ = f.credentials(st) })
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	owner, err := client.Exchange(ctx, code, l.nonce, f.store.tokens())
	if err != nil {
		return "", false, err
	}
	if region, err = owner.DiscoverRegion(ctx); err != nil {
		return "", false, err
	}
	f.loggedIn(client, owner)
	err = f.store.update(func(st *state) error {
		st.Owner = &ownerLogin{ClientID: id, Region: region, At: f.timing.Now(), Refreshable: owner.Refreshable()}
		registered = f.registered(st, region)
		return nil
	})
	return region, registered, err
}

// ownerStep serves step 4: the login, and the callback from Tesla's login
// page.
type ownerStep struct{ *site }

func (s ownerStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /owner", s.page)
	mux.HandleFunc("POST /owner", s.login)
	mux.HandleFunc("GET /callback", s.callback)
}

func (s ownerStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepOwner) {
		return
	}
	s.render(rw, r, http.StatusOK, "owner", &page{Step: stepOwner, Data: s.flow.ownerView()})
}

// login starts the login: fresh state and nonce in the session, then off
// to Tesla's login page.
func (s ownerStep) login(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepOwner) {
		return
	}
	l, authURL, err := s.flow.startLogin()
	if err != nil {
		s.render(rw, r, statusOf(err), "owner", &page{Step: stepOwner, Problem: problemOf(err), Data: s.flow.ownerView()})
		return
	}
	s.sessions.update(infoOf(r).sess, func(sess *session) { sess.login = l })
	rw.Header().Set("Location", authURL)
	rw.WriteHeader(http.StatusSeeOther)
}

// callback finishes the session's login. A callback whose state is not
// the login's is ignored: anyone can send a browser to this address, so
// it neither ends the login under way nor shows what it says (an
// error_description chosen by someone else).
func (s ownerStep) callback(rw http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	var l pendingLogin
	// The state and nonce are single use, whatever happens next.
	s.sessions.update(infoOf(r).sess, func(sess *session) {
		if sess.login.answers(query.Get("state")) {
			l, sess.login = sess.login, pendingLogin{}
		}
	})
	if l.state == "" {
		s.log.Info("setup: ignored a login callback that belongs to no login of this session")
		err := &stepError{kind: badRequest, err: fleetapi.ErrStateMismatch}
		s.render(rw, r, statusOf(err), "owner", &page{Step: stepOwner, Problem: problemOf(err), Data: s.flow.ownerView()})
		return
	}
	region, registered, err := s.flow.finishLogin(r.Context(), query, l)
	if err != nil {
		s.render(rw, r, statusOf(err), "owner", &page{Step: stepOwner, Problem: problemOf(err), Data: s.flow.ownerView()})
		return
	}
	if !registered {
		// The owner's data lives where the application is not registered:
		// every vehicle call would answer 412.
		s.flash(r, "Your Tesla account lives in "+region.Name()+", where the application is not registered yet. Register there in step 3 too.")
		redirect(rw, steps[stepRegister].path)
		return
	}
	redirect(rw, steps[stepVehicles].path)
}
