// Package proxy is a local API compatible with Tesla's tesla-http-proxy,
// so that tools written for that proxy (evcc, TWCManager, Home
// Assistant's tesla_custom) command the cars through fleet2mqtt:
//
//   - POST /api/1/vehicles/{VIN}/command/{name} with Tesla's REST command
//     name and JSON arguments runs the command through the engine, signed
//     with the application key, using the caller's own Tesla token
//     (Authorization: Bearer) for the Fleet API call, as Tesla's proxy
//     does. The answer has Tesla's shape: {"response":{"result":true,
//     "reason":""}}.
//   - Every other /api/1/... request is forwarded to the Fleet API
//     unchanged (the caller's token included) and its answer returned.
//
// The commands section applies: commands enabled, the categories.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Executor runs commands: *command.Engine.
type Executor interface {
	Execute(ctx context.Context, req command.Request) command.Result
}

// Config configures the API.
type Config struct {
	Settings command.Settings
	Engine   Executor
	// Via returns the Fleet API transport that uses the caller's token,
	// client.Owner(fleetapi.BearerToken(token), region).
	Via func(token string) command.Transport
	// FleetAPI returns the Fleet API base URL other requests are
	// forwarded to, asked for each request: the owner's region may be
	// known only once the setup page is done.
	FleetAPI func() (*url.URL, error)
	// Transport carries forwarded requests; http.DefaultTransport when
	// nil.
	Transport http.RoundTripper
}

// maxBody bounds a command's JSON arguments.
const maxBody = 64 << 10

// New returns the API's handler, which logs to log (nil discards).
func New(cfg Config, log *slog.Logger) (http.Handler, error) {
	if cfg.Engine == nil || cfg.Via == nil || cfg.FleetAPI == nil {
		return nil, errors.New("proxy API: engine, transport and Fleet API URL are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			base := r.In.Context().Value(baseKey{}).(*url.URL)
			r.SetURL(base)
			r.Out.Host = base.Host
			r.Out.Header.Del("X-Forwarded-For") // the car owner's address is not Tesla's business
		},
		Transport: cfg.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("proxy API: forwarding to the Fleet API failed", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "the Fleet API could not be reached: "+err.Error())
		},
	}
	h := &handler{cfg: cfg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/1/vehicles/{vin}/command/{name}", h.command)
	mux.HandleFunc("/api/1/", func(w http.ResponseWriter, r *http.Request) {
		base, err := cfg.FleetAPI()
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "no Fleet API to forward to: "+err.Error())
			return
		}
		forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), baseKey{}, base)))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: this is a vehicle command API under /api/1/")
	})
	return guard(mux), nil
}

// bodyTimeout bounds how long a request's body may take to arrive, from
// the end of its headers: arguments are a few bytes, and a client that
// sends them a byte at a time would hold a connection and a goroutine for
// as long as it likes.
const bodyTimeout = 20 * time.Second

// guard applies what every request must meet before the API looks at it:
// its body arrives within bodyTimeout; its path stays under what it names
// (no dot segments, no encoded or backward slashes, which Tesla's paths
// never hold and which would reach other paths of the Fleet API host
// once forwarded); and a request framed with Transfer-Encoding is the last
// on its connection, since one that also carried a Content-Length (Go
// goes by the Transfer-Encoding and drops it) may be a smuggling attempt
// that a front proxy read differently (RFC 9112, section 6.3).
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
		if len(r.TransferEncoding) > 0 {
			w.Header().Set("Connection", "close")
		}
		if reason := badPath(r.URL); reason != "" {
			writeError(w, http.StatusBadRequest, "bad path: "+reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// badPath says what is wrong with a request path that could climb out of
// the part of the API it names, or "".
func badPath(u *url.URL) string {
	raw := strings.ToLower(u.EscapedPath())
	switch {
	case strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c"):
		return "an encoded slash"
	case strings.Contains(u.Path, `\`):
		return "a backslash"
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == ".." || seg == "." {
			return "a dot segment"
		}
	}
	return ""
}

type handler struct {
	cfg Config
	log *slog.Logger
}

// baseKey carries the Fleet API base URL of one forwarded request.
type baseKey struct{}

// answer is Tesla's envelope.
type answer struct {
	Response         any    `json:"response"`
	Error            string `json:"error,omitempty"`
	ErrorDescription string `json:"error_description,omitempty"`
}

type commandResult struct {
	Result bool   `json:"result"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, answer{Error: msg})
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func (h *handler) command(w http.ResponseWriter, r *http.Request) {
	vin, name := r.PathValue("vin"), r.PathValue("name")
	tok, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fleet2mqtt"`)
		writeError(w, http.StatusUnauthorized, "missing Authorization: Bearer <your Tesla access token>")
		return
	}
	if err := h.cfg.Settings.Allows(name); err != nil {
		status := http.StatusForbidden
		if errors.Is(err, command.ErrInvalidCommand) {
			status = http.StatusBadRequest
		}
		h.log.Warn("vehicle command refused", "who", who(r), "vin", vin, "command", name, "reason", err)
		writeError(w, status, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the arguments: %v", err))
		return
	}
	req := command.Request{VIN: vin, Name: name, Args: body, Who: who(r), Via: h.cfg.Via(tok),
		OnlyIfAwake: r.URL.Query().Get("wake") == "false"}
	res := h.cfg.Engine.Execute(r.Context(), req)
	var apiErr *fleetapi.APIError
	switch {
	case res.OK:
		writeJSON(w, http.StatusOK, answer{Response: commandResult{Result: true}})
	case errors.Is(res.Err, command.ErrInvalidCommand):
		writeError(w, http.StatusBadRequest, res.Reason)
	case errors.Is(res.Err, command.ErrRateLimited):
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, res.Reason)
	case errors.Is(res.Err, command.ErrAsleep), errors.Is(res.Err, command.ErrWakeTimeout):
		writeError(w, http.StatusRequestTimeout, res.Reason)
	case errors.Is(res.Err, fleetapi.ErrLoginRequired), errors.Is(res.Err, fleetapi.ErrUnauthorized):
		writeError(w, http.StatusUnauthorized, res.Reason)
	case errors.As(res.Err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500:
		writeError(w, apiErr.Status, res.Reason)
	case errors.Is(res.Err, command.ErrRefused):
		// The car received it and said no: Tesla answers 200 with the
		// reason.
		writeJSON(w, http.StatusOK, answer{Response: commandResult{Reason: strings.TrimPrefix(res.Reason, command.ErrRefused.Error()+": ")}})
	default:
		writeError(w, http.StatusBadGateway, res.Reason)
	}
}

// who names the caller in the log: the proxy API and the caller's
// address.
func who(r *http.Request) string { return "api:" + r.RemoteAddr }
