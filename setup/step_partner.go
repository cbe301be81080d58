package setup

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// teslaCallStatus is the status of a page whose call to Tesla failed with
// err: 502 Bad Gateway when Tesla, or the way there, failed; 500 when the
// failure was on this computer, such as a full or read-only disk met while
// saving the setup state or the owner's refreshed token (fleetapi.IsLocal).
// The page explains either (fleetapi.Explain).
func teslaCallStatus(err error) int {
	if fleetapi.IsLocal(err) {
		return http.StatusInternalServerError
	}
	return http.StatusBadGateway
}

// Step 1: the developer application. The page shows what to enter on
// developer.tesla.com and takes the client id and secret, which Tesla must
// accept (a partner token is fetched) before the step counts as done.

type appData struct {
	Host, HostFromConfig string
	Origin               string
	ExtraOrigin          string // the redirect URI's origin, when another
	Redirect             string
	RedirectFromConfig   bool
	RedirectSuggested    bool // not saved yet: the script may correct it
	ClientID             string
	ClientIDFromConfig   bool
	SecretSet            bool
	Scopes               []string
	Checked              bool
}

func (w *Wizard) appData(r *http.Request) *appData {
	w.mu.Lock()
	defer w.mu.Unlock()
	id, secret := w.credentialsLocked()
	d := &appData{
		Host:               w.hostLocked(),
		HostFromConfig:     w.cfg.PublicHostname,
		Redirect:           w.redirectURLLocked(),
		RedirectFromConfig: w.cfg.RedirectURL != "",
		ClientID:           id,
		ClientIDFromConfig: w.cfg.ClientID != "",
		SecretSet:          secret != "",
		Scopes:             []string{"Profile Information", "Vehicle Information", "Vehicle Location"},
		Checked:            id != "" && w.st.CredentialsChecked == id,
	}
	if d.Redirect == "" {
		d.Redirect = w.suggestedRedirect(r)
		d.RedirectSuggested = true
	}
	d.fill()
	return d
}

// fill derives the origins from the host and redirect URI.
func (d *appData) fill() {
	if d.Host != "" {
		d.Origin = "https://" + d.Host
	}
	if i := strings.Index(d.Redirect, "://"); i > 0 {
		if j := strings.IndexByte(d.Redirect[i+3:], '/'); j >= 0 {
			if o := d.Redirect[:i+3+j]; o != d.Origin {
				d.ExtraOrigin = o
			}
		}
	}
}

func (w *Wizard) handleAppPage(rw http.ResponseWriter, r *http.Request) {
	w.render(rw, r, http.StatusOK, "app", &page{Step: stepApp, Data: w.appData(r)})
}

func (w *Wizard) handleApp(rw http.ResponseWriter, r *http.Request) {
	fail := func(status int, p *problem, d *appData) {
		w.render(rw, r, status, "app", &page{Step: stepApp, Problem: p, Data: d})
	}
	d := w.appData(r)
	host := strings.ToLower(strings.TrimSpace(r.PostFormValue("host")))
	if d.HostFromConfig != "" {
		host = d.HostFromConfig
	}
	redirectURL := strings.TrimSpace(r.PostFormValue("redirect"))
	if d.RedirectFromConfig {
		redirectURL = d.Redirect
	}
	id := strings.TrimSpace(r.PostFormValue("client_id"))
	secret := strings.TrimSpace(r.PostFormValue("client_secret"))
	if d.ClientIDFromConfig {
		id = d.ClientID
	}
	// Show the answers again, whatever is wrong with them.
	d.Host, d.Redirect, d.ClientID, d.RedirectSuggested = host, redirectURL, id, false
	d.fill()

	if err := fleetapi.ValidateDomain(host); err != nil {
		fail(http.StatusUnprocessableEntity, problemText("The public hostname is not usable: %s. Enter the DNS name your cars will connect to, such as telemetry.example.com.", strings.TrimPrefix(err.Error(), "domain: ")), d)
		return
	}
	if err := checkRedirectURL(redirectURL); err != nil {
		fail(http.StatusUnprocessableEntity, problemText("The redirect URI is not usable: %v.", err), d)
		return
	}
	if id == "" {
		fail(http.StatusUnprocessableEntity, problemText("Enter the client ID of your application (developer.tesla.com → your application → Credentials & APIs)."), d)
		return
	}

	w.mu.Lock()
	if !d.ClientIDFromConfig {
		if id != w.st.ClientID {
			w.st.CredentialsChecked = ""
		}
		w.st.ClientID = id
		if secret != "" {
			w.st.ClientSecret = secret
		}
	}
	if d.HostFromConfig == "" {
		w.st.PublicHostname = host
	}
	if !d.RedirectFromConfig {
		w.st.RedirectURL = redirectURL
	}
	_, secretNow := w.credentialsLocked()
	err := w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil {
		fail(http.StatusInternalServerError, explain(err), d)
		return
	}
	if secretNow == "" {
		fail(http.StatusUnprocessableEntity, problemText("Enter the client secret of your application as well."), d)
		return
	}
	d.SecretSet = true

	// Tesla must accept the credentials: ask for a partner token.
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	w.mu.Lock()
	client, err := w.clientLocked()
	region := authRegion(w.regionsLocked())
	w.mu.Unlock()
	if err == nil {
		_, err = client.PartnerToken(ctx, region)
	}
	if err != nil {
		w.log.Info("setup: tesla refused the application's credentials", "err", err)
		fail(teslaCallStatus(err), explain(err), d)
		return
	}
	w.mu.Lock()
	w.st.CredentialsChecked = id
	err = w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil {
		fail(http.StatusInternalServerError, explain(err), d)
		return
	}
	redirect(rw, steps[stepKey].path)
}

// Step 2: the key pair, served by the vehicle listener at the well-known
// address and checked there from outside, as Tesla will fetch it.

type keyData struct {
	Exists      bool
	PublicPEM   string
	Fingerprint string
	URL         string
	Checked     bool
	PortNote    bool
}

func (w *Wizard) keyData() *keyData {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &keyData{Exists: w.key != nil, URL: w.deps.PublicKeyURL(w.hostLocked()), PortNote: w.cfg.Port != 443}
	if w.key != nil {
		d.PublicPEM = string(w.publicPEM)
		if raw, err := fleetapi.PublicKeyBytes(&w.key.PublicKey); err == nil {
			sum := sha256.Sum256(raw)
			d.Fingerprint = hex.EncodeToString(sum[:8])
		}
		d.Checked = w.doneLocked(stepKey)
	}
	return d
}

func (w *Wizard) handleKeyPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepKey) {
		return
	}
	w.render(rw, r, http.StatusOK, "key", &page{Step: stepKey, Data: w.keyData()})
}

func (w *Wizard) handleKey(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepKey) {
		return
	}
	fail := func(status int, p *problem) {
		w.render(rw, r, status, "key", &page{Step: stepKey, Problem: p, Data: w.keyData()})
	}
	if r.PostFormValue("action") == "create" {
		key, created, err := fleetapi.LoadOrCreateKey(join(w.dir, keyFile))
		if err == nil {
			err = w.setKey(key)
		}
		if err != nil {
			fail(http.StatusInternalServerError, problemText("The key pair could not be made: %v", err))
			return
		}
		if created {
			w.log.Info("setup: created the application's key pair")
		}
		redirect(rw, steps[stepKey].path)
		return
	}

	w.mu.Lock()
	host, key := w.hostLocked(), w.key
	w.mu.Unlock()
	if key == nil {
		fail(http.StatusConflict, explain(errNoKey))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	url := w.deps.PublicKeyURL(host)
	if err := w.fetchOwnKey(ctx, url, &key.PublicKey); err != nil {
		fail(http.StatusBadGateway, &problem{Text: explainKeyFetch(url, host, err)})
		return
	}
	hexKey, err := fleetapi.PublicKeyHex(&key.PublicKey)
	if err != nil {
		fail(http.StatusInternalServerError, explain(err))
		return
	}
	w.mu.Lock()
	w.st.KeyCheck = &keyCheck{Host: host, PublicKey: hexKey, At: w.now()}
	err = w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil {
		fail(http.StatusInternalServerError, explain(err))
		return
	}
	redirect(rw, steps[stepRegister].path)
}

// errOtherKey: the public URL serves a key, but not ours.
var errOtherKey = errors.New("another public key is served there")

// keyStatusError is a public URL that answered with an error status.
type keyStatusError struct{ status int }

func (e keyStatusError) Error() string {
	return fmt.Sprintf("answered %d %s", e.status, http.StatusText(e.status))
}

// fetchOwnKey fetches url and checks that it serves pub.
func (w *Wizard) fetchOwnKey(ctx context.Context, url string, pub *ecdsa.PublicKey) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := w.deps.CheckHTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return keyStatusError{resp.StatusCode}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8192))
	if err != nil {
		return err
	}
	got, err := fleetapi.ParsePublicKeyPEM(data)
	if err != nil {
		return fmt.Errorf("%w: %v", errOtherKey, err)
	}
	if !got.Equal(pub) {
		return errOtherKey
	}
	return nil
}

// explainKeyFetch says why the key could not be fetched from url, and what
// to do.
func explainKeyFetch(url, host string, err error) string {
	var (
		dnsErr     *net.DNSError
		statusErr  keyStatusError
		certErr    *tls.CertificateVerificationError
		hostErr    x509.HostnameError
		unknownCA  x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		netErr     net.Error
	)
	base := "fleet2mqtt could not fetch its public key from " + url + ", where Tesla and the Tesla app will fetch it. "
	switch {
	case errors.As(err, &dnsErr):
		return base + "The name " + host + " does not resolve. Create a DNS record (A/AAAA or CNAME) for it that points to this machine's public address."
	case errors.As(err, &statusErr):
		return base + "Something answered, but with " + statusErr.Error() + ": port 443 of " + host + " does not reach fleet2mqtt's vehicle listener. Forward port 443 to it directly (a reverse proxy must pass TLS through untouched)."
	case errors.Is(err, errOtherKey):
		return base + "The address serves a different key (" + err.Error() + "). Something other than this fleet2mqtt answers on port 443 of " + host + "."
	case errors.As(err, &hostErr):
		return base + "The certificate served there is not valid for " + host + " (" + hostErr.Error() + "). Use a certificate whose Subject Alternative Names include " + host + "."
	case errors.As(err, &unknownCA), errors.As(err, &certErr), errors.As(err, &invalidErr):
		return base + "The certificate served there is not trusted (" + err.Error() + "). Use a certificate from a public authority (such as Let's Encrypt) and serve its full chain."
	case errors.Is(err, syscall.ECONNREFUSED):
		return base + "The connection was refused: nothing listens on port 443 of " + host + ". Forward port 443 of your router to fleet2mqtt's vehicle listener."
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return base + "No answer in time: a firewall or missing port forwarding keeps port 443 of " + host + " closed."
	}
	return base + "The error was: " + err.Error() + ". Check that port 443 of " + host + " reaches fleet2mqtt's vehicle listener."
}

// Step 3: partner registration in the chosen regions, each verified by
// reading back the key Tesla holds for the domain.

type regionView struct {
	Region  fleetapi.Region
	Name    string
	Chosen  bool
	Done    bool
	Problem string
}

type registerData struct {
	Host    string
	Regions []regionView
	AllDone bool
}

func (w *Wizard) registerData(chosen []fleetapi.Region, problems map[fleetapi.Region]string) *registerData {
	w.mu.Lock()
	defer w.mu.Unlock()
	if chosen == nil {
		chosen = w.regionsLocked()
		// Offer the owner's region when the login found it unregistered.
		if o := w.st.Owner; o != nil && !containsRegion(chosen, o.Region) {
			chosen = append(slices.Clone(chosen), o.Region)
		}
	}
	d := &registerData{Host: w.hostLocked()}
	for _, r := range fleetapi.Regions {
		d.Regions = append(d.Regions, regionView{
			Region: r, Name: r.Name(), Chosen: containsRegion(chosen, r),
			Done: w.registeredLocked(r), Problem: problems[r],
		})
	}
	d.AllDone = w.doneLocked(stepRegister)
	return d
}

func (w *Wizard) handleRegisterPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepRegister) {
		return
	}
	w.render(rw, r, http.StatusOK, "register", &page{Step: stepRegister, Data: w.registerData(nil, nil)})
}

func (w *Wizard) handleRegister(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepRegister) {
		return
	}
	chosen, err := parseRegions(r.PostForm["region"])
	if err != nil || len(chosen) == 0 {
		w.render(rw, r, http.StatusUnprocessableEntity, "register", &page{Step: stepRegister,
			Problem: problemText("Choose at least one region: the one where your Tesla account and cars are."),
			Data:    w.registerData(chosen, nil)})
		return
	}
	w.mu.Lock()
	w.st.Regions = chosen
	client, err := w.clientLocked()
	host, key := w.hostLocked(), w.key
	id, _ := w.credentialsLocked()
	w.mu.Unlock()
	if err == nil && key == nil {
		err = errNoKey
	}
	if err != nil {
		w.render(rw, r, http.StatusConflict, "register", &page{Step: stepRegister, Problem: explain(err), Data: w.registerData(chosen, nil)})
		return
	}
	hexKey, err := fleetapi.PublicKeyHex(&key.PublicKey)
	if err != nil {
		w.render(rw, r, http.StatusInternalServerError, "register", &page{Step: stepRegister, Problem: explain(err), Data: w.registerData(chosen, nil)})
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	problems := make(map[fleetapi.Region]string)
	var failures []error
	for _, region := range chosen {
		_, err := client.RegisterPartner(ctx, region, host)
		if err == nil {
			err = client.CheckPartnerKey(ctx, region, host, &key.PublicKey)
		}
		if err != nil {
			problems[region] = fleetapi.Explain(err)
			failures = append(failures, err)
			w.log.Info("setup: partner registration failed", "region", region, "err", err)
			continue
		}
		w.mu.Lock()
		if w.st.Registered == nil {
			w.st.Registered = make(map[fleetapi.Region]*registration)
		}
		w.st.Registered[region] = &registration{Domain: host, ClientID: id, PublicKey: hexKey, At: w.now()}
		w.mu.Unlock()
	}
	w.mu.Lock()
	err = w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil || len(failures) > 0 {
		prob := problemText("Registration did not succeed in every chosen region; see below.")
		if err != nil {
			// The page has no place for it below the regions, and Tesla
			// may have registered them all.
			prob = explain(err)
			failures = append(failures, err)
		}
		// A local failure, in a region or saving, is what to fix first.
		w.render(rw, r, teslaCallStatus(errors.Join(failures...)), "register", &page{Step: stepRegister,
			Problem: prob, Data: w.registerData(chosen, problems)})
		return
	}
	redirect(rw, steps[stepOwner].path)
}
