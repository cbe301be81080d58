package setup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Files of the setup page in its directory (data_dir/setup, mode 0700).
// Every file is written atomically with mode 0600: they hold the client
// secret, the owner's tokens, the private key and the cars of the account.
const (
	stateFile    = "state.json"
	tokenFile    = "owner-token.json"
	keyFile      = "private-key.pem"
	passwordFile = "password.json"
)

// state is what the wizard remembers between runs: the answers and the
// results of every step's check.
type state struct {
	// PublicHostname, ClientID and ClientSecret as entered on the page;
	// the configuration file's values take precedence.
	PublicHostname string `json:"public_hostname,omitempty"`
	ClientID       string `json:"client_id,omitempty"`
	ClientSecret   string `json:"client_secret,omitempty"`
	// RedirectURL is the redirect URI earlier versions saved: the setup
	// page's own …/callback. It is no longer used; it is kept until a
	// login comes back through the current one, so that the page can say
	// what to change at Tesla.
	RedirectURL string `json:"redirect_url,omitempty"`
	// CredentialsChecked is the client id whose credentials Tesla
	// accepted (a partner token was issued).
	CredentialsChecked string `json:"credentials_checked,omitempty"`
	// KeyCheck is the last successful reachability check of the key.
	KeyCheck *keyCheck `json:"key_check,omitempty"`
	// Regions chosen for partner registration, and the registrations
	// verified in each.
	Regions    []fleetapi.Region                 `json:"regions,omitempty"`
	Registered map[fleetapi.Region]*registration `json:"registered,omitempty"`
	// Owner is the owner's login (the token itself is in tokenFile).
	Owner *ownerLogin `json:"owner,omitempty"`
	// Vehicles are the account's cars as last listed.
	Vehicles []*vehicle `json:"vehicles,omitempty"`
	// IntervalSeconds and Fields are the signal selection.
	IntervalSeconds int                             `json:"interval_seconds,omitempty"`
	Fields          map[string]fleetapi.FieldConfig `json:"fields,omitempty"`
	// Cars holds, per VIN, what was pushed and how the car took it.
	Cars map[string]*car `json:"cars,omitempty"`
}

// keyCheck records that the public key was fetched from the public URL.
type keyCheck struct {
	Host      string    `json:"host"`
	PublicKey string    `json:"public_key"` // hex of the uncompressed point
	At        time.Time `json:"at"`
}

// registration records a verified partner registration in one region.
type registration struct {
	Domain    string    `json:"domain"`
	ClientID  string    `json:"client_id"`
	PublicKey string    `json:"public_key"`
	At        time.Time `json:"at"`
}

// ownerLogin records a successful owner login.
type ownerLogin struct {
	ClientID    string          `json:"client_id"`
	Region      fleetapi.Region `json:"region"`
	At          time.Time       `json:"at"`
	Refreshable bool            `json:"refreshable"`
	// GrantGone is set when Tesla answered that the login is no longer
	// valid; the owner must log in again.
	GrantGone bool `json:"grant_gone,omitempty"`
}

// vehicle is one car of the account.
type vehicle struct {
	VIN         string `json:"vin"`
	DisplayName string `json:"display_name,omitempty"`
	State       string `json:"state,omitempty"`
	AccessType  string `json:"access_type,omitempty"`
	Selected    bool   `json:"selected,omitempty"`
	// Paired and the rest come from fleet_status.
	Paired       bool   `json:"paired,omitempty"`
	Firmware     string `json:"firmware,omitempty"`
	SafetyToggle *bool  `json:"safety_toggle,omitempty"`
	// ProtocolRequired is vehicle_command_protocol_required: false for a
	// car that predates the Vehicle Command Protocol (REST commands).
	ProtocolRequired *bool `json:"protocol_required,omitempty"`
}

// streams reports whether the car can stream to the application: it holds
// the virtual key, or it is an older Model S/X whose owner allowed
// third-party streaming on the safety screen.
func (v *vehicle) streams() bool {
	return v.Paired || (v.SafetyToggle != nil && *v.SafetyToggle)
}

// name is how the page calls the car.
func (v *vehicle) name() string {
	if v.DisplayName != "" {
		return v.DisplayName
	}
	return v.VIN
}

// Car states on the verification step.
const (
	carPending  = "pending"  // pushed, the car has not picked it up yet
	carActive   = "active"   // the car holds the config
	carRejected = "rejected" // synced:true, config:null after a push
	carSkipped  = "skipped"  // Tesla skipped the car at the push
	carRemoved  = "removed"  // the owner removed the config
)

// car is what was pushed to one car and how it took it.
type car struct {
	// Config is the config last pushed (nil when skipped or removed);
	// Run pushes it again, with a new exp, before it expires.
	Config   *fleetapi.TelemetryConfig `json:"config,omitempty"`
	PushedAt time.Time                 `json:"pushed_at,omitzero"`
	Status   string                    `json:"status"`
	Skipped  fleetapi.SkipReason       `json:"skipped,omitempty"`
	// Explain is the plain-words reading of the last config check.
	Explain   string                 `json:"explain,omitempty"`
	CheckedAt time.Time              `json:"checked_at,omitzero"`
	Errors    []fleetapi.StreamError `json:"errors,omitempty"`
	// Problem explains the last failed check or automatic push.
	Problem string `json:"problem,omitempty"`
}

// loadState reads the state file; a missing file is a fresh start.
func loadState(path string) (*state, error) {
	st := &state{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read setup state: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("setup state %s: %w (move the file away to start the setup again)", path, err)
	}
	return st, nil
}

// save writes the state atomically with mode 0600.
func (st *state) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save setup state: %w", err)
	}
	if err := fleetapi.WriteFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save setup state: %w", err)
	}
	return nil
}

// selected returns the cars chosen for streaming.
func (st *state) selected() []*vehicle {
	var out []*vehicle
	for _, v := range st.Vehicles {
		if v.Selected {
			out = append(out, v)
		}
	}
	return out
}

// vehicle returns the car vin of the account, or nil.
func (st *state) vehicle(vin string) *vehicle {
	for _, v := range st.Vehicles {
		if v.VIN == vin {
			return v
		}
	}
	return nil
}

// oldFirmware names a selected car whose software does not honour
// minimum_delta ("" when none is known to be too old).
func (st *state) oldFirmware() string {
	for _, v := range st.selected() {
		if v.Firmware != "" && !fleetapi.FirmwareAtLeast(v.Firmware, fleetapi.MinimumDeltaFirmware) {
			return v.name()
		}
	}
	return ""
}

// noteOwnerRegion keeps the region the owner's session moved to.
func (st *state) noteOwnerRegion(o *fleetapi.Owner) {
	if st.Owner != nil && o != nil && st.Owner.Region != o.Region() {
		st.Owner.Region = o.Region()
	}
}

// recordPush notes the outcome of a push of cfg to vins at now for each
// car.
func (st *state) recordPush(cfg *fleetapi.TelemetryConfig, res *fleetapi.PushResult, vins []string, now time.Time) {
	if st.Cars == nil {
		st.Cars = make(map[string]*car)
	}
	for _, vin := range vins {
		if reason, skipped := res.Skipped[vin]; skipped {
			prev := st.Cars[vin]
			c := &car{Status: carSkipped, Skipped: reason, Explain: reason.Explain()}
			if prev != nil && prev.Status == carActive {
				// The car keeps the config it had; say so and keep it.
				c.Config, c.PushedAt, c.Status = prev.Config, prev.PushedAt, carActive
				c.Problem = "The new config was not sent: " + reason.Explain()
			}
			st.Cars[vin] = c
			continue
		}
		st.Cars[vin] = &car{Config: cfg, PushedAt: now, Status: carPending}
	}
}

// ensureDir creates the setup directory with mode 0700, and tightens an
// existing one to it.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("setup directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("setup directory: %w", err)
	}
	return nil
}

func join(dir, name string) string { return filepath.Join(dir, name) }
