package fleetapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// Vehicle is one car of the owner's account.
type Vehicle struct {
	ID          int64  `json:"id"`
	IDS         string `json:"id_s"`
	VIN         string `json:"vin"`
	DisplayName string `json:"display_name"`
	// State is "online", "asleep" or "offline".
	State string `json:"state"`
	// AccessType is "OWNER" or "DRIVER".
	AccessType string `json:"access_type"`
}

// FleetStatus tells which cars hold the application's virtual key. Tesla's
// answer may lag the pairing by a little.
type FleetStatus struct {
	KeyPairedVINs []string               `json:"key_paired_vins"`
	UnpairedVINs  []string               `json:"unpaired_vins"`
	VehicleInfo   map[string]VehicleInfo `json:"vehicle_info"`
}

// Paired reports whether the car holds the application's key.
func (s *FleetStatus) Paired(vin string) bool {
	return s != nil && slices.Contains(s.KeyPairedVINs, vin)
}

// VehicleInfo is what fleet_status tells about one car.
type VehicleInfo struct {
	FirmwareVersion                string `json:"firmware_version"`
	VehicleCommandProtocolRequired bool   `json:"vehicle_command_protocol_required"`
	FleetTelemetryVersion          string `json:"fleet_telemetry_version"`
	TotalNumberOfKeys              int    `json:"total_number_of_keys"`
	// SafetyScreenStreamingToggleEnabled is set on older Intel-Atom Model
	// S/X, which need "Allow Third-Party App Data Streaming" switched on on
	// the car's safety screen instead of a virtual key; nil when absent.
	SafetyScreenStreamingToggleEnabled *bool `json:"safety_screen_streaming_toggle_enabled"`
}

// UnmarshalJSON accepts versions sent as numbers as well as strings.
func (v *VehicleInfo) UnmarshalJSON(b []byte) error {
	type plain VehicleInfo
	var aux struct {
		plain
		FirmwareVersion       looseString `json:"firmware_version"`
		FleetTelemetryVersion looseString `json:"fleet_telemetry_version"`
		TotalNumberOfKeys     looseString `json:"total_number_of_keys"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*v = VehicleInfo(aux.plain)
	v.FirmwareVersion = string(aux.FirmwareVersion)
	v.FleetTelemetryVersion = string(aux.FleetTelemetryVersion)
	v.TotalNumberOfKeys, _ = strconv.Atoi(string(aux.TotalNumberOfKeys))
	return nil
}

// SupportsMinimumDelta reports whether the car's firmware honours
// minimum_delta.
func (v VehicleInfo) SupportsMinimumDelta() bool {
	return FirmwareAtLeast(v.FirmwareVersion, MinimumDeltaFirmware)
}

// SkipReason is why Tesla did not send a pushed config to a car.
type SkipReason string

// Skip reasons of a config push.
const (
	SkipMissingKey          SkipReason = "missing_key"
	SkipUnsupportedHardware SkipReason = "unsupported_hardware"
	SkipUnsupportedFirmware SkipReason = "unsupported_firmware"
	SkipMaxConfigs          SkipReason = "max_configs"
)

// Explain says in plain words why the car was skipped and what to do.
func (r SkipReason) Explain() string {
	switch r {
	case SkipMissingKey:
		return "The car does not hold this application's virtual key yet. Open the pairing link on the phone with the Tesla app, approve the key in the car, then push again."
	case SkipUnsupportedHardware:
		return "This car's hardware cannot stream telemetry to third-party servers (older Model S and X may need \"Allow Third-Party App Data Streaming\" on the safety screen, others cannot stream at all)."
	case SkipUnsupportedFirmware:
		return "The car's software is too old to stream. Install the latest software update in the car (a downloaded but not installed update does not count), then push again."
	case SkipMaxConfigs:
		return "The car already streams to as many applications as it allows. Remove another application's streaming (or its access in the Tesla app), then push again."
	}
	return "Tesla skipped the car (" + string(r) + ")."
}

// PushResult is Tesla's answer to a config push.
type PushResult struct {
	// UpdatedVehicles is how many cars will receive the config.
	UpdatedVehicles int
	// Skipped maps each skipped VIN to the reason.
	Skipped map[string]SkipReason
}

// UnmarshalJSON reads {"updated_vehicles":n,"skipped_vehicles":{reason:[vin…]}}.
func (p *PushResult) UnmarshalJSON(b []byte) error {
	var aux struct {
		UpdatedVehicles int                 `json:"updated_vehicles"`
		SkippedVehicles map[string][]string `json:"skipped_vehicles"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	p.UpdatedVehicles = aux.UpdatedVehicles
	p.Skipped = make(map[string]SkipReason)
	for reason, vins := range aux.SkippedVehicles {
		for _, vin := range vins {
			p.Skipped[vin] = SkipReason(reason)
		}
	}
	return nil
}

// ConfigState is what a car's config answer means.
type ConfigState int

// Config states, from the synced and config members of Tesla's answer.
const (
	// ConfigPending (synced:false): the car picks the config up at its
	// next connection to Tesla, minutes to hours away.
	ConfigPending ConfigState = iota + 1
	// ConfigActive (synced:true with a config): the car has it.
	ConfigActive
	// ConfigRejected (synced:true, config:null): the car holds no config.
	// After a push, whose answer was success, this is the only sign that
	// the car rejected it, because too many applications stream from it.
	// (It also reads like this after a config was deleted.)
	ConfigRejected
)

func (s ConfigState) String() string {
	switch s {
	case ConfigPending:
		return "pending"
	case ConfigActive:
		return "active"
	case ConfigRejected:
		return "rejected"
	}
	return "unknown"
}

// VehicleConfig is a car's streaming config as Tesla reports it.
type VehicleConfig struct {
	State ConfigState
	// Synced is Tesla's synced flag.
	Synced bool
	// Config is the config the car has (or will get); nil when none.
	Config *TelemetryConfig
	// LimitReached: the car streams to as many applications as it allows.
	LimitReached bool
	// KeyPaired: the car holds the application's virtual key.
	KeyPaired bool
}

// UnmarshalJSON reads {"synced":…,"config":…|null,"limit_reached":…,"key_paired":…}.
func (v *VehicleConfig) UnmarshalJSON(b []byte) error {
	var aux struct {
		Synced       bool             `json:"synced"`
		Config       *TelemetryConfig `json:"config"`
		LimitReached bool             `json:"limit_reached"`
		KeyPaired    bool             `json:"key_paired"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*v = VehicleConfig{Synced: aux.Synced, Config: aux.Config, LimitReached: aux.LimitReached, KeyPaired: aux.KeyPaired}
	switch {
	case !aux.Synced:
		v.State = ConfigPending
	case aux.Config == nil:
		v.State = ConfigRejected
	default:
		v.State = ConfigActive
	}
	return nil
}

// Explain says in plain words where the car stands.
func (v *VehicleConfig) Explain() string {
	var b strings.Builder
	switch v.State {
	case ConfigPending:
		b.WriteString("Tesla has the config; the car picks it up the next time it connects to Tesla, which can take minutes to hours. Waking the car (opening the Tesla app) speeds it up.")
	case ConfigActive:
		b.WriteString("The car has the config and streams to your server.")
	case ConfigRejected:
		b.WriteString("The car holds no config from this application: it rejected the one pushed, usually because too many applications already stream from it. Remove another application's streaming, then push again.")
	default:
		b.WriteString("Tesla's answer about the car's config could not be understood.")
	}
	if v.LimitReached && v.State != ConfigRejected {
		b.WriteString(" The car streams to as many applications as it allows.")
	}
	if !v.KeyPaired {
		b.WriteString(" The car does not hold this application's virtual key: pair it first.")
	}
	return b.String()
}

// StreamError is an error a car met while streaming to our server, as the
// fleet_telemetry_errors endpoints report it.
type StreamError struct {
	Name string `json:"name"`
	// Message is the error text, e.g. "certificate relies on legacy Common
	// Name field, use SANs instead".
	Message   string `json:"error"`
	VIN       string `json:"vin"`
	CreatedAt string `json:"created_at"`
	ErrorName string `json:"error_name"`
	TxID      string `json:"txID"`
	Hostname  string `json:"hostname"`
	Port      string `json:"port"`
}

// UnmarshalJSON accepts numbers where strings are expected (created_at,
// port).
func (e *StreamError) UnmarshalJSON(b []byte) error {
	var aux struct {
		Name      looseString `json:"name"`
		Message   looseString `json:"error"`
		VIN       looseString `json:"vin"`
		CreatedAt looseString `json:"created_at"`
		ErrorName looseString `json:"error_name"`
		TxID      looseString `json:"txID"`
		Hostname  looseString `json:"hostname"`
		Port      looseString `json:"port"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*e = StreamError{
		Name: string(aux.Name), Message: string(aux.Message), VIN: string(aux.VIN),
		CreatedAt: string(aux.CreatedAt), ErrorName: string(aux.ErrorName), TxID: string(aux.TxID),
		Hostname: string(aux.Hostname), Port: string(aux.Port),
	}
	return nil
}

// Explain says in plain words what the car's error means and what to do.
func (e StreamError) Explain() string {
	text := strings.ToLower(e.Name + " " + e.ErrorName + " " + e.Message)
	switch {
	case strings.Contains(text, "common name") || strings.Contains(text, "sans"):
		return "The server certificate does not name the hostname in its Subject Alternative Names. Get a certificate whose SAN covers the hostname (ACME certificates do), then push the config again."
	case strings.Contains(text, "unknown authority") || strings.Contains(text, "unknown issuer") || strings.Contains(text, "certificate signed by"):
		return "The car could not validate the server certificate with the pushed \"ca\". Push again with the CA chain of the certificate the server actually sends."
	case strings.Contains(text, "expired"):
		return "The server certificate has expired. Renew it; the car reconnects by itself."
	case strings.Contains(text, "invalidsignature") || strings.Contains(text, "signature"):
		return "The car did not accept the config's signature: the key that signed it is not the one registered with Tesla for your domain. Register the key again, then push again."
	case strings.Contains(text, "bad certificate") || strings.Contains(text, "handshake"):
		return "The TLS handshake between car and server failed. The server must terminate TLS itself (no proxy in front) and send its full certificate chain."
	case strings.Contains(text, "timeout") || strings.Contains(text, "refused") || strings.Contains(text, "no such host") || strings.Contains(text, "dial"):
		return "The car could not reach the server. Check the DNS name, the port forwarding and the firewall."
	}
	if e.Message != "" {
		return "The car reported: " + e.Message
	}
	return "The car reported an error (" + e.Name + ")."
}

// PartnerAccount is Tesla's answer to a partner registration. Its fields
// are not documented; what Tesla holds is checked with PartnerPublicKey.
type PartnerAccount struct {
	ClientID  string `json:"client_id"`
	Domain    string `json:"domain"`
	PublicKey string `json:"public_key"`
}

// looseString decodes a JSON string, number or boolean as text, and null
// as "".
type looseString string

func (s *looseString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = ""
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = looseString(str)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*s = looseString(n)
		return nil
	}
	var v bool
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = looseString(strconv.FormatBool(v))
	return nil
}
