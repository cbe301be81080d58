package setup

import (
	"context"
	"crypto/rand"
	"html/template"
	"net/http"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/internal/qrcode"
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

func (w *Wizard) ownerData() *ownerData {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &ownerData{LoggedIn: w.doneLocked(stepOwner)}
	if o := w.st.Owner; o != nil {
		d.GrantGone = o.GrantGone
		d.Region = o.Region.Name()
		d.At = o.At.Local().Format("2 Jan 2006 15:04")
		d.Refreshable = o.Refreshable
		if d.LoggedIn && !w.registeredLocked(o.Region) {
			d.Unregistered = o.Region.Name()
		}
	}
	return d
}

func (w *Wizard) handleOwnerPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepOwner) {
		return
	}
	w.render(rw, r, http.StatusOK, "owner", &page{Step: stepOwner, Data: w.ownerData()})
}

// handleOwnerLogin starts the login: fresh state and nonce in the session,
// then off to Tesla's login page.
func (w *Wizard) handleOwnerLogin(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepOwner) {
		return
	}
	w.mu.Lock()
	client, err := w.clientLocked()
	w.mu.Unlock()
	if err != nil {
		w.render(rw, r, http.StatusConflict, "owner", &page{Step: stepOwner, Problem: explain(err), Data: w.ownerData()})
		return
	}
	state, nonce := rand.Text(), rand.Text()
	w.sessions.update(infoOf(r).sess, func(s *session) { s.oauthState, s.oauthNonce = state, nonce })
	rw.Header().Set("Location", client.AuthCodeURL(state, nonce, fleetapi.AuthURLOptions{ShowKeypairStep: true}))
	rw.WriteHeader(http.StatusSeeOther)
}

// handleCallback finishes the login: the state must be this session's,
// the code is exchanged (the id_token's nonce checked, the tokens saved
// before use), and the owner's region is looked up.
func (w *Wizard) handleCallback(rw http.ResponseWriter, r *http.Request) {
	fail := func(status int, err error) {
		w.log.Info("setup: owner login failed", "err", err)
		w.render(rw, r, status, "owner", &page{Step: stepOwner, Problem: explain(err), Data: w.ownerData()})
	}
	var state, nonce string
	// The state and nonce are single use, whatever happens next.
	w.sessions.update(infoOf(r).sess, func(s *session) {
		state, nonce = s.oauthState, s.oauthNonce
		s.oauthState, s.oauthNonce = "", ""
	})
	code, err := fleetapi.ParseCallback(r.URL.Query(), state)
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	w.mu.Lock()
	client, err := w.clientLocked()
	id, _ := w.credentialsLocked()
	w.mu.Unlock()
	if err != nil {
		fail(http.StatusConflict, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	owner, err := client.Exchange(ctx, code, nonce, fleetapi.FileTokenStore{Path: join(w.dir, tokenFile)})
	if err != nil {
		fail(teslaCallStatus(err), err)
		return
	}
	region, err := owner.DiscoverRegion(ctx)
	if err != nil {
		fail(teslaCallStatus(err), err)
		return
	}
	w.mu.Lock()
	if w.client == client {
		w.owner = owner
	}
	w.st.Owner = &ownerLogin{ClientID: id, Region: region, At: w.now(), Refreshable: owner.Refreshable()}
	err = w.st.save(join(w.dir, stateFile))
	registered := w.registeredLocked(region)
	w.mu.Unlock()
	if err != nil {
		fail(http.StatusInternalServerError, err)
		return
	}
	w.log.Info("setup: owner logged in", "region", region)
	if !registered {
		// The owner's data lives where the application is not registered:
		// every vehicle call would answer 412.
		w.flash(r, "Your Tesla account lives in "+region.Name()+", where the application is not registered yet. Register there in step 3 too.")
		redirect(rw, steps[stepRegister].path)
		return
	}
	redirect(rw, steps[stepVehicles].path)
}

// Step 5: the account's cars; the owner chooses which ones stream.

type vehiclesData struct {
	Vehicles []vehicleView
}

type vehicleView struct {
	VIN, Name, State string
	Driver           bool
	Selected         bool
}

func (w *Wizard) vehiclesData() *vehiclesData {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &vehiclesData{}
	anySelected := len(w.st.selected()) > 0
	for _, v := range w.st.Vehicles {
		d.Vehicles = append(d.Vehicles, vehicleView{
			VIN: v.VIN, Name: v.name(), State: v.State, Driver: v.AccessType == "DRIVER",
			Selected: v.Selected || !anySelected,
		})
	}
	return d
}

// listVehicles asks Tesla for the account's cars and merges them into the
// state, keeping what is known about cars seen before.
func (w *Wizard) listVehicles(ctx context.Context) error {
	owner, err := w.ownerSession()
	if err != nil {
		return err
	}
	list, err := owner.Vehicles(ctx)
	if err != nil {
		w.teslaFailed(err)
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteOwnerRegionLocked(owner)
	merged := make([]*vehicle, 0, len(list))
	for _, tv := range list {
		v := w.st.vehicle(tv.VIN)
		if v == nil {
			v = &vehicle{VIN: tv.VIN}
		}
		v.DisplayName, v.State, v.AccessType = tv.DisplayName, tv.State, tv.AccessType
		merged = append(merged, v)
	}
	w.st.Vehicles = merged
	if w.deps.Announcer != nil {
		for _, v := range merged {
			if v.DisplayName != "" {
				w.deps.Announcer.SetDisplayName(v.VIN, v.DisplayName)
			}
		}
	}
	return w.st.save(join(w.dir, stateFile))
}

func (w *Wizard) handleVehiclesPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepVehicles) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	var prob *problem
	status := http.StatusOK
	if err := w.listVehicles(ctx); err != nil {
		prob, status = explain(err), teslaCallStatus(err)
	} else if len(w.vehiclesData().Vehicles) == 0 {
		prob = problemText("Tesla lists no car on this account. Log in with the Tesla account that owns the car (or to which it is shared).")
	}
	w.render(rw, r, status, "vehicles", &page{Step: stepVehicles, Problem: prob, Data: w.vehiclesData()})
}

func (w *Wizard) handleVehicles(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepVehicles) {
		return
	}
	chosen := r.PostForm["vin"]
	w.mu.Lock()
	n := 0
	for _, v := range w.st.Vehicles {
		v.Selected = slices.Contains(chosen, v.VIN)
		if v.Selected {
			n++
		}
	}
	err := w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	switch {
	case err != nil:
		w.render(rw, r, http.StatusInternalServerError, "vehicles", &page{Step: stepVehicles, Problem: explain(err), Data: w.vehiclesData()})
	case n == 0:
		w.render(rw, r, http.StatusUnprocessableEntity, "vehicles", &page{Step: stepVehicles,
			Problem: problemText("Choose at least one car."), Data: w.vehiclesData()})
	default:
		redirect(rw, steps[stepPairing].path)
	}
}

// Step 6: the virtual key. The owner opens the pairing link on the phone
// with the Tesla app (a QR code carries it there) and approves the key in
// the car; the page polls fleet_status until the car reports it.

type pairingData struct {
	Host string
	Cars []pairingCar
	Done bool
}

type pairingCar struct {
	VIN, Name string
	Link      string
	QR        template.HTML
	Status    pollItem
}

func (w *Wizard) pairingData() *pairingData {
	w.mu.Lock()
	defer w.mu.Unlock()
	host := w.hostLocked()
	d := &pairingData{Host: host, Done: w.doneLocked(stepPairing)}
	for _, v := range w.st.selected() {
		link := fleetapi.PairingURL(host, v.VIN)
		c := pairingCar{VIN: v.VIN, Name: v.name(), Link: link, Status: pairingItem(v)}
		if code, err := qrcode.Encode(link); err == nil {
			// The SVG comes from our encoder, with the title escaped there.
			c.QR = template.HTML(code.SVG(4, "QR code of the pairing link for "+v.name()))
		}
		d.Cars = append(d.Cars, c)
	}
	return d
}

// pairingItem is one car's pairing status for the page.
func pairingItem(v *vehicle) pollItem {
	item := pollItem{ID: "pair-" + v.VIN}
	switch {
	case v.Paired:
		item.Text, item.State = "Paired: the car holds fleet2mqtt's key.", "ok"
	case v.SafetyToggle != nil && *v.SafetyToggle:
		item.Text, item.State = "This car streams without a virtual key: third-party data streaming is allowed on its safety screen.", "ok"
	case v.SafetyToggle != nil:
		item.Text, item.State = "This older Model S/X needs no virtual key but must allow it: in the car, Controls → Safety → “Allow Third-Party App Data Streaming”.", "wait"
	default:
		item.Text, item.State = "Waiting for the car to report the key (approve it on the car's screen with your key card).", "wait"
	}
	if v.Firmware != "" {
		item.Text += " Software " + v.Firmware + "."
	}
	return item
}

func (w *Wizard) handlePairingPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepPairing) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	err := w.pollPairing(ctx, true)
	status := http.StatusOK
	if err != nil {
		status = teslaCallStatus(err)
	}
	w.render(rw, r, status, "pairing", &page{Step: stepPairing, Problem: explain(err), Data: w.pairingData()})
}

// handlePairingStatus answers the page script while it waits.
func (w *Wizard) handlePairingStatus(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepPairing) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	err := w.pollPairing(ctx, false)
	w.mu.Lock()
	ans := pollAnswer{Done: w.doneLocked(stepPairing)}
	for _, v := range w.st.selected() {
		ans.Items = append(ans.Items, pairingItem(v))
	}
	w.mu.Unlock()
	if err != nil {
		ans.Problem = fleetapi.Explain(err)
	}
	writeJSON(rw, http.StatusOK, ans)
}

// pollPairing asks Tesla which selected cars hold the key, at most once
// per TeslaPollInterval unless force is set.
func (w *Wizard) pollPairing(ctx context.Context, force bool) error {
	w.mu.Lock()
	if !force && w.now().Sub(w.pairPoll) < w.deps.TeslaPollInterval {
		err := w.pairErr
		w.mu.Unlock()
		return err
	}
	w.pairPoll = w.now()
	var vins []string
	for _, v := range w.st.selected() {
		vins = append(vins, v.VIN)
	}
	owner, err := w.ownerLocked()
	w.mu.Unlock()
	if err != nil || len(vins) == 0 {
		return err
	}
	status, err := owner.FleetStatus(ctx, vins...)
	if err != nil {
		w.teslaFailed(err)
		w.mu.Lock()
		w.pairErr = err
		w.mu.Unlock()
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pairErr = nil
	w.noteOwnerRegionLocked(owner)
	for _, vin := range vins {
		v := w.st.vehicle(vin)
		if v == nil {
			continue
		}
		v.Paired = status.Paired(vin)
		if info, ok := status.VehicleInfo[vin]; ok {
			v.Firmware = info.FirmwareVersion
			v.SafetyToggle = info.SafetyScreenStreamingToggleEnabled
		}
	}
	return w.st.save(join(w.dir, stateFile))
}
