package service

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Credentials find what commands need in the setup page's data: the
// application key, the owner's stored token, the client id, the owner's
// region and the application's domain. KeyFile, TokenFile and API
// override them (the flags of `fleet2mqtt command`).
type Credentials struct {
	// Setup and DataDir are where the setup page keeps its data.
	Setup   setup.Config
	DataDir string
	// Settings is the commands section (its Fleet API URL, rate limit,
	// wake timeout).
	Settings command.Settings
	// KeyFile, TokenFile and API replace the setup page's key, token
	// and the Fleet API URL when set.
	KeyFile, TokenFile, API string
	// Endpoints are Tesla's unless set (tests).
	Endpoints *fleetapi.Endpoints
}

// api is the Fleet API URL to use instead of the region's; "" for the
// region's.
func (c Credentials) api() string {
	if c.API != "" {
		return c.API
	}
	return c.Settings.FleetAPIURL
}

func (c Credentials) endpoints() fleetapi.Endpoints {
	if c.Endpoints != nil {
		return *c.Endpoints
	}
	return fleetapi.DefaultEndpoints()
}

// client returns the client and region to call the Fleet API with,
// and the application's domain, from the setup page's data
// (setup.LoadCredentials).
func (c Credentials) client() (*fleetapi.Client, fleetapi.Region, string, error) {
	creds, err := setup.LoadCredentials(c.Setup, c.DataDir)
	if err != nil {
		return nil, "", "", err
	}
	if creds.ClientID == "" {
		return nil, "", "", errors.New("no Tesla application client id: set setup.client_id, or complete the setup page's steps")
	}
	ep := c.endpoints()
	if api := c.api(); api != "" {
		ep = command.WithAPI(ep, api)
	}
	client, err := fleetapi.New(fleetapi.Config{ClientID: creds.ClientID, Endpoints: ep, AuthRegion: creds.Region}, nil)
	if err != nil {
		return nil, "", "", err
	}
	return client, creds.Region, creds.Domain, nil
}

// fleetAPIBase is the Fleet API base URL the proxy API forwards
// requests to.
func (c Credentials) fleetAPIBase() (*url.URL, error) {
	api := c.api()
	if api == "" {
		_, region, _, err := c.client()
		if err != nil {
			return nil, err
		}
		if api, err = c.endpoints().BaseURL(region); err != nil {
			return nil, err
		}
	}
	return url.Parse(api)
}

func (c Credentials) key() (*ecdsa.PrivateKey, error) {
	path := c.KeyFile
	if path == "" {
		path = setup.KeyPath(c.DataDir)
	}
	key, err := fleetapi.LoadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("the application key (%s): %w; the setup page creates it, or pass --key", path, err)
	}
	return key, nil
}

// EngineConfig is the engine's configuration from the setup page's
// data; the error says which step of the page is missing.
func (c Credentials) EngineConfig() (command.Config, error) {
	key, err := c.key()
	if err != nil {
		return command.Config{}, err
	}
	client, region, domain, err := c.client()
	if err != nil {
		return command.Config{}, err
	}
	tokenFile := c.TokenFile
	if tokenFile == "" {
		tokenFile = setup.TokenPath(c.DataDir)
	}
	if _, err := os.Stat(tokenFile); err != nil {
		return command.Config{}, fmt.Errorf("no owner token (%s): log in to Tesla on the setup page, or pass --token-file", tokenFile)
	}
	limit := c.Settings.RateLimit
	return command.Config{
		Key:           key,
		Transport:     client.Owner(fleetapi.FileTokenStore{Path: tokenFile}, region),
		SessionDir:    SessionDir(c.DataDir),
		PairingDomain: domain,
		RateLimit:     &limit,
		WakeTimeout:   c.Settings.WakeTimeout,
	}, nil
}

// SessionDir is where the engine caches the cars' sessions in the data
// directory.
func SessionDir(dataDir string) string { return filepath.Join(dataDir, "commands") }
