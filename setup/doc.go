// Package setup is fleet2mqtt's setup page: a small web wizard that takes
// a Tesla account from nothing to cars streaming into fleet2mqtt in one
// sitting, checking every step before the next one opens and saying, when
// something fails, what to do about it.
//
// The steps: (1) the Tesla developer application, with exactly what to
// enter on developer.tesla.com, its credentials checked by fetching a
// partner token; (2) the application's P-256 key pair, served by the
// vehicle listener at /.well-known/appspecific/com.tesla.3p.public-key.pem
// and fetched back from the public address as Tesla will; (3) partner
// registration in the chosen regions, verified by reading back the key
// Tesla holds; (4) the owner's OAuth login, in a new tab, back to
// https://<public hostname>/oauth/callback on the vehicle listener (state
// and nonce checked, the rotating refresh tokens saved atomically before
// use; step_callback.go); (5) the cars; (6)
// the virtual key, by link and QR code for the phone, until fleet_status
// reports it; (7) the signals, with presets and a monthly estimate against
// Tesla's credit; (8) the config, signed with Tesla.SS256 and pushed; (9)
// the car's config state, its streaming errors, and the first record
// arriving, live. Afterwards Run pushes configs again before they expire.
// Off the steps, the Commands section (step_commands.go) shows which cars
// can be commanded, the configured categories, a "flash the lights" test
// through Deps.Commands and the month's command costs; the owner's login
// asks for the command scopes and asks again for those an older login
// lacks (prompt_missing_scopes).
//
// # Wiring
//
//	w, err := setup.New(cfg.Setup, cfg.DataDir, setup.Deps{
//		ServerCAPEM: func() []byte { return caChainOfServedCertificate },
//	}, logger)
//	webMux.Handle("/", w.Handler())                             // local web listener
//	public := w.PublicHandler()                                    // vehicle listener, no client certificate needed:
//	vehicleMux.Handle(fleetapi.PublicKeyPath, public)               //   the public key, and
//	vehicleMux.Handle(setup.CallbackPath, public)                   //   the owner login's callback
//	ingest: for every accepted record, w.RecordSeen(vin, time.Now())
//	go w.Run(ctx)
//
// The command engine sends through w.CommandTransport(fallback), the
// page's own owner session; other parts read the page's data with
// LoadCredentials and KeyPath, never its files.
//
// # Inside
//
// Three layers. The store (store.go) owns the state: one lock, and one
// update function that saves state.json atomically after every change.
// The flow (flow.go, and the flow part of each step file) makes every
// call to Tesla and returns view models; it knows no HTTP. The site
// (site.go, access.go) holds the handlers: each step is one file,
// step_<path>.go, holding its view model, its flow and a small resource
// type that mounts its routes, parses the form and renders. A resource
// can be mounted on another listener's mux (such as the vehicle
// listener's, on the public hostname) and shares the flow's state there.
// Production dependencies come in Deps; the clock and poll intervals that
// tests shorten come in Timing (WithTiming).
//
// # Access
//
// Behind Home Assistant's ingress (Config.TrustIngress), requests from the
// Supervisor's address that carry X-Ingress-Path are trusted: Home
// Assistant authenticated the user. X-Ingress-Path from any other address
// is refused. Everyone else logs in with the password (Config.Password, or
// one generated at the first start and printed once); wrong passwords are
// rate limited per client (an address, an IPv6 /64, or the client the
// Supervisor forwards for), under a global ceiling that never holds up a
// client that has not failed. Logged-in sessions live in memory behind an
// HttpOnly, SameSite=Lax cookie; a visitor who has not logged in costs no
// memory (the login form's CSRF token is signed, not stored), so no
// number of strangers can push the owner's login form out. Every form and
// script request carries the session's CSRF token. Every URL the page sends is relative, so it works
// under any path prefix.
//
// # State
//
// Everything lives in <data dir>/setup (mode 0700), each file written
// atomically with mode 0600: state.json (answers, results, the client
// secret, the cars and their pushed configs), owner-token.json (the
// owner's OAuth tokens), private-key.pem (the application's key) and
// password.json (the generated password's PBKDF2 hash). Secrets are never
// logged and never shown on the page.
package setup
