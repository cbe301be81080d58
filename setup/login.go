package setup

import (
	"net/http"
	"time"
)

// loginPage is the setup page's own login: the password form, logout, and
// the index, which sends the browser to the first unfinished step.
type loginPage struct{ *site }

func (s loginPage) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /login", s.page)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
}

// index sends the browser to the first unfinished step.
func (s loginPage) index(rw http.ResponseWriter, r *http.Request) {
	redirect(rw, steps[s.flow.openStep()].path)
}

// page shows the password form.
func (s loginPage) page(rw http.ResponseWriter, r *http.Request) {
	if infoOf(r).sess.authed {
		redirect(rw, "")
		return
	}
	s.render(rw, r, http.StatusOK, "login", &page{Title: "Log in to the setup page", Step: -1})
}

// login checks the password, slowing down guessers.
func (s loginPage) login(rw http.ResponseWriter, r *http.Request) {
	addr := remoteAddr(r).String()
	if wait := s.limiter.wait(addr); wait > 0 {
		rw.Header().Set("Retry-After", retryAfter(wait))
		s.render(rw, r, http.StatusTooManyRequests, "login", &page{Title: "Log in to the setup page", Step: -1,
			Problem: problemText("Too many wrong passwords. Wait %s before trying again.", wait.Round(time.Second))})
		return
	}
	if !s.password.check(r.PostFormValue("password")) {
		s.limiter.fail(addr)
		s.log.Warn("setup page: wrong password", "remote", addr)
		s.render(rw, r, http.StatusUnauthorized, "login", &page{Title: "Log in to the setup page", Step: -1,
			Problem: problemText("Wrong password. It is setup.password in the configuration, or the one fleet2mqtt printed when it first started.")})
		return
	}
	s.limiter.succeed(addr)
	// A new session on login: a session id known before it cannot be
	// used after (session fixation).
	info := infoOf(r)
	s.sessions.delete(info.sess.id)
	sess := s.sessions.create(true)
	setSessionCookie(rw, r, info, sess)
	redirect(rw, "")
}

// logout ends the session.
func (s loginPage) logout(rw http.ResponseWriter, r *http.Request) {
	s.sessions.delete(infoOf(r).sess.id)
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: "", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	redirect(rw, "login")
}
