package setup

import (
	"context"
	"net/http"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 1: the developer application. The page shows what to enter on
// developer.tesla.com and takes the client id and secret, which Tesla must
// accept (a partner token is fetched) before the step counts as done.

type appData struct {
	Host, HostFromConfig string
	Origin               string
	ExtraOrigin          string // the redirect URI's origin, when another
	// Redirect is the redirect URI: on the public hostname unless the
	// configuration names another.
	Redirect           string
	RedirectFromConfig bool
	// OldRedirect is the setup page's own callback of earlier versions,
	// to be replaced at Tesla.
	OldRedirect        string
	ClientID           string
	ClientIDFromConfig bool
	SecretSet          bool
	Scopes             []string
	Checked            bool
}

// fill derives the origins from the host and redirect URI.
func (d *appData) fill() {
	if h := bareHost(d.Host); h != "" {
		d.Origin = "https://" + h
	}
	if i := strings.Index(d.Redirect, "://"); i > 0 {
		if j := strings.IndexByte(d.Redirect[i+3:], '/'); j >= 0 {
			if o := d.Redirect[:i+3+j]; o != d.Origin {
				d.ExtraOrigin = o
			}
		}
	}
}

// appView is the step as it stands.
func (f *flow) appView() *appData {
	d := &appData{
		HostFromConfig:     f.cfg.PublicHostname,
		RedirectFromConfig: f.cfg.RedirectURL != "" && !isLegacyRedirect(f.cfg.RedirectURL),
		ClientIDFromConfig: f.cfg.ClientID != "",
		Scopes:             []string{"Profile Information", "Vehicle Information", "Vehicle Location", "Vehicle Commands", "Vehicle Charging Management"},
	}
	f.store.read(func(st *state) {
		id, secret := f.credentials(st)
		d.Host, d.Redirect, d.ClientID = f.host(st), f.redirectURL(st), id
		d.OldRedirect = f.oldRedirectURL(st)
		d.SecretSet = secret != ""
		d.Checked = id != "" && st.CredentialsChecked == id
	})
	d.fill()
	return d
}

// appAnswers are the answers of step 1's form, as typed.
type appAnswers struct {
	host, clientID, clientSecret string
}

// saveApp keeps the answers (the configuration's values win) and has
// Tesla check the credentials. It returns the page to show again, with
// the answers, when that fails.
func (f *flow) saveApp(ctx context.Context, a appAnswers) (*appData, error) {
	d := f.appView()
	host, hostErr := normalizeHost(a.host, f.cfg.Port)
	if hostErr != nil {
		host = strings.TrimSpace(a.host) // shown again as typed
	}
	if d.HostFromConfig != "" {
		host, hostErr = d.HostFromConfig, nil
	}
	id := strings.TrimSpace(a.clientID)
	secret := strings.TrimSpace(a.clientSecret)
	if d.ClientIDFromConfig {
		id = d.ClientID
	}
	// Show the answers again, whatever is wrong with them.
	d.Host, d.ClientID = host, id
	if !d.RedirectFromConfig {
		d.Redirect = "https://" + bareHost(host) + CallbackPath
	}
	d.fill()

	// Keep every usable answer, the secret above all, even when another
	// one is refused: a homeowner who fixes the hostname must not have to
	// fetch the secret from developer.tesla.com again.
	var secretNow string
	err := f.store.update(func(st *state) error {
		if !d.ClientIDFromConfig && id != "" {
			if id != st.ClientID {
				st.CredentialsChecked = ""
			}
			st.ClientID = id
			if secret != "" {
				st.ClientSecret = secret
			}
		}
		if d.HostFromConfig == "" && hostErr == nil {
			st.PublicHostname = host
		}
		_, secretNow = f.credentials(st)
		return nil
	})
	if err != nil {
		return d, err
	}
	d.SecretSet = secretNow != "" && id != ""

	kept := ""
	if d.SecretSet && !d.ClientIDFromConfig {
		kept = " The client secret is kept: leave its field empty."
	} else if secret != "" {
		kept = " Enter the client secret again as well."
	}
	switch {
	case hostErr != nil:
		msg := hostErr.Error()
		return d, refuse("%s%s.%s", strings.ToUpper(msg[:1]), msg[1:], kept)
	case id == "":
		return d, refuse("Enter the client ID of your application (developer.tesla.com → your application → Credentials & APIs).%s", kept)
	case secretNow == "":
		return d, refuse("Enter the client secret of your application as well.")
	}

	// Tesla must accept the credentials: ask for a partner token.
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	client, err := f.client()
	if err == nil {
		var region fleetapi.Region
		f.store.read(func(st *state) { region = authRegion(f.regions(st)) })
		_, err = client.PartnerToken(ctx, region)
	}
	if err != nil {
		f.log.Info("setup: "+teslaFailure(err, "check the application's credentials", "tesla refused the application's credentials"), "err", err)
		return d, err
	}
	err = f.store.update(func(st *state) error {
		st.CredentialsChecked = id
		return nil
	})
	return d, err
}

// appStep serves step 1.
type appStep struct{ *site }

func (s appStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /app", s.page)
	mux.HandleFunc("POST /app", s.submit)
}

func (s appStep) page(rw http.ResponseWriter, r *http.Request) {
	s.render(rw, r, http.StatusOK, "app", &page{Step: stepApp, Data: s.flow.appView()})
}

func (s appStep) submit(rw http.ResponseWriter, r *http.Request) {
	d, err := s.flow.saveApp(r.Context(), appAnswers{
		host:         r.PostFormValue("host"),
		clientID:     r.PostFormValue("client_id"),
		clientSecret: r.PostFormValue("client_secret"),
	})
	if err != nil {
		s.render(rw, r, statusOf(err), "app", &page{Step: stepApp, Problem: problemOf(err), Data: d})
		return
	}
	redirect(rw, steps[stepKey].path)
}
