package fleetapi_test

import (
	"encoding/base64"
	"slices"
	"testing"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

func jwtWith(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestGrantedScopes(t *testing.T) {
	old := &oauth2.Token{AccessToken: jwtWith(`{"scp":["openid","offline_access","vehicle_device_data"]}`)}
	full := &oauth2.Token{AccessToken: jwtWith(`{"scp":["openid","vehicle_cmds","vehicle_charging_cmds"]}`)}
	spaced := &oauth2.Token{AccessToken: jwtWith(`{"scp":"openid vehicle_cmds"}`)}
	opaque := &oauth2.Token{AccessToken: "opaque"}
	answer := (&oauth2.Token{AccessToken: "opaque"}).WithExtra(map[string]any{"scope": "openid vehicle_charging_cmds"})

	if got, ok := fleetapi.GrantedScopes(old); !ok || !slices.Equal(got, []string{"openid", "offline_access", "vehicle_device_data"}) {
		t.Errorf("old token: %v %v", got, ok)
	}
	if got := fleetapi.MissingScopes(old, fleetapi.CommandScopes); !slices.Equal(got, []string{"vehicle_cmds", "vehicle_charging_cmds"}) {
		t.Errorf("old token misses %v", got)
	}
	if got := fleetapi.MissingScopes(full, fleetapi.CommandScopes); got != nil {
		t.Errorf("full token misses %v", got)
	}
	if got := fleetapi.MissingScopes(spaced, fleetapi.CommandScopes); !slices.Equal(got, []string{"vehicle_charging_cmds"}) {
		t.Errorf("space-separated scp: misses %v", got)
	}
	if got := fleetapi.MissingScopes(answer, fleetapi.CommandScopes); !slices.Equal(got, []string{"vehicle_cmds"}) {
		t.Errorf("scope of the token answer: misses %v", got)
	}
	if got, ok := fleetapi.GrantedScopes(opaque); ok || fleetapi.MissingScopes(opaque, fleetapi.CommandScopes) != nil {
		t.Errorf("an opaque token says nothing, got %v", got)
	}
	if _, ok := fleetapi.GrantedScopes(nil); ok {
		t.Error("nil token")
	}
	for _, s := range fleetapi.CommandScopes {
		if !slices.Contains(fleetapi.DefaultScopes, s) {
			t.Errorf("owners are not asked for %s", s)
		}
	}
}
