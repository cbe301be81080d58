package fleetapi

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Owner is an owner's authorized session: the calls made on their behalf
// with their (third-party) token. It follows the owner to their region when
// Tesla answers 421, and refreshes the token as needed, saving every new
// one in its TokenStore first. It is safe for concurrent use.
type Owner struct {
	c      *Client
	tokens *ownerTokens

	mu     sync.Mutex
	region Region
}

// Owner returns the session of the owner whose token is in store, talking to
// region first (the client's AuthRegion when empty). The token is loaded on
// the first call; with none stored, calls fail with ErrLoginRequired.
func (c *Client) Owner(store TokenStore, region Region) *Owner {
	if region == "" {
		region = c.cfg.AuthRegion
	}
	return &Owner{c: c, tokens: &ownerTokens{c: c, store: store}, region: region}
}

// Region is the region the session talks to. Keep it (with the token) to
// start the next session there.
func (o *Owner) Region() Region {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.region
}

func (o *Owner) setRegion(r Region) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.region = r
}

// Refreshable reports whether the session holds a refresh token, that is
// whether it outlives its access token (about eight hours). Without one the
// owner did not grant offline access and must log in again later.
func (o *Owner) Refreshable() bool {
	tok := o.tokens.current()
	if tok == nil {
		if stored, err := o.tokens.store.LoadToken(); err == nil && stored != nil {
			tok = stored
		}
	}
	return tok != nil && tok.RefreshToken != ""
}

// call sends cl with the owner's token. It follows a 421 to the region
// Tesla names (if it is one of ours) and, when Tesla refuses a token that
// looked valid, refreshes it once and tries again.
func (o *Owner) call(ctx context.Context, cl call) error {
	refreshed := false
	moved := 0
	for {
		tok, err := o.tokens.token(ctx, "")
		if err != nil {
			return err
		}
		region := o.Region()
		err = o.c.roundTrip(ctx, region, tok.AccessToken, cl)
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			return err
		}
		switch {
		case apiErr.Status == http.StatusMisdirectedRequest && moved < 2:
			next, ok := o.c.ep.RegionOf(apiErr.RegionURL)
			if !ok || next == region {
				return err
			}
			o.c.log.Info("tesla account lives in another region", "from", region, "to", next)
			o.setRegion(next)
			moved++
		case apiErr.Status == http.StatusUnauthorized && !refreshed && !apiErr.loginRequired():
			if _, err := o.tokens.token(ctx, tok.AccessToken); err != nil {
				return err
			}
			refreshed = true
		default:
			return err
		}
	}
}

// DiscoverRegion asks Tesla where the owner's account lives
// (GET /api/1/users/region) and moves the session there.
func (o *Owner) DiscoverRegion(ctx context.Context) (Region, error) {
	var out struct {
		Region          string `json:"region"`
		FleetAPIBaseURL string `json:"fleet_api_base_url"`
	}
	if err := o.call(ctx, call{method: http.MethodGet, path: "/api/1/users/region", out: &out}); err != nil {
		return "", err
	}
	r, ok := o.c.ep.RegionOf(out.FleetAPIBaseURL)
	if !ok {
		parsed, err := ParseRegion(out.Region)
		if err != nil {
			return "", fmt.Errorf("%w: users/region: unknown region %q at %q", ErrMalformedResponse, out.Region, out.FleetAPIBaseURL)
		}
		r = parsed
	}
	o.setRegion(r)
	return r, nil
}

// Profile is who the owner is, as Tesla's account summary says.
type Profile struct {
	Email    string `json:"email"`
	FullName string `json:"full_name"`
}

// Me asks Tesla for a summary of the owner's account (GET /api/1/users/me,
// scope user_data): their email and name.
func (o *Owner) Me(ctx context.Context) (Profile, error) {
	var p Profile
	err := o.call(ctx, call{method: http.MethodGet, path: "/api/1/users/me", out: &p})
	return p, err
}

// vehiclesPerPage is the page size asked of GET /api/1/vehicles (Tesla's
// default and maximum).
const vehiclesPerPage = 100

// Vehicles lists every car of the account, following the pagination.
func (o *Owner) Vehicles(ctx context.Context) ([]Vehicle, error) {
	var all []Vehicle
	for page := 1; page <= 1000; page++ {
		var batch []Vehicle
		q := url.Values{"page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(vehiclesPerPage)}}
		if err := o.call(ctx, call{method: http.MethodGet, path: "/api/1/vehicles", query: q, out: &batch}); err != nil {
			return nil, err
		}
		all = append(all, batch...)
		if len(batch) < vehiclesPerPage {
			return all, nil
		}
	}
	return nil, fmt.Errorf("%w: GET /api/1/vehicles: more than 1000 pages", ErrMalformedResponse)
}

// FleetStatus asks which of the cars hold the application's virtual key
// (POST /api/1/vehicles/fleet_status). Poll it while the owner pairs.
func (o *Owner) FleetStatus(ctx context.Context, vins ...string) (*FleetStatus, error) {
	if err := checkVINs(vins); err != nil {
		return nil, err
	}
	var out FleetStatus
	body := map[string][]string{"vins": vins}
	if err := o.call(ctx, call{method: http.MethodPost, path: "/api/1/vehicles/fleet_status", body: body, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// PushTelemetryConfig sends a signed config token (SignTelemetryConfig) to
// the cars (POST /api/1/vehicles/fleet_telemetry_config_jws). Success means
// Tesla accepted it, not that the cars did: check Skipped, then poll
// TelemetryConfig until the state is no longer pending.
func (o *Owner) PushTelemetryConfig(ctx context.Context, token string, vins ...string) (*PushResult, error) {
	if err := checkVINs(vins); err != nil {
		return nil, err
	}
	var out PushResult
	body := struct {
		VINs  []string `json:"vins"`
		Token string   `json:"token"`
	}{vins, token}
	if err := o.call(ctx, call{method: http.MethodPost, path: "/api/1/vehicles/fleet_telemetry_config_jws", body: body, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ConfigureTelemetry validates cfg, signs it with key and pushes it to the
// cars.
func (o *Owner) ConfigureTelemetry(ctx context.Context, key *ecdsa.PrivateKey, cfg TelemetryConfig, vins ...string) (*PushResult, error) {
	if err := cfg.Validate(time.Now()); err != nil {
		return nil, err
	}
	token, err := SignTelemetryConfig(key, cfg)
	if err != nil {
		return nil, fmt.Errorf("sign config: %w", err)
	}
	return o.PushTelemetryConfig(ctx, token, vins...)
}

// TelemetryConfig returns the car's streaming config state
// (GET /api/1/vehicles/{vin}/fleet_telemetry_config).
func (o *Owner) TelemetryConfig(ctx context.Context, vin string) (*VehicleConfig, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	var out VehicleConfig
	if err := o.call(ctx, call{method: http.MethodGet, path: vinPath(vin, "fleet_telemetry_config"), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTelemetryConfig stops the car streaming to us
// (DELETE /api/1/vehicles/{vin}/fleet_telemetry_config).
func (o *Owner) DeleteTelemetryConfig(ctx context.Context, vin string) error {
	if err := checkVINs([]string{vin}); err != nil {
		return err
	}
	return o.call(ctx, call{method: http.MethodDelete, path: vinPath(vin, "fleet_telemetry_config")})
}

// TelemetryErrors returns the errors the car met while streaming to our
// server (GET /api/1/vehicles/{vin}/fleet_telemetry_errors).
func (o *Owner) TelemetryErrors(ctx context.Context, vin string) ([]StreamError, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	var out struct {
		Errors []StreamError `json:"fleet_telemetry_errors"`
	}
	if err := o.call(ctx, call{method: http.MethodGet, path: vinPath(vin, "fleet_telemetry_errors"), out: &out}); err != nil {
		return nil, err
	}
	return out.Errors, nil
}

func vinPath(vin, what string) string {
	return "/api/1/vehicles/" + url.PathEscape(vin) + "/" + what
}

func checkVINs(vins []string) error {
	if len(vins) == 0 {
		return errors.New("no vehicle given")
	}
	for _, v := range vins {
		if v == "" {
			return errors.New("empty VIN")
		}
	}
	return nil
}
