package setup

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Credentials are what other parts of fleet2mqtt (vehicle commands, the
// command line) need of the setup page's data to call Tesla as the owner
// and sign as the application. The setup page owns the files; this is the
// one place that reads them for others.
type Credentials struct {
	// ClientID is the Tesla application's client id: setup.client_id,
	// else that of the owner's login, else the one entered on the page;
	// "" when none is known.
	ClientID string
	// Region is the owner's account region; fleetapi.RegionNA until the
	// owner logged in.
	Region fleetapi.Region
	// LoggedIn: the owner has logged in (the token may still have expired
	// or been revoked since).
	LoggedIn bool
	// Domain is the public hostname: setup.public_hostname, else the one
	// entered on the page.
	Domain string
	// KeyPath is the application's private key (KeyPath), TokenPath the
	// owner's OAuth tokens (TokenPath). Either may not exist yet.
	KeyPath, TokenPath string
}

// KeyPath is where the setup page keeps the application's private key
// (PEM, mode 0600) under the data directory.
func KeyPath(dataDir string) string { return filepath.Join(dataDir, "setup", keyFile) }

// TokenPath is where the setup page keeps the owner's OAuth tokens
// (fleetapi.FileTokenStore) under the data directory.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, "setup", tokenFile) }

// LoadCredentials reads the setup page's data under dataDir, the values of
// cfg (the configuration's setup section) taking precedence as they do on
// the page. A data directory the setup page never wrote to gives empty
// credentials, not an error; an unreadable state file is one.
func LoadCredentials(cfg Config, dataDir string) (Credentials, error) {
	st, err := loadState(join(filepath.Join(dataDir, "setup"), stateFile))
	if err != nil {
		return Credentials{}, err
	}
	c := Credentials{ClientID: cfg.ClientID, Region: fleetapi.RegionNA, Domain: cfg.PublicHostname,
		KeyPath: KeyPath(dataDir), TokenPath: TokenPath(dataDir)}
	if o := st.Owner; o != nil {
		c.LoggedIn = true
		if c.ClientID == "" {
			c.ClientID = o.ClientID
		}
		if o.Region != "" {
			c.Region = o.Region
		}
	}
	if c.ClientID == "" {
		c.ClientID = st.ClientID
	}
	if c.Domain == "" {
		c.Domain = st.PublicHostname
	}
	return c, nil
}

// CommandTransport is the owner's session of the setup page as the
// vehicle command engine's Transport: every call goes through the session
// the page holds (its token, refreshed and saved by one holder: Tesla's
// refresh tokens are single use), and a new login on the page, such as
// one that grants the command scopes, takes effect at the next command.
// While the page has no client secret (setup.client_id configured
// without setup.client_secret, the secret never entered), calls go
// through fallback.
func (w *Wizard) CommandTransport(fallback command.Transport) command.Transport {
	return ownerTransport{w.flow, fallback}
}

// ownerTransport resolves the owner's current session for each call.
type ownerTransport struct {
	f        *flow
	fallback command.Transport
}

// owner is the page's session, or nil with fallback to use instead.
func (t ownerTransport) owner() (*fleetapi.Owner, command.Transport, error) {
	o, err := t.f.owner()
	if errors.Is(err, errNoCredentials) && t.fallback != nil {
		return nil, t.fallback, nil
	}
	return o, nil, err
}

func (t ownerTransport) SignedCommand(ctx context.Context, vin string, message []byte) ([]byte, error) {
	o, via, err := t.owner()
	if err != nil {
		return nil, err
	}
	if via != nil {
		return via.SignedCommand(ctx, vin, message)
	}
	return o.SignedCommand(ctx, vin, message)
}

func (t ownerTransport) WakeUp(ctx context.Context, vin string) (*fleetapi.Vehicle, error) {
	o, via, err := t.owner()
	if err != nil {
		return nil, err
	}
	if via != nil {
		return via.WakeUp(ctx, vin)
	}
	return o.WakeUp(ctx, vin)
}

func (t ownerTransport) Vehicle(ctx context.Context, vin string) (*fleetapi.Vehicle, error) {
	o, via, err := t.owner()
	if err != nil {
		return nil, err
	}
	if via != nil {
		return via.Vehicle(ctx, vin)
	}
	return o.Vehicle(ctx, vin)
}

func (t ownerTransport) Command(ctx context.Context, vin, name string, args json.RawMessage) (*fleetapi.CommandResult, error) {
	o, via, err := t.owner()
	if err != nil {
		return nil, err
	}
	if via != nil {
		return via.Command(ctx, vin, name, args)
	}
	return o.Command(ctx, vin, name, args)
}
