package setup

import (
	"net/http"
	"os"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The steps of the setup, in order. Each is checked before the next one
// opens.
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

// doneLocked reports whether step i's check has passed.
func (w *Wizard) doneLocked(i int) bool {
	st := w.st
	switch i {
	case stepApp:
		id, secret := w.credentialsLocked()
		return w.hostLocked() != "" && id != "" && secret != "" && w.redirectURLLocked() != "" && st.CredentialsChecked == id
	case stepKey:
		if w.key == nil || st.KeyCheck == nil {
			return false
		}
		hexKey, err := fleetapi.PublicKeyHex(&w.key.PublicKey)
		return err == nil && st.KeyCheck.Host == w.hostLocked() && st.KeyCheck.PublicKey == hexKey
	case stepRegister:
		regions := w.regionsLocked()
		if len(regions) == 0 || w.key == nil {
			return false
		}
		for _, r := range regions {
			if !w.registeredLocked(r) {
				return false
			}
		}
		return true
	case stepOwner:
		id, _ := w.credentialsLocked()
		if st.Owner == nil || st.Owner.GrantGone || st.Owner.ClientID != id {
			return false
		}
		_, err := os.Stat(join(w.dir, tokenFile))
		return err == nil
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
			if first, _ := w.seenTimes(v.VIN); !first.IsZero() {
				return true
			}
		}
		return false
	}
	return false
}

// registeredLocked reports whether the registration in r is verified for
// the current domain, application and key.
func (w *Wizard) registeredLocked(r fleetapi.Region) bool {
	reg := w.st.Registered[r]
	if reg == nil || w.key == nil {
		return false
	}
	id, _ := w.credentialsLocked()
	hexKey, err := fleetapi.PublicKeyHex(&w.key.PublicKey)
	return err == nil && reg.Domain == w.hostLocked() && reg.ClientID == id && reg.PublicKey == hexKey
}

// firstOpenLocked returns the first step whose check has not passed
// (stepVerify when all have).
func (w *Wizard) firstOpenLocked() int {
	for i := range steps {
		if !w.doneLocked(i) {
			return i
		}
	}
	return stepVerify
}

// progress describes every step for the progress bar.
func (w *Wizard) progress(current int) []progressItem {
	w.mu.Lock()
	defer w.mu.Unlock()
	open := w.firstOpenLocked()
	items := make([]progressItem, len(steps))
	for i, s := range steps {
		state := "locked"
		switch {
		case i == current:
			state = "current"
		case w.doneLocked(i):
			state = "done"
		case i <= open:
			state = "open"
		}
		items[i] = progressItem{Num: i + 1, Label: s.label, Path: s.path, State: state}
	}
	return items
}

// gate sends the browser back to the first unfinished step when step i
// is not open yet, and reports whether it did.
func (w *Wizard) gate(rw http.ResponseWriter, r *http.Request, i int) bool {
	w.mu.Lock()
	open := w.firstOpenLocked()
	w.mu.Unlock()
	if i <= open {
		return false
	}
	w.flash(r, "Finish “"+steps[open].title+"” first: each step is checked before the next one opens.")
	redirect(rw, steps[open].path)
	return true
}

// handleIndex sends the browser to the first unfinished step.
func (w *Wizard) handleIndex(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	open := w.firstOpenLocked()
	w.mu.Unlock()
	redirect(rw, steps[open].path)
}

// handleLoginPage shows the password form.
func (w *Wizard) handleLoginPage(rw http.ResponseWriter, r *http.Request) {
	if infoOf(r).sess.authed {
		redirect(rw, "")
		return
	}
	w.render(rw, r, http.StatusOK, "login", &page{Title: "Log in to the setup page", Step: -1})
}

// handleLogin checks the password, slowing down guessers.
func (w *Wizard) handleLogin(rw http.ResponseWriter, r *http.Request) {
	addr := remoteAddr(r).String()
	if wait := w.limiter.wait(addr); wait > 0 {
		rw.Header().Set("Retry-After", retryAfter(wait))
		w.render(rw, r, http.StatusTooManyRequests, "login", &page{Title: "Log in to the setup page", Step: -1,
			Problem: problemText("Too many wrong passwords. Wait %s before trying again.", wait.Round(time.Second))})
		return
	}
	if !w.password.check(r.PostFormValue("password")) {
		w.limiter.fail(addr)
		w.log.Warn("setup page: wrong password", "remote", addr)
		w.render(rw, r, http.StatusUnauthorized, "login", &page{Title: "Log in to the setup page", Step: -1,
			Problem: problemText("Wrong password. It is setup.password in the configuration, or the one fleet2mqtt printed when it first started.")})
		return
	}
	w.limiter.succeed(addr)
	// A new session on login: a session id known before it cannot be
	// used after (session fixation).
	info := infoOf(r)
	w.sessions.delete(info.sess.id)
	sess := w.sessions.create(true)
	w.setSessionCookie(rw, r, info, sess)
	redirect(rw, "")
}

// handleLogout ends the session.
func (w *Wizard) handleLogout(rw http.ResponseWriter, r *http.Request) {
	w.sessions.delete(infoOf(r).sess.id)
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: "", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	redirect(rw, "login")
}
