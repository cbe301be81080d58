package fleetapi_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// TestErrorAnswers injects every kind of failure into every kind of call
// and checks the error's type, sentinel and explanation.
func TestErrorAnswers(t *testing.T) {
	type callFunc func(ctx context.Context, f *fixture, o *fleetapi.Owner) error
	owner := func(ctx context.Context, _ *fixture, o *fleetapi.Owner) error {
		_, err := o.Vehicles(ctx)
		return err
	}
	push := func(ctx context.Context, f *fixture, o *fleetapi.Owner) error {
		_, err := o.ConfigureTelemetry(ctx, f.key, validConfig(t), vin1)
		return err
	}
	partner := func(ctx context.Context, f *fixture, _ *fleetapi.Owner) error {
		_, err := f.client.PartnerTelemetryErrors(ctx, fleetapi.RegionNA)
		return err
	}
	// freshPartner asks for a partner token with a new client, which has
	// none cached yet.
	freshPartner := func(ctx context.Context, f *fixture, _ *fleetapi.Owner) error {
		c, err := fleetapi.New(fleetapi.Config{ClientID: f.fake.ClientID(), ClientSecret: f.fake.ClientSecret(), Endpoints: f.fake.Endpoints()}, nil)
		if err != nil {
			return err
		}
		_, err = c.PartnerTelemetryErrors(ctx, fleetapi.RegionNA)
		return err
	}
	// refresh makes the owner's token look expired, so that the next call
	// refreshes it first.
	refresh := func(ctx context.Context, _ *fixture, o *fleetapi.Owner) error {
		_, err := o.Vehicles(ctx)
		return err
	}
	cases := []struct {
		name     string
		call     callFunc
		failure  fleetapitest.Failure
		sentinel error
		explain  string
	}{
		{"429 vehicles", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusTooManyRequests}, fleetapi.ErrRateLimited, "Wait 30s"},
		{"429 push", push, fleetapitest.Failure{Path: "/api/1/vehicles/fleet_telemetry_config_jws", Status: http.StatusTooManyRequests}, fleetapi.ErrRateLimited, "limiting"},
		{"500", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusInternalServerError}, fleetapi.ErrServer, "temporary"},
		{"503 html", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusServiceUnavailable, Body: "<html>upstream down</html>"}, fleetapi.ErrServer, "503"},
		{"200 malformed", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusOK, Body: "<html>captive portal</html>"}, fleetapi.ErrMalformedResponse, "could not read"},
		{"200 null response", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusOK, Body: `{"response":null}`, ContentType: "application/json"}, fleetapi.ErrMalformedResponse, "could not read"},
		{"200 wrong shape", push, fleetapitest.Failure{Path: "/api/1/vehicles/fleet_telemetry_config_jws", Status: http.StatusOK, Body: `{"response":{"updated_vehicles":"one"}}`, ContentType: "application/json"}, fleetapi.ErrMalformedResponse, "could not read"},
		{"403", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusForbidden, Error: "Unauthorized missing scopes"}, fleetapi.ErrForbidden, "permission"},
		{"404", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusNotFound}, fleetapi.ErrNotFound, "does not know"},
		{"408", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusRequestTimeout, Error: "vehicle unavailable"}, nil, "asleep"},
		{"412", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusPreconditionFailed, Error: "Account must be registered in the current region"}, fleetapi.ErrNotRegistered, "not registered"},
		{"418 other", owner, fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusTeapot, Error: "teapot", Description: "short and stout"}, nil, "short and stout"},
		{"partner 500", partner, fleetapitest.Failure{Path: "/api/1/partner_accounts/fleet_telemetry_errors", Status: http.StatusBadGateway}, fleetapi.ErrServer, "temporary"},
		{"token 429", freshPartner, fleetapitest.Failure{Path: "/oauth2/v3/token", Status: http.StatusTooManyRequests, Error: "too_many_requests"}, fleetapi.ErrRateLimited, "Wait 30s"},
		{"token 500 html", freshPartner, fleetapitest.Failure{Path: "/oauth2/v3/token", Status: http.StatusInternalServerError, Body: "<html>oops</html>"}, fleetapi.ErrServer, "temporary"},
		{"token 200 malformed", freshPartner, fleetapitest.Failure{Path: "/oauth2/v3/token", Status: http.StatusOK, Body: `{"token_type":"Bearer"}`, ContentType: "application/json"}, fleetapi.ErrMalformedResponse, "could not read"},
		{"refresh 401 login_required", refresh, fleetapitest.Failure{Path: "/oauth2/v3/token", Status: http.StatusUnauthorized, Error: "login_required"}, fleetapi.ErrLoginRequired, "Log in with Tesla again"},
		{"refresh 503", refresh, fleetapitest.Failure{Path: "/oauth2/v3/token", Status: http.StatusServiceUnavailable}, fleetapi.ErrServer, "temporary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1, Paired: true}}})
			f.register(t)
			store := &memStore{}
			o := f.login(t, store)
			ctx := context.Background()
			if strings.HasPrefix(tc.name, "refresh") {
				store.expire()
				o = f.client.Owner(store, o.Region())
			}
			f.fake.Fail(tc.failure)
			err := tc.call(ctx, f, o)
			checkError(t, err, tc.sentinel, tc.explain)
		})
	}
}

func checkError(t *testing.T, err error, sentinel error, explain string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not match %v", err, sentinel)
	}
	if got := fleetapi.Explain(err); !strings.Contains(got, explain) {
		t.Fatalf("explain %q does not contain %q (error %v)", got, explain, err)
	}
	var e *fleetapi.APIError
	if errors.As(err, &e) && e.Status == http.StatusTooManyRequests {
		if e.RateLimit == nil || e.RateLimit.Limit != 60 || e.RateLimit.Remaining != 0 || e.RateLimit.RetryAfter != 30*time.Second {
			t.Fatalf("rate limit %+v", e.RateLimit)
		}
	}
}

// TestNoSecretsLeak runs a whole setup, with failures, and checks that no
// token or secret reaches the log or an error message.
func TestNoSecretsLeak(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1, PairAfterPolls: 1}}})
	f.register(t)
	ctx := context.Background()
	store := &memStore{}
	owner := f.login(t, store)
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	_, err := owner.Vehicles(ctx)
	collect(err)
	_, err = owner.FleetStatus(ctx, vin1)
	collect(err)
	store.expire()
	owner = f.client.Owner(store, owner.Region())
	_, err = owner.ConfigureTelemetry(ctx, f.key, validConfig(t), vin1)
	collect(err)
	f.fake.Fail(fleetapitest.Failure{Status: http.StatusUnauthorized, Error: "invalid_token", Times: 3})
	_, err = owner.Vehicles(ctx)
	collect(err)
	f.fake.RevokeGrant()
	f.fake.ExpireAccessTokens()
	_, err = owner.Vehicles(ctx)
	collect(err)
	if len(errs) < 2 {
		t.Fatalf("only %d errors: the failures were not exercised", len(errs))
	}

	secrets := []string{f.fake.ClientSecret()}
	for _, tok := range store.saved() {
		secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	}
	if tok, err := f.client.PartnerToken(ctx, fleetapi.RegionNA); err == nil {
		secrets = append(secrets, tok.AccessToken)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "/api/1/vehicles") {
		t.Fatal("nothing logged: the test would prove nothing")
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret is in the log")
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), s) || strings.Contains(fleetapi.Explain(err), s) {
				t.Errorf("a secret is in error %q", err)
			}
		}
	}
	cfgLog := fleetapi.Config{ClientID: "id", ClientSecret: "s3cret"}.LogValue().String()
	if strings.Contains(cfgLog, "s3cret") || !strings.Contains(cfgLog, "[redacted]") {
		t.Errorf("config log value %s", cfgLog)
	}
}

func TestExplainGeneric(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fleetapi.ErrLoginRequired, "Log in"},
		{fleetapi.ErrStateMismatch, "Start the login again"},
		{fleetapi.ErrNonceMismatch, "Start the login again"},
		{fleetapi.ErrKeyMismatch, "different public key"},
		{fleetapi.ErrNotP256, "P-256"},
		{fleetapi.ErrInvalidSignature, "not valid"},
		{context.DeadlineExceeded, "in time"},
		{context.Canceled, "cancelled"},
		{errors.New("boom"), "boom"},
		{&fleetapi.APIError{Status: http.StatusPreconditionFailed, Endpoint: "POST /api/1/vehicles/fleet_telemetry_config"}, "unsigned"},
		{&fleetapi.APIError{Status: http.StatusMisdirectedRequest}, "another region"},
		{&fleetapi.APIError{Status: http.StatusUnauthorized, Code: "invalid_token"}, "clock"},
	}
	for _, tc := range cases {
		if got := fleetapi.Explain(tc.err); !strings.Contains(got, tc.want) || (tc.want == "" && got != "") {
			t.Errorf("Explain(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
	// Network failure: nothing listens there.
	c, err := fleetapi.New(fleetapi.Config{ClientID: "id", ClientSecret: "s", Endpoints: fleetapi.Endpoints{
		AuthorizeURL: "http://127.0.0.1:1/a", TokenURL: "http://127.0.0.1:1/t",
		APIBase: map[fleetapi.Region]string{fleetapi.RegionNA: "http://127.0.0.1:1"},
	}}, nil)

	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PartnerToken(context.Background(), fleetapi.RegionNA)
	if got := fleetapi.Explain(err); !strings.Contains(got, "could not be reached") {
		t.Errorf("unreachable: %q (%v)", got, err)
	}
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]fleetapi.Config{
		"no client id":  {},
		"relative url":  {ClientID: "id", RedirectURL: "/callback"},
		"bad endpoints": {ClientID: "id", Endpoints: fleetapi.Endpoints{AuthorizeURL: "x", TokenURL: "y", APIBase: map[fleetapi.Region]string{fleetapi.RegionNA: "z"}}},
		"no auth region": {ClientID: "id", AuthRegion: fleetapi.RegionCN, Endpoints: fleetapi.Endpoints{
			AuthorizeURL: "https://a.example/", TokenURL: "https://a.example/t", APIBase: map[fleetapi.Region]string{fleetapi.RegionNA: "https://na.example"}}},
	} {
		if _, err := fleetapi.New(cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := fleetapi.New(fleetapi.Config{ClientID: "id"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoints().APIBase[fleetapi.RegionEU] != fleetapi.BaseURLEU {
		t.Error("production endpoints not the default")
	}
}

// TestExplainLocalFiles checks that failures on this computer's disk are
// explained as such, with the file and the system's words, and never as
// Tesla being unreachable (syscall.Errno looks like a net.Error).
func TestExplainLocalFiles(t *testing.T) {
	// As FileTokenStore.SaveToken and WriteFileAtomic wrap them.
	saveToken := func(err error) error {
		return fmt.Errorf("save rotated token: save token: write /data/setup/token.json: %w", err)
	}
	tmp := "/data/setup/.token.json.tmp-1234567"
	cases := []struct {
		name string
		err  error
		want []string
	}{
		{"disk full writing", saveToken(&fs.PathError{Op: "write", Path: tmp, Err: syscall.ENOSPC}),
			[]string{"could not save the file /data/setup/token.json", "the disk is full", "no space left on device", "/data/setup", "not at Tesla"}},
		{"disk full creating the temporary file", saveToken(&fs.PathError{Op: "open", Path: "/data/setup/.token.json.tmp-*", Err: syscall.ENOSPC}),
			[]string{"/data/setup/token.json", "the disk is full", "no space left on device"}},
		{"disk full on sync", fmt.Errorf("save setup state: %w", &fs.PathError{Op: "sync", Path: "/data/setup/.state.json.tmp-1", Err: syscall.ENOSPC}),
			[]string{"save the file /data/setup/state.json", "no space left on device"}},
		{"quota", saveToken(&fs.PathError{Op: "write", Path: tmp, Err: syscall.EDQUOT}),
			[]string{"quota", "/data/setup/token.json"}},
		{"read-only rename", saveToken(&os.LinkError{Op: "rename", Old: tmp, New: "/data/setup/token.json", Err: syscall.EROFS}),
			[]string{"save the file /data/setup/token.json", "read-only", "data_dir"}},
		{"permission on open", fmt.Errorf("owner token: load token: %w", &fs.PathError{Op: "open", Path: "/data/setup/token.json", Err: syscall.EACCES}),
			[]string{"open the file /data/setup/token.json", "permission denied", "user fleet2mqtt runs as"}},
		{"folder missing", &fs.PathError{Op: "mkdir", Path: "/data/setup", Err: syscall.ENOENT},
			[]string{"create the folder /data/setup", "does not exist", "Check that /data exists"}},
		{"input/output error", saveToken(&fs.PathError{Op: "write", Path: tmp, Err: syscall.EIO}),
			[]string{"input/output error", "Check"}},
		{"bare errno", fmt.Errorf("save: %w", syscall.ENOSPC),
			[]string{"could not save its data", "the disk is full", "no space left on device", "data directory"}},
		{"system call", fmt.Errorf("save: %w", os.NewSyscallError("fallocate", syscall.ENOSPC)),
			[]string{"the disk is full", "no space left on device"}},
		{"inside a transport error", &url.Error{Op: "Get", URL: "https://fleet-api.example/api/1/vehicles", Err: saveToken(&fs.PathError{Op: "write", Path: tmp, Err: syscall.ENOSPC})},
			[]string{"the disk is full", "/data/setup/token.json"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !fleetapi.IsLocal(tc.err) {
				t.Errorf("IsLocal(%v) = false, want true", tc.err)
			}
			got := fleetapi.Explain(tc.err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Explain(%v) = %q, want it to contain %q", tc.err, got, w)
				}
			}
			for _, bad := range []string{"could not be reached", "did not answer", "internet connection", ".tmp-"} {
				if strings.Contains(got, bad) {
					t.Errorf("Explain(%v) = %q, must not say %q", tc.err, got, bad)
				}
			}
		})
	}
}

// TestExplainNetworkNotLocal checks that errors of network operations stay
// network errors, even when they carry an errno that files have too, and
// that a bare errno of another kind is not taken for one.
func TestExplainNetworkNotLocal(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"connect refused", &url.Error{Op: "Post", URL: "https://auth.example/token", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, "could not be reached"},
		{"connect forbidden by a firewall", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EACCES)}, "could not be reached"},
		{"DNS", &net.DNSError{Err: "no such host", Name: "fleet-api.example", IsNotFound: true}, "could not be reached"},
		{"bare errno of another kind", fmt.Errorf("pipe: %w", syscall.EMFILE), "Something went wrong"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if fleetapi.IsLocal(tc.err) {
				t.Errorf("IsLocal(%v) = true, want false", tc.err)
			}
			got := fleetapi.Explain(tc.err)
			if !strings.Contains(got, tc.want) {
				t.Errorf("Explain(%v) = %q, want it to contain %q", tc.err, got, tc.want)
			}
			if strings.Contains(got, "could not save") || strings.Contains(got, "could not open") {
				t.Errorf("Explain(%v) = %q: a network error taken for a file error", tc.err, got)
			}
		})
	}
}

// TestExplainFullDiskOnRefresh lets the fake Tesla rotate the owner's
// token while the token store fails with a real "no space left on device"
// (a write to /dev/full): the call fails, and the explanation blames the
// disk, not Tesla.
func TestExplainFullDiskOnRefresh(t *testing.T) {
	full := os.WriteFile("/dev/full", []byte("token"), 0o600)
	if !errors.Is(full, syscall.ENOSPC) {
		t.Skipf("no /dev/full that fails with ENOSPC here (%v)", full)
	}
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1, Paired: true}}})
	f.register(t)
	store := &memStore{}
	o := f.login(t, store)
	store.expire()
	store.setFail(fmt.Errorf("save token: %w", full))
	o = f.client.Owner(store, o.Region())
	_, err := o.Vehicles(context.Background())
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want one caused by the full disk", err)
	}
	if !fleetapi.IsLocal(err) {
		t.Errorf("IsLocal(%v) = false for a full disk met during a call to Tesla", err)
	}
	got := fleetapi.Explain(err)
	for _, w := range []string{"the disk is full", "no space left on device", "/dev/full", "not at Tesla"} {
		if !strings.Contains(got, w) {
			t.Errorf("Explain(%v) = %q, want it to contain %q", err, got, w)
		}
	}
	if strings.Contains(got, "could not be reached") {
		t.Errorf("Explain(%v) = %q blames the network", err, got)
	}
}

// TestExplainUnwritableDataDir saves a token into a directory that cannot
// be written.
func TestExplainUnwritableDataDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	dir := filepath.Join(t.TempDir(), "setup")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	store := fleetapi.FileTokenStore{Path: filepath.Join(dir, "token.json")}
	err := store.SaveToken(&oauth2.Token{AccessToken: "a", RefreshToken: "r"})
	if err == nil {
		t.Fatal("saving into a read-only directory succeeded")
	}
	if !fleetapi.IsLocal(err) {
		t.Errorf("IsLocal(%v) = false", err)
	}
	got := fleetapi.Explain(err)
	for _, w := range []string{store.Path, "permission denied", "user fleet2mqtt runs as"} {
		if !strings.Contains(got, w) {
			t.Errorf("Explain(%v) = %q, want it to contain %q", err, got, w)
		}
	}
}

// TestIsLocalTesla checks that Tesla's own failures and the way there are
// never taken for local ones.
func TestIsLocalTesla(t *testing.T) {
	cases := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"server error", &fleetapi.APIError{Status: 503, Endpoint: "GET /api/1/vehicles"}},
		{"rate limited", fmt.Errorf("list vehicles: %w", &fleetapi.APIError{Status: 429})},
		{"login required", fleetapi.ErrLoginRequired},
		{"malformed answer", fmt.Errorf("vehicles: %w", fleetapi.ErrMalformedResponse)},
		{"timeout", &url.Error{Op: "Get", URL: "https://fleet-api.example/api/1/vehicles", Err: context.DeadlineExceeded}},
		{"unrelated errno", fmt.Errorf("pipe: %w", syscall.EMFILE)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if fleetapi.IsLocal(tc.err) {
				t.Errorf("IsLocal(%v) = true, want false", tc.err)
			}
		})
	}
}
