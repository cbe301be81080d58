package fleetapi_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

const vin1 = "5YJ3E1EA7KF000001"

func TestAuthCodeURL(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{})
	u := mustParse(t, f.client.AuthCodeURL("st", "no", fleetapi.AuthURLOptions{PromptMissingScopes: true, ShowKeypairStep: true, Locale: "de-DE"}))
	want := url.Values{
		"response_type":         {"code"},
		"client_id":             {f.fake.ClientID()},
		"redirect_uri":          {testCallback},
		"scope":                 {strings.Join(fleetapi.DefaultScopes, " ")},
		"state":                 {"st"},
		"nonce":                 {"no"},
		"prompt_missing_scopes": {"true"},
		"show_keypair_step":     {"true"},
		"locale":                {"de-DE"},
	}
	if got := u.Query(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("query\n got %v\nwant %v", got, want)
	}
	if base := u.Scheme + "://" + u.Host + u.Path; base != f.fake.Endpoints().AuthorizeURL {
		t.Fatalf("authorize URL %s", base)
	}
	// Without options the extras stay out.
	q := mustParse(t, f.client.AuthCodeURL("st", "", fleetapi.AuthURLOptions{})).Query()
	for _, k := range []string{"nonce", "prompt_missing_scopes", "show_keypair_step", "locale"} {
		if q.Has(k) {
			t.Errorf("%s present without being asked", k)
		}
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{})
	ctx := context.Background()
	store := &memStore{}
	state, nonce := rand.Text(), rand.Text()
	callback, err := f.fake.Login(ctx, f.client.AuthCodeURL(state, nonce, fleetapi.AuthURLOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := callback.Query().Get("issuer"); got != f.fake.Issuer() {
		t.Errorf("issuer %q", got)
	}
	code, err := fleetapi.ParseCallback(callback.Query(), state)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := f.client.Exchange(ctx, code, nonce, store)
	if err != nil {
		t.Fatal(err)
	}
	saves := store.saved()
	if len(saves) != 1 || saves[0].RefreshToken == "" || saves[0].AccessToken == "" {
		t.Fatalf("saved tokens %d, want one with access and refresh token", len(saves))
	}
	if f.fake.TokenUsed(saves[0].AccessToken) {
		t.Fatal("access token used before Exchange returned")
	}
	if !owner.Refreshable() {
		t.Error("owner not refreshable")
	}
	if owner.Region() != fleetapi.RegionNA {
		t.Errorf("region %s", owner.Region())
	}

	// A code is single use.
	_, err = f.client.Exchange(ctx, code, nonce, &memStore{})
	if !errors.Is(err, fleetapi.ErrLoginRequired) || apiError(t, err).Code != "invalid_grant" {
		t.Fatalf("second exchange: %v", err)
	}
}

func TestLoginFailures(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{})
	ctx := context.Background()

	t.Run("nonce", func(t *testing.T) {
		state := rand.Text()
		cb, err := f.fake.Login(ctx, f.client.AuthCodeURL(state, "sent", fleetapi.AuthURLOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		code, err := fleetapi.ParseCallback(cb.Query(), state)
		if err != nil {
			t.Fatal(err)
		}
		store := &memStore{}
		if _, err := f.client.Exchange(ctx, code, "other", store); !errors.Is(err, fleetapi.ErrNonceMismatch) {
			t.Fatalf("exchange: %v", err)
		}
		if len(store.saved()) != 0 {
			t.Fatal("tokens of a mismatched login were saved")
		}
	})

	t.Run("state", func(t *testing.T) {
		cb, err := f.fake.Login(ctx, f.client.AuthCodeURL("mine", "", fleetapi.AuthURLOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"theirs", ""} {
			if _, err := fleetapi.ParseCallback(cb.Query(), want); !errors.Is(err, fleetapi.ErrStateMismatch) {
				t.Errorf("want state %q: %v", want, err)
			}
		}
	})

	t.Run("denied", func(t *testing.T) {
		f.fake.DenyLogin(true)
		defer f.fake.DenyLogin(false)
		cb, err := f.fake.Login(ctx, f.client.AuthCodeURL("s", "", fleetapi.AuthURLOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = fleetapi.ParseCallback(cb.Query(), "s")
		if !errors.Is(err, fleetapi.ErrAccessDenied) {
			t.Fatalf("callback: %v", err)
		}
		if !strings.Contains(fleetapi.Explain(err), "not granted") {
			t.Errorf("explain: %s", fleetapi.Explain(err))
		}
	})

	t.Run("callback errors", func(t *testing.T) {
		if _, err := fleetapi.ParseCallback(url.Values{"error": {"invalid_scope"}, "state": {"s"}}, "s"); !errors.Is(err, fleetapi.ErrLoginFailed) {
			t.Errorf("invalid_scope: %v", err)
		}
		if _, err := fleetapi.ParseCallback(url.Values{"state": {"s"}}, "s"); !errors.Is(err, fleetapi.ErrMalformedResponse) {
			t.Errorf("no code: %v", err)
		}
	})

	t.Run("redirect not registered", func(t *testing.T) {
		other, err := fleetapi.New(fleetapi.Config{ClientID: f.fake.ClientID(), RedirectURL: "https://evil.example/cb", Endpoints: f.fake.Endpoints()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.fake.Login(ctx, other.AuthCodeURL("s", "", fleetapi.AuthURLOptions{})); err == nil {
			t.Fatal("login page accepted an unregistered redirect URI")
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		bad, err := fleetapi.New(fleetapi.Config{ClientID: f.fake.ClientID(), ClientSecret: "wrong", RedirectURL: testCallback, Endpoints: f.fake.Endpoints()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := f.fake.Login(ctx, bad.AuthCodeURL("s", "", fleetapi.AuthURLOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Exchange(ctx, cb.Query().Get("code"), "", &memStore{})
		e := apiError(t, err)
		if e.Status != http.StatusUnauthorized || e.Code != "invalid_client" || !errors.Is(err, fleetapi.ErrUnauthorized) || errors.Is(err, fleetapi.ErrLoginRequired) {
			t.Fatalf("exchange with wrong secret: %v", err)
		}
		if !strings.Contains(e.Explain(), "client ID or client secret") {
			t.Errorf("explain: %s", e.Explain())
		}
		if _, err := bad.PartnerToken(ctx, fleetapi.RegionNA); !errors.Is(err, fleetapi.ErrUnauthorized) {
			t.Errorf("partner token with wrong secret: %v", err)
		}
	})
}

// TestTokenRotation checks that every refreshed token reaches the store
// before its access token is used, and that the old refresh token is dead.
func TestTokenRotation(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	f.register(t)
	ctx := context.Background()
	store := &memStore{}
	f.login(t, store)
	first := store.saved()[0]

	store.onSave = func(tok *oauth2.Token) {
		if f.fake.TokenUsed(tok.AccessToken) {
			t.Errorf("access token used before it was saved")
		}
	}
	store.expire()
	owner := f.client.Owner(store, fleetapi.RegionNA)
	if _, err := owner.Vehicles(ctx); err != nil {
		t.Fatal(err)
	}
	saves := store.saved()
	if len(saves) != 2 {
		t.Fatalf("%d saves, want 2", len(saves))
	}
	rotated := saves[1]
	if rotated.RefreshToken == first.RefreshToken || rotated.AccessToken == first.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	if !f.fake.TokenUsed(rotated.AccessToken) {
		t.Fatal("the rotated access token was not used")
	}

	// The old refresh token is spent: a session still holding it must
	// log in again.
	stale := &memStore{tok: &oauth2.Token{AccessToken: first.AccessToken, RefreshToken: first.RefreshToken, Expiry: time.Now().Add(-time.Hour)}}
	_, err := f.client.Owner(stale, fleetapi.RegionNA).Vehicles(ctx)
	if !errors.Is(err, fleetapi.ErrLoginRequired) {
		t.Fatalf("stale refresh token: %v", err)
	}
	if e := apiError(t, err); e.Status != http.StatusUnauthorized || e.Code != "login_required" {
		t.Fatalf("stale refresh token: %v", err)
	}
	if !strings.Contains(fleetapi.Explain(err), "Log in with Tesla again") {
		t.Errorf("explain: %s", fleetapi.Explain(err))
	}
}

func TestTokenSaveFailure(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	f.register(t)
	ctx := context.Background()
	store := &memStore{}
	f.login(t, store)
	store.expire()
	owner := f.client.Owner(store, fleetapi.RegionNA)

	diskFull := errors.New("disk full")
	store.setFail(diskFull)
	before := len(f.fake.Requests())
	if _, err := owner.Vehicles(ctx); !errors.Is(err, diskFull) {
		t.Fatalf("vehicles with failing store: %v", err)
	}
	for _, r := range f.fake.Requests()[before:] {
		if r.Region != "" {
			t.Fatalf("a Fleet API request went out although the token was not saved: %+v", r)
		}
	}
	// The rotated token stays in memory and is saved before the next use,
	// without refreshing again (the old refresh token is spent).
	store.setFail(nil)
	if _, err := owner.Vehicles(ctx); err != nil {
		t.Fatal(err)
	}
	refreshes := 0
	for _, r := range f.fake.Requests()[before:] {
		if r.Path == "/oauth2/v3/token" {
			refreshes++
		}
	}
	if refreshes != 1 {
		t.Fatalf("%d refreshes, want 1", refreshes)
	}
	if n := len(store.saved()); n != 2 {
		t.Fatalf("%d saves, want 2", n)
	}
}

func TestTokenRefreshConcurrent(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	f.register(t)
	store := &memStore{}
	f.login(t, store)
	store.expire()
	owner := f.client.Owner(store, fleetapi.RegionNA)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := owner.Vehicles(context.Background())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err) // a second refresh with the spent token would fail
		}
	}
	if n := len(store.saved()); n != 2 {
		t.Fatalf("%d saves, want 2 (login and one refresh)", n)
	}

	// Tesla refuses the access token under everyone's feet: one refresh
	// serves all the callers that saw the 401.
	f.fake.ExpireAccessTokens()
	var wg2 sync.WaitGroup
	for range 8 {
		wg2.Go(func() {
			if _, err := owner.Vehicles(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg2.Wait()
	if n := len(store.saved()); n != 3 {
		t.Fatalf("%d saves, want 3 (one more refresh)", n)
	}
}

func TestTokenRevokedAndExpired(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	f.register(t)
	ctx := context.Background()
	store := &memStore{}
	owner := f.login(t, store)

	// Tesla refuses an access token the client still thinks valid: the
	// client refreshes once and goes on.
	f.fake.ExpireAccessTokens()
	if _, err := owner.Vehicles(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(store.saved()); n != 2 {
		t.Fatalf("%d saves, want 2", n)
	}

	// The grant is revoked: the next refresh says login_required.
	f.fake.RevokeGrant()
	f.fake.ExpireAccessTokens()
	_, err := owner.Vehicles(ctx)
	if !errors.Is(err, fleetapi.ErrLoginRequired) {
		t.Fatalf("revoked grant: %v", err)
	}

	// Nothing stored: login required, without asking Tesla.
	if _, err := f.client.Owner(&memStore{}, "").Vehicles(ctx); !errors.Is(err, fleetapi.ErrLoginRequired) {
		t.Fatalf("empty store: %v", err)
	}
	// No refresh token (offline_access not granted) and expired.
	noRefresh := &memStore{tok: &oauth2.Token{AccessToken: "x", Expiry: time.Now().Add(-time.Hour)}}
	o := f.client.Owner(noRefresh, "")
	if o.Refreshable() {
		t.Error("token without refresh token is refreshable")
	}
	if _, err := o.Vehicles(ctx); !errors.Is(err, fleetapi.ErrLoginRequired) {
		t.Fatalf("no refresh token: %v", err)
	}
}

func TestRegionFollowing(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{OwnerRegion: fleetapi.RegionEU, Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	f.register(t)
	ctx := context.Background()
	owner := f.login(t, &memStore{})

	// The first call goes to na, answers 421 naming eu, and is followed.
	vs, err := owner.Vehicles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || owner.Region() != fleetapi.RegionEU {
		t.Fatalf("vehicles %d, region %s", len(vs), owner.Region())
	}
	var saw421 bool
	for _, r := range f.fake.Requests() {
		saw421 = saw421 || (r.Status == http.StatusMisdirectedRequest && r.Region == fleetapi.RegionNA)
	}
	if !saw421 {
		t.Fatal("no 421 from na: the test did not test following")
	}

	// DiscoverRegion asks users/region.
	f.fake.SetOwnerRegion(fleetapi.RegionNA)
	r, err := owner.DiscoverRegion(ctx)
	if err != nil || r != fleetapi.RegionNA || owner.Region() != fleetapi.RegionNA {
		t.Fatalf("discover: %s %v", r, err)
	}

	// A 421 naming a region we do not know is returned, not followed.
	f.fake.Fail(fleetapitest.Failure{Path: "/api/1/vehicles", Status: http.StatusMisdirectedRequest, Error: "user out of region, use base URL: https://fleet-api.prd.xx.example.com"})
	_, err = owner.Vehicles(ctx)
	e := apiError(t, err)
	if !errors.Is(err, fleetapi.ErrWrongRegion) || e.RegionURL != "https://fleet-api.prd.xx.example.com" {
		t.Fatalf("unknown region: %v (region url %q)", err, e.RegionURL)
	}
	if !strings.Contains(e.Explain(), "another region") {
		t.Errorf("explain: %s", e.Explain())
	}
}

func TestNotRegistered(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1}}})
	owner := f.login(t, &memStore{})
	_, err := owner.Vehicles(context.Background())
	if !errors.Is(err, fleetapi.ErrNotRegistered) {
		t.Fatalf("vehicles before registration: %v", err)
	}
	if !strings.Contains(fleetapi.Explain(err), "not registered") {
		t.Errorf("explain: %s", fleetapi.Explain(err))
	}
}

func TestPartner(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{AllowedOrigins: []string{"https://" + testDomain}})
	ctx := context.Background()

	acct, err := f.client.RegisterPartner(ctx, fleetapi.RegionEU, testDomain)
	if err != nil {
		t.Fatal(err)
	}
	wantHex, _ := fleetapi.PublicKeyHex(&f.key.PublicKey)
	if acct.Domain != testDomain || acct.PublicKey != wantHex {
		t.Errorf("account %+v", acct)
	}
	if got := f.fake.Registered(fleetapi.RegionEU); got != testDomain {
		t.Fatalf("fake registered %q", got)
	}
	got, err := f.client.PartnerPublicKey(ctx, fleetapi.RegionEU, testDomain)
	if err != nil || got != wantHex {
		t.Fatalf("public key %q, %v", got, err)
	}
	if err := f.client.CheckPartnerKey(ctx, fleetapi.RegionEU, testDomain, &f.key.PublicKey); err != nil {
		t.Fatal(err)
	}
	other, _ := fleetapi.GenerateKey()
	if err := f.client.CheckPartnerKey(ctx, fleetapi.RegionEU, testDomain, &other.PublicKey); !errors.Is(err, fleetapi.ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	// Not registered in na.
	if _, err := f.client.PartnerPublicKey(ctx, fleetapi.RegionNA, testDomain); !errors.Is(err, fleetapi.ErrNotFound) {
		t.Fatalf("na public key: %v", err)
	}
	// One partner token per region, reused.
	tokenRequests := 0
	for _, r := range f.fake.Requests() {
		if r.Path == "/oauth2/v3/token" {
			tokenRequests++
		}
	}
	if tokenRequests != 2 {
		t.Errorf("%d token requests for eu and na, want 2", tokenRequests)
	}

	// Tesla refuses the cached partner token: the client fetches a fresh
	// one and tries once more.
	f.fake.ExpireAccessTokens()
	if _, err := f.client.PartnerPublicKey(ctx, fleetapi.RegionEU, testDomain); err != nil {
		t.Fatalf("after partner token expiry: %v", err)
	}

	// A domain other than the allowed origin: 412.
	_, err = f.client.RegisterPartner(ctx, fleetapi.RegionNA, "other.example.com")
	if !errors.Is(err, fleetapi.ErrNotRegistered) || !strings.Contains(fleetapi.Explain(err), "Allowed Origin") {
		t.Fatalf("origin mismatch: %v / %s", err, fleetapi.Explain(err))
	}
	// Not a bare domain: refused before asking Tesla.
	for _, d := range []string{"https://" + testDomain, testDomain + ":443", testDomain + "/x", "", "localhost"} {
		if _, err := f.client.RegisterPartner(ctx, fleetapi.RegionNA, d); err == nil || errors.As(err, new(*fleetapi.APIError)) {
			t.Errorf("domain %q: %v", d, err)
		}
	}
}

func TestPartnerKeyDownloadFails(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{PublicKeyURL: func(string) string { return "http://127.0.0.1:1/missing.pem" }})
	_, err := f.client.RegisterPartner(context.Background(), fleetapi.RegionNA, testDomain)
	if !errors.Is(err, fleetapi.ErrKeyDownload) {
		t.Fatalf("register: %v", err)
	}
	if !strings.Contains(fleetapi.Explain(err), fleetapi.PublicKeyPath) {
		t.Errorf("explain: %s", fleetapi.Explain(err))
	}
}

func TestPartnerTelemetryErrors(t *testing.T) {
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{{VIN: vin1, Errors: []fleetapitest.StreamError{
		{Name: "tls", Error: "certificate relies on legacy Common Name field, use SANs instead", VIN: vin1, Hostname: "t.example.com", Port: 443},
	}}}})
	f.fake.SetPartnerErrors(fleetapitest.StreamError{Name: "other", Error: "x509: certificate signed by unknown authority", VIN: "X"})
	errs, err := f.client.PartnerTelemetryErrors(context.Background(), fleetapi.RegionNA)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 2 || errs[0].Port != "443" || errs[0].VIN != vin1 {
		t.Fatalf("errors %+v", errs)
	}
	if !strings.Contains(errs[0].Explain(), "Subject Alternative Names") || !strings.Contains(errs[1].Explain(), "\"ca\"") {
		t.Errorf("explain: %q / %q", errs[0].Explain(), errs[1].Explain())
	}
}

func TestVehiclesPagination(t *testing.T) {
	var cars []fleetapitest.Vehicle
	for i := range 205 {
		cars = append(cars, fleetapitest.Vehicle{VIN: fmt.Sprintf("5YJ3E1EA7KF%06d", i)})
	}
	f := newFixture(t, fleetapitest.Options{Vehicles: cars})
	f.register(t)
	vs, err := f.login(t, &memStore{}).Vehicles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(cars) {
		t.Fatalf("%d vehicles, want %d", len(vs), len(cars))
	}
	for i, v := range vs {
		if v.VIN != cars[i].VIN || v.State != "online" || v.AccessType != "OWNER" || v.ID == 0 || v.IDS == "" || v.DisplayName == "" {
			t.Fatalf("vehicle %d: %+v", i, v)
		}
	}
	pages := 0
	for _, r := range f.fake.Requests() {
		if r.Path == "/api/1/vehicles" {
			pages++
		}
	}
	if pages != 3 {
		t.Errorf("%d page requests, want 3", pages)
	}
}

func TestPairing(t *testing.T) {
	toggle := true
	f := newFixture(t, fleetapitest.Options{Vehicles: []fleetapitest.Vehicle{
		{VIN: vin1, PairAfterPolls: 2, FirmwareVersion: "2024.44.32.1", TotalKeys: 3, SafetyScreenStreamingToggle: &toggle},
	}})
	f.register(t)
	ctx := context.Background()
	owner := f.login(t, &memStore{})
	var paired []bool
	for range 4 {
		st, err := owner.FleetStatus(ctx, vin1)
		if err != nil {
			t.Fatal(err)
		}
		paired = append(paired, st.Paired(vin1))
		info := st.VehicleInfo[vin1]
		if info.FirmwareVersion != "2024.44.32.1" || info.TotalNumberOfKeys != 3 || !info.SupportsMinimumDelta() ||
			info.SafetyScreenStreamingToggleEnabled == nil || !*info.SafetyScreenStreamingToggleEnabled || !info.VehicleCommandProtocolRequired {
			t.Fatalf("vehicle info %+v", info)
		}
	}
	if want := []bool{false, false, true, true}; !slices.Equal(paired, want) {
		t.Fatalf("paired over polls %v, want %v", paired, want)
	}
	if _, err := owner.FleetStatus(ctx); err == nil {
		t.Error("fleet status without VINs accepted")
	}
}
