package setup

import (
	"net/http"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The steps of the setup, in order. Each is checked before the next one
// opens; each has its file, step_<path>.go, with its view model, its flow
// and its handlers.
const (
	stepApp = iota
	stepKey
	stepRegister
	stepOwner
	stepVehicles
	stepPairing
	stepFields
	stepPush
	stepVerify
)

var steps = []struct {
	path, label, title string
}{
	stepApp:      {"app", "Tesla app", "Your Tesla developer application"},
	stepKey:      {"key", "Key", "The application's key pair"},
	stepRegister: {"register", "Register", "Register with Tesla"},
	stepOwner:    {"owner", "Log in", "Log in with your Tesla account"},
	stepVehicles: {"vehicles", "Cars", "Choose your cars"},
	stepPairing:  {"pairing", "Pair", "Add the virtual key to your cars"},
	stepFields:   {"fields", "Signals", "Choose what the cars send"},
	stepPush:     {"push", "Send", "Send the streaming config to the cars"},
	stepVerify:   {"verify", "Verify", "Check that data arrives"},
}

// progressItem is one step in the progress bar.
type progressItem struct {
	Num   int
	Label string
	Path  string
	// State is done, current, open (reachable) or locked.
	State string
}

// done reports whether step i's check has passed.
func (f *flow) done(st *state, i int) bool {
	key := f.store.appKey()
	switch i {
	case stepApp:
		id, secret := f.credentials(st)
		return f.host(st) != "" && id != "" && secret != "" && f.redirectURL(st) != "" && st.CredentialsChecked == id
	case stepKey:
		return key != nil && st.KeyCheck != nil && st.KeyCheck.Host == f.host(st) && st.KeyCheck.PublicKey == key.hex
	case stepRegister:
		regions := f.regions(st)
		if len(regions) == 0 || key == nil {
			return false
		}
		for _, r := range regions {
			if !f.registered(st, r) {
				return false
			}
		}
		return true
	case stepOwner:
		id, _ := f.credentials(st)
		if st.Owner == nil || st.Owner.GrantGone || st.Owner.ClientID != id {
			return false
		}
		return f.store.tokenSaved()
	case stepVehicles:
		return len(st.selected()) > 0
	case stepPairing:
		sel := st.selected()
		for _, v := range sel {
			if !v.streams() {
				return false
			}
		}
		return len(sel) > 0
	case stepFields:
		return len(st.Fields) > 0
	case stepPush:
		for _, v := range st.selected() {
			if c := st.Cars[v.VIN]; c != nil && c.Config != nil {
				return true
			}
		}
		return false
	case stepVerify:
		for _, v := range st.selected() {
			c := st.Cars[v.VIN]
			if c == nil || c.Status != carActive {
				continue
			}
			if first, _ := f.seen.times(v.VIN); !first.IsZero() {
				return true
			}
		}
		return false
	}
	return false
}

// registered reports whether the registration in r is verified for the
// current domain, application and key.
func (f *flow) registered(st *state, r fleetapi.Region) bool {
	reg := st.Registered[r]
	key := f.store.appKey()
	if reg == nil || key == nil {
		return false
	}
	id, _ := f.credentials(st)
	return reg.Domain == f.host(st) && reg.ClientID == id && reg.PublicKey == key.hex
}

// firstOpen returns the first step whose check has not passed (stepVerify
// when all have).
func (f *flow) firstOpen(st *state) int {
	for i := range steps {
		if !f.done(st, i) {
			return i
		}
	}
	return stepVerify
}

// openStep is firstOpen of the current state.
func (f *flow) openStep() (open int) {
	f.store.read(func(st *state) { open = f.firstOpen(st) })
	return open
}

// progress describes every step for the progress bar.
func (f *flow) progress(current int) []progressItem {
	items := make([]progressItem, len(steps))
	f.store.read(func(st *state) {
		open := f.firstOpen(st)
		for i, s := range steps {
			state := "locked"
			switch {
			case i == current:
				state = "current"
			case f.done(st, i):
				state = "done"
			case i <= open:
				state = "open"
			}
			items[i] = progressItem{Num: i + 1, Label: s.label, Path: s.path, State: state}
		}
	})
	return items
}

// routeSteps are the routes whose handlers do not check their step
// themselves, such as the login callback a browser may be sent to at any
// time: access gates them (gate) before they run.
var routeSteps = map[string]int{
	"GET /callback": stepOwner,
}

// gate sends the browser back to the first unfinished step when step i
// is not open yet, and reports whether it did.
func (s *site) gate(rw http.ResponseWriter, r *http.Request, i int) bool {
	open := s.flow.openStep()
	if i <= open {
		return false
	}
	msg := "Finish “" + steps[open].title + "” first: each step is checked before the next one opens."
	if wantsJSON(r) {
		// A page script: an answer it can read, not a page.
		writeJSON(rw, http.StatusConflict, pollAnswer{Problem: msg})
		return true
	}
	s.flash(r, msg)
	redirect(rw, steps[open].path)
	return true
}
