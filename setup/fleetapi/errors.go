package fleetapi

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors. Errors from Tesla are *APIError values that match the
// sentinel of their kind with errors.Is, so a caller can write
// errors.Is(err, fleetapi.ErrLoginRequired) whatever endpoint failed.
var (
	// ErrLoginRequired: the owner's grant is gone (refresh token expired,
	// revoked or already used, or no token at all); the owner must log in
	// again. Tesla answers 401 login_required.
	ErrLoginRequired = errors.New("tesla login required")
	// ErrUnauthorized: Tesla refused the token or the client credentials
	// (401 other than login_required).
	ErrUnauthorized = errors.New("tesla refused the credentials")
	// ErrForbidden: the token lacks a scope the endpoint needs (403).
	ErrForbidden = errors.New("tesla token lacks a permission")
	// ErrNotFound: Tesla does not know the vehicle or resource (404).
	ErrNotFound = errors.New("not found at tesla")
	// ErrNotRegistered: the application is not registered as a partner in
	// the region that answered, or (on registration) the domain does not
	// match the application's allowed origin (412).
	ErrNotRegistered = errors.New("application not registered in this tesla region")
	// ErrWrongRegion: the owner's data lives in another region (421); the
	// client follows the redirect by itself when the named region is one it
	// knows.
	ErrWrongRegion = errors.New("wrong tesla region")
	// ErrKeyDownload: Tesla could not fetch the public key from the
	// application's domain while registering (424).
	ErrKeyDownload = errors.New("tesla could not download the public key")
	// ErrRateLimited: too many requests (429); see APIError.RateLimit.
	ErrRateLimited = errors.New("tesla rate limit reached")
	// ErrServer: Tesla failed (5xx).
	ErrServer = errors.New("tesla server error")
	// ErrMalformedResponse: Tesla's answer could not be read.
	ErrMalformedResponse = errors.New("malformed answer from tesla")

	// ErrStateMismatch: the OAuth callback's state is not the one we sent.
	ErrStateMismatch = errors.New("login callback state does not match")
	// ErrNonceMismatch: the id_token's nonce is not the one we sent.
	ErrNonceMismatch = errors.New("login id_token nonce does not match")
	// ErrAccessDenied: the owner did not grant access on Tesla's page.
	ErrAccessDenied = errors.New("owner did not grant access")
	// ErrLoginFailed: Tesla's login page reported another error.
	ErrLoginFailed = errors.New("tesla login failed")

	// ErrKeyMismatch: the public key Tesla holds for our domain is not ours.
	ErrKeyMismatch = errors.New("tesla holds another public key for this domain")
	// ErrNotP256: a key is not on NIST P-256, the only curve Tesla accepts.
	ErrNotP256 = errors.New("key is not a NIST P-256 key")
	// ErrInvalidSignature: a Tesla.SS256 signature does not verify.
	ErrInvalidSignature = errors.New("invalid Tesla.SS256 signature")
	// ErrMalformedJWS: a token is not a well-formed Tesla.SS256 JWS.
	ErrMalformedJWS = errors.New("malformed Tesla.SS256 token")
	// ErrInvalidConfig: a streaming config would be refused by Tesla or the
	// car; the error lists every problem.
	ErrInvalidConfig = errors.New("invalid streaming config")
)

// APIError is an error answer from Tesla's authentication server or Fleet
// API. Its message never contains a token or secret.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is Tesla's short error value ("error" in the body), such as
	// "login_required" or "invalid_grant"; it may be a sentence.
	Code string
	// Message is Tesla's longer description ("error_description"), or the
	// start of the body when it was not JSON.
	Message string
	// Endpoint is the request, such as "GET /api/1/vehicles".
	Endpoint string
	// Region is the Fleet API region that answered ("" for the
	// authentication server).
	Region Region
	// RegionURL is, on a 421, the base URL Tesla named for this owner.
	RegionURL string
	// RateLimit is set from the RateLimit-* and Retry-After headers when
	// Tesla sent any (always on a 429).
	RateLimit *RateLimit
}

// RateLimit is Tesla's rate-limit information from a response's headers.
type RateLimit struct {
	// Limit and Remaining are requests in the current window (-1 when
	// Tesla did not say).
	Limit, Remaining int
	// Reset is the time until the window resets (0 when unknown).
	Reset time.Duration
	// RetryAfter is how long Tesla asks to wait (0 when unknown).
	RetryAfter time.Duration
}

// Wait returns how long to wait before trying again.
func (r *RateLimit) Wait() time.Duration {
	if r == nil {
		return 0
	}
	return max(r.RetryAfter, r.Reset)
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("tesla: ")
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
		b.WriteString(": ")
	}
	b.WriteString(strconv.Itoa(e.Status))
	if t := http.StatusText(e.Status); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Message != "" && e.Message != e.Code {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is makes an APIError match the sentinel error of its kind.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrLoginRequired:
		return e.loginRequired()
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized && !e.loginRequired()
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrNotRegistered:
		return e.Status == http.StatusPreconditionFailed
	case ErrWrongRegion:
		return e.Status == http.StatusMisdirectedRequest
	case ErrKeyDownload:
		return e.Status == http.StatusFailedDependency
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrServer:
		return e.Status >= 500
	}
	return false
}

// loginRequired reports whether the owner's grant is gone: Tesla's
// login_required, or an OAuth invalid_grant (a refresh token or code that
// is expired, revoked or already used).
func (e *APIError) loginRequired() bool {
	return e.Code == "login_required" || e.Code == "invalid_grant"
}

// Explain says in plain words what went wrong and what to do, for people.
func (e *APIError) Explain() string {
	lower := strings.ToLower(e.Code + " " + e.Message)
	switch {
	case e.loginRequired():
		return "Tesla no longer accepts this login (it expired, was revoked in the Tesla app, or was replaced by a newer one). Log in with Tesla again."
	case e.Code == "invalid_client" || e.Code == "unauthorized_client":
		return "Tesla did not accept the client ID or client secret. Copy both again from your application on developer.tesla.com."
	case e.Status == http.StatusUnauthorized:
		return "Tesla refused the access token. Log in with Tesla again; if this keeps happening, check that this computer's clock is right."
	case e.Status == http.StatusForbidden:
		return "The Tesla login does not allow this. Log in again and tick every permission Tesla asks for (vehicle information, location and commands included)."
	case e.Status == http.StatusNotFound:
		return "Tesla does not know this car or resource for this account. Check that the car is on the account you logged in with."
	case e.Status == http.StatusPreconditionFailed && strings.Contains(lower, "origin"):
		return "The domain must be the one you entered as Allowed Origin for your application on developer.tesla.com. Fix one of them and register again."
	case e.Status == http.StatusPreconditionFailed && strings.Contains(e.Endpoint, "/fleet_telemetry_config") && !strings.Contains(e.Endpoint, "_jws"):
		return "Tesla refuses unsigned streaming configs for this application; the config must be pushed signed (fleet2mqtt does this itself)."
	case e.Status == http.StatusPreconditionFailed:
		return "Your application is not registered with Tesla in this region" + e.inRegion() + ". Run the partner registration step again for it."
	case e.Status == http.StatusMisdirectedRequest:
		if e.RegionURL != "" {
			return "This Tesla account lives in another region (" + e.RegionURL + "), which fleet2mqtt does not know. Check the region settings."
		}
		return "This Tesla account lives in another region. Choose the region where the account was created and try again."
	case e.Status == http.StatusFailedDependency:
		return "Tesla could not download your public key from https://<your domain>" + PublicKeyPath + ". Make sure that address is reachable from the internet and serves the key, then register again."
	case e.Status == http.StatusTooManyRequests:
		if w := e.RateLimit.Wait(); w > 0 {
			return "Tesla is limiting how often we may ask. Wait " + w.Round(time.Second).String() + " and try again."
		}
		return "Tesla is limiting how often we may ask. Wait a minute and try again."
	case e.Status == http.StatusRequestTimeout:
		return "The car did not answer; it may be asleep or offline. Try again when it is awake."
	case e.Status >= 500:
		return "Tesla's servers had a problem (" + strconv.Itoa(e.Status) + "). This is usually temporary: try again in a few minutes."
	}
	msg := e.Message
	if msg == "" {
		msg = e.Code
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return "Tesla refused the request: " + msg
}

func (e *APIError) inRegion() string {
	if name := e.Region.Name(); name != "" {
		return " (" + name + ")"
	}
	return ""
}

// Explain returns a plain-language explanation of any error this package
// returns, for the setup page to show. It returns "" for nil.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	// Local file errors first: syscall.Errno looks like a net.Error, and a
	// full disk must not read as Tesla being unreachable.
	if msg := explainLocal(err); msg != "" {
		return msg
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Explain()
	}
	var netErr net.Error
	network := errors.As(err, &netErr) && !isErrno(netErr)
	switch {
	case errors.Is(err, ErrLoginRequired):
		return "You are not logged in with Tesla (or the login expired). Log in with Tesla again."
	case errors.Is(err, ErrStateMismatch):
		return "The answer from Tesla's login page does not belong to this browser session. Start the login again from this page."
	case errors.Is(err, ErrNonceMismatch):
		return "Tesla's login answer could not be matched to this login attempt. Start the login again from this page."
	case errors.Is(err, ErrAccessDenied):
		return "Access was not granted on Tesla's page. Log in again and allow the permissions fleet2mqtt asks for."
	case errors.Is(err, ErrLoginFailed):
		return "Tesla's login page reported a problem (" + err.Error() + "). Start the login again; if it repeats, check the redirect URI and the scopes of your application on developer.tesla.com."
	case errors.Is(err, ErrKeyMismatch):
		return "Tesla holds a different public key for your domain than the one fleet2mqtt serves. Make sure the domain serves fleet2mqtt's key, then register again."
	case errors.Is(err, ErrNotP256):
		return "The key is not a NIST P-256 (prime256v1) key, the only kind Tesla accepts."
	case errors.Is(err, ErrInvalidConfig):
		return "The streaming config cannot work: " + err.Error()
	case errors.Is(err, ErrInvalidSignature), errors.Is(err, ErrMalformedJWS):
		return "The signed config is not valid: " + err.Error()
	case errors.Is(err, ErrMalformedResponse):
		return "Tesla answered with something fleet2mqtt could not read. Try again later."
	case errors.Is(err, context.DeadlineExceeded), network && netErr.Timeout():
		return "Tesla did not answer in time. Check this computer's internet connection and try again."
	case errors.Is(err, context.Canceled):
		return "The request was cancelled."
	case network:
		return "Tesla could not be reached. Check this computer's internet connection and DNS, then try again."
	}
	return "Something went wrong: " + err.Error()
}

// isErrno reports whether err is a bare system error number. Such an
// error is the first net.Error in a chain only when no network operation
// wrapped it, so it says nothing about the network.
func isErrno(err error) bool {
	_, ok := err.(syscall.Errno)
	return ok
}

// IsLocal reports whether err is a failure on this computer rather than at
// Tesla or on the way there: reading or writing fleet2mqtt's own files (its
// data directory: token, key, setup state), such as a full or read-only
// disk, even when the failure surfaced in the middle of a call to Tesla
// (saving a refreshed token). Explain then blames the disk, and a web
// page answers with a server error of its own, not a bad gateway.
func IsLocal(err error) bool {
	_, ok := localFailure(err)
	return ok
}

// fileFailure is a failure on fleet2mqtt's own files: what was done to
// which path (both "" when unknown), and the system's error.
type fileFailure struct {
	op, path string
	cause    error
}

// localFailure picks the file failure out of err, if err is one.
func localFailure(err error) (fileFailure, bool) {
	if err == nil {
		return fileFailure{}, false
	}
	// An error from a network operation may carry an errno that also
	// occurs on files (EACCES from a firewall); it is not a file error.
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fileFailure{}, false
	}
	var (
		pathErr *fs.PathError
		linkErr *os.LinkError
	)
	switch {
	case errors.As(err, &pathErr):
		return fileFailure{pathErr.Op, pathErr.Path, pathErr.Err}, true
	case errors.As(err, &linkErr):
		return fileFailure{linkErr.Op, linkErr.New, linkErr.Err}, true
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EROFS):
		// Without a path these can still only be about storage.
		cause := err
		var errno syscall.Errno
		if errors.As(err, &errno) {
			cause = errno
		}
		return fileFailure{cause: cause}, true
	}
	return fileFailure{}, false
}

// explainLocal explains a failure to read or write fleet2mqtt's own files
// (see IsLocal), or returns "" when err is not one. The explanation names
// the file and the cause, and keeps the system's own words (such as "no
// space left on device") so that they can be looked up.
func explainLocal(err error) string {
	f, ok := localFailure(err)
	if !ok {
		return ""
	}
	op, path, cause := f.op, f.path, f.cause

	var b strings.Builder
	b.WriteString("fleet2mqtt could not ")
	where := "fleet2mqtt's data directory"
	if path == "" {
		b.WriteString("save its data")
	} else {
		path = atomicTarget(path)
		verb, noun := fileAction(op)
		b.WriteString(verb + " the " + noun + " " + path)
		where = filepath.Dir(path)
	}
	b.WriteString(": ")
	if reason := fileReason(cause); reason != "" {
		b.WriteString(reason + " (" + cause.Error() + ")")
	} else {
		b.WriteString(cause.Error())
	}
	b.WriteString(". ")
	b.WriteString(fileAdvice(cause, where))
	b.WriteString(" This is a problem on this computer, not at Tesla.")
	return b.String()
}

// fileAction says what the operation op of a *fs.PathError or
// *os.LinkError was doing, and to what.
func fileAction(op string) (verb, noun string) {
	switch op {
	case "read", "readdirent", "stat", "lstat", "readlink":
		return "read", "file"
	case "readdir":
		return "read", "folder"
	case "open":
		return "open", "file"
	case "remove", "unlinkat":
		return "remove", "file"
	case "mkdir":
		return "create", "folder"
	default: // write, sync, close, rename, chmod, truncate, ...
		return "save", "file"
	}
}

// fileReason puts the cause of a file error in plain words, or returns ""
// when there are none plainer than the system's.
func fileReason(cause error) string {
	switch {
	case errors.Is(cause, syscall.ENOSPC):
		return "the disk is full"
	case errors.Is(cause, syscall.EDQUOT):
		return "the disk quota is used up"
	case errors.Is(cause, syscall.EROFS):
		return "the file system is read-only"
	case errors.Is(cause, fs.ErrPermission):
		return "the user fleet2mqtt runs as may not do that"
	case errors.Is(cause, fs.ErrNotExist):
		return "it or a folder above it does not exist"
	case errors.Is(cause, syscall.EIO):
		return "the disk reported an input/output error"
	}
	return ""
}

// fileAdvice says what to do about a file error in the folder where.
func fileAdvice(cause error, where string) string {
	switch {
	case errors.Is(cause, syscall.ENOSPC):
		return "Free some space on the disk that holds " + where + ", then try again."
	case errors.Is(cause, syscall.EDQUOT):
		return "Free some space on the disk that holds " + where + " or raise the quota of the user fleet2mqtt runs as, then try again."
	case errors.Is(cause, syscall.EROFS):
		return "Make " + where + " writable (or set data_dir to a writable place), then try again."
	case errors.Is(cause, fs.ErrPermission):
		return "Make " + where + " and its files belong to the user fleet2mqtt runs as, then try again."
	case errors.Is(cause, fs.ErrNotExist):
		return "Check that " + where + " exists and stays mounted, then try again."
	}
	return "Check the disk that holds " + where + ", then try again."
}

// atomicTarget returns the file a temporary file of WriteFileAtomic
// (".<name>.tmp-<random>") stands for, or path itself.
func atomicTarget(path string) string {
	dir, base := filepath.Split(path)
	if i := strings.LastIndex(base, ".tmp-"); strings.HasPrefix(base, ".") && i > 1 {
		return dir + base[1:i]
	}
	return path
}

// parseRateLimit reads Tesla's RateLimit-* and Retry-After headers; nil when
// there are none.
func parseRateLimit(h http.Header, now time.Time) *RateLimit {
	limit, lOK := headerInt(h, "RateLimit-Limit")
	remaining, rOK := headerInt(h, "RateLimit-Remaining")
	reset, sOK := headerInt(h, "RateLimit-Reset")
	var retry time.Duration
	ra := strings.TrimSpace(h.Get("Retry-After"))
	if ra != "" {
		if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
			retry = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil && t.After(now) {
			retry = t.Sub(now)
		}
	}
	if !lOK && !rOK && !sOK && ra == "" {
		return nil
	}
	rl := &RateLimit{Limit: -1, Remaining: -1, RetryAfter: retry}
	if lOK {
		rl.Limit = limit
	}
	if rOK {
		rl.Remaining = remaining
	}
	if sOK && reset >= 0 {
		rl.Reset = time.Duration(reset) * time.Second
	}
	return rl
}

func headerInt(h http.Header, key string) (int, bool) {
	v := strings.TrimSpace(h.Get(key))
	if v == "" {
		return 0, false
	}
	// Structured-field forms such as "60;w=60" keep their leading number.
	if i := strings.IndexAny(v, ";, "); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}
