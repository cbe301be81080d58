// Package fakefleet runs the project's fake Tesla (fleetapitest) on
// loopback with cars that hold the application's key and an owner logged
// in with the command scopes: vehicle commands without a car, for
// `fleet2mqtt demo` and for tests. The fake's cars verify every signed
// command as a car does and apply it to their state (OnCarChange).
package fakefleet

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// Domain is the application domain the fake registers the key under.
const Domain = "fleet2mqtt.invalid"

const callback = "https://" + Domain + "/callback"

// Fleet is a running fake Tesla with paired cars and a logged-in owner.
type Fleet struct {
	Server *fleetapitest.Server
	// Key is the application key the cars trust.
	Key *ecdsa.PrivateKey
	// Client and Owner talk to the fake; Owner uses the token in
	// TokenFile (refreshed there).
	Client    *fleetapi.Client
	Owner     *fleetapi.Owner
	TokenFile string
}

// Options configure Start.
type Options struct {
	// VINs are the owner's cars, all online and paired.
	VINs []string
	// Key is the application key; a new one when nil.
	Key *ecdsa.PrivateKey
	// Dir holds the owner's token file; it is made when missing.
	Dir string
	// Logf receives one line per request to the fake; nothing when nil.
	Logf func(format string, args ...any)
}

// Start runs the fake, pairs the key with every car and logs the owner in
// with the command scopes. Close stops it.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	key := o.Key
	if key == nil {
		var err error
		if key, err = fleetapi.GenerateKey(); err != nil {
			return nil, err
		}
	}
	vehicles := make([]fleetapitest.Vehicle, len(o.VINs))
	for i, vin := range o.VINs {
		vehicles[i] = fleetapitest.Vehicle{VIN: vin, Paired: true}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fake Fleet API: %w", err)
	}
	srv := fleetapitest.New(fleetapitest.Options{RedirectURIs: []string{callback}, Vehicles: vehicles, Logf: o.Logf})
	f := &Fleet{Server: srv, Key: key, TokenFile: filepath.Join(o.Dir, "owner-token.json")}
	if err := f.login(ctx); err != nil {
		srv.Close()
		return nil, fmt.Errorf("fake Fleet API: %w", err)
	}
	return f, nil
}

func (f *Fleet) login(ctx context.Context) error {
	f.Server.Register(fleetapi.RegionNA, Domain, &f.Key.PublicKey)
	client, err := fleetapi.New(fleetapi.Config{ClientID: f.Server.ClientID(), ClientSecret: f.Server.ClientSecret(),
		RedirectURL: callback, Endpoints: f.Server.Endpoints(),
		Scopes: append(slices.Clone(fleetapi.DefaultScopes), "vehicle_cmds", "vehicle_charging_cmds")}, nil)

	if err != nil {
		return err
	}
	cb, err := f.Server.Login(ctx, client.AuthCodeURL("state", "nonce", fleetapi.AuthURLOptions{}))
	if err != nil {
		return err
	}
	code, err := fleetapi.ParseCallback(cb.Query(), "state")
	if err != nil {
		return err
	}
	f.Client = client
	f.Owner, err = client.Exchange(ctx, code, "nonce", fleetapi.FileTokenStore{Path: f.TokenFile})
	return err
}

// AccessToken is the owner's current access token, as a tool on the
// proxy API would send it.
func (f *Fleet) AccessToken() (string, error) {
	tok, err := fleetapi.FileTokenStore{Path: f.TokenFile}.LoadToken()
	if err != nil || tok == nil {
		return "", fmt.Errorf("no owner token: %v", err)
	}
	return tok.AccessToken, nil
}

// Close stops the fake.
func (f *Fleet) Close() { f.Server.Close() }

// EngineConfig is the configuration of an engine that commands the
// fake's cars: sessions cached in sessionDir, limited by limit.
func (f *Fleet) EngineConfig(sessionDir string, limit command.RateLimit) command.Config {
	return command.Config{Key: f.Key, Transport: f.Owner, SessionDir: sessionDir,
		PairingDomain: Domain, RateLimit: &limit}
}

// AddCar adds a car to the owner's account, online and paired.
func (f *Fleet) AddCar(vin string) {
	f.Server.AddVehicle(fleetapitest.Vehicle{VIN: vin, Paired: true})
}
