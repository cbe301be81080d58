package command

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
)

// Settings is the "commands" section of the configuration file: whether
// fleet2mqtt may command the cars at all, which kinds of command, who may
// send them over MQTT, how many per car, and the local Tesla-proxy-
// compatible API. Everything is off by default.
type Settings struct {
	// Enabled turns vehicle commands on: MQTT command topics, the Home
	// Assistant controls and the proxy API (when it listens). The command
	// line works whatever it says: its user holds the key already.
	Enabled bool `yaml:"enabled"`
	// Categories say which kinds of command are accepted.
	Categories Categories `yaml:"categories"`
	// MQTTUsers are the embedded broker's users (mqtt.embedded.users) who
	// may publish commands. Nobody else may, anonymous clients included.
	MQTTUsers []string `yaml:"mqtt_users"`
	// AllowAnonymous lets clients without a user name command the cars,
	// as far as mqtt.embedded.allow_anonymous lets them connect (by
	// default from this machine only). Off by default: any program on
	// the machine could otherwise unlock the car.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// RateLimit bounds the commands (wake-ups included) sent to one car.
	RateLimit RateLimit `yaml:"rate_limit"`
	// WakeTimeout bounds the wait for a sleeping car to come online.
	WakeTimeout time.Duration `yaml:"wake_timeout"`
	// FleetAPIURL overrides the Fleet API base URL of every region, for
	// tests, an HTTP proxy in between or an unusual region. Empty: the
	// region of the owner's account.
	FleetAPIURL string `yaml:"fleet_api_url"`
	// Proxy is the local API compatible with Tesla's tesla-http-proxy.
	Proxy ProxySettings `yaml:"proxy"`
}

// Categories are the kinds of command, each on or off.
type Categories struct {
	// Charging: start and stop, limit, amps, charge port, schedule.
	Charging bool `yaml:"charging"`
	// Climate: air conditioning, temperatures, seat and steering-wheel
	// heat, preconditioning, cabin overheat protection.
	Climate bool `yaml:"climate"`
	// Security: lock and sentry mode.
	Security bool `yaml:"security"`
	// Access: unlock, trunk and frunk, windows. Off by default even when
	// commands are on: these open the car.
	Access bool `yaml:"access"`
	// Alerts: flash the lights, honk the horn.
	Alerts bool `yaml:"alerts"`
}

// ProxySettings is the local API compatible with Tesla's tesla-http-proxy.
type ProxySettings struct {
	// Listen is the host:port of its TLS listener; empty (the default)
	// does not listen. Tesla's proxy also speaks TLS only.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are its certificate and key (PEM). Required
	// when Listen is set.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Category names, as in the configuration.
const (
	CategoryCharging = "charging"
	CategoryClimate  = "climate"
	CategorySecurity = "security"
	CategoryAccess   = "access"
	CategoryAlerts   = "alerts"
	// CategoryGeneral holds wake_up and set_vehicle_name, accepted
	// whenever commands are enabled.
	CategoryGeneral = "general"
)

var categoryOf = map[string]string{
	"wake_up":                              CategoryGeneral,
	"set_vehicle_name":                     CategoryGeneral,
	"charge_start":                         CategoryCharging,
	"charge_stop":                          CategoryCharging,
	"set_charge_limit":                     CategoryCharging,
	"set_charging_amps":                    CategoryCharging,
	"charge_port_door_open":                CategoryCharging,
	"charge_port_door_close":               CategoryCharging,
	"set_scheduled_charging":               CategoryCharging,
	"auto_conditioning_start":              CategoryClimate,
	"auto_conditioning_stop":               CategoryClimate,
	"set_temps":                            CategoryClimate,
	"set_preconditioning_max":              CategoryClimate,
	"remote_seat_heater_request":           CategoryClimate,
	"remote_steering_wheel_heater_request": CategoryClimate,
	"set_scheduled_departure":              CategoryClimate,
	"set_cabin_overheat_protection":        CategoryClimate,
	"door_lock":                            CategorySecurity,
	"set_sentry_mode":                      CategorySecurity,
	"door_unlock":                          CategoryAccess,
	"actuate_trunk":                        CategoryAccess,
	"window_control":                       CategoryAccess,
	"flash_lights":                         CategoryAlerts,
	"honk_horn":                            CategoryAlerts,
}

// CategoryOf names the category of a command (see Names), "" for an
// unknown one.
func CategoryOf(name string) string { return categoryOf[name] }

// On reports whether the category is on; CategoryGeneral always is.
func (c Categories) On(category string) bool {
	switch category {
	case CategoryGeneral:
		return true
	case CategoryCharging:
		return c.Charging
	case CategoryClimate:
		return c.Climate
	case CategorySecurity:
		return c.Security
	case CategoryAccess:
		return c.Access
	case CategoryAlerts:
		return c.Alerts
	}
	return false
}

// ErrNotAllowed: commands are off, or the command's category is.
var ErrNotAllowed = errors.New("command not allowed")

// Allows reports why the command may not be sent through MQTT, Home
// Assistant or the proxy API, nil when it may.
func (s Settings) Allows(name string) error {
	if !s.Enabled {
		return fmt.Errorf("%w: vehicle commands are off (commands.enabled)", ErrNotAllowed)
	}
	cat := CategoryOf(name)
	if cat == "" {
		return fmt.Errorf("%w: unknown command %q", ErrInvalidCommand, name)
	}
	if !s.Categories.On(cat) {
		return fmt.Errorf("%w: %s commands are off (commands.categories.%s)", ErrNotAllowed, cat, cat)
	}
	return nil
}

// DefaultSettings returns the section when nothing is set: commands off;
// once enabled, every category but access.
func DefaultSettings() Settings {
	return Settings{
		Categories:  Categories{Charging: true, Climate: true, Security: true, Alerts: true},
		MQTTUsers:   []string{},
		RateLimit:   DefaultRateLimit,
		WakeTimeout: DefaultWakeTimeout,
	}
}

// Validate reports every setting that cannot work, naming keys relative
// to the section.
func (s Settings) Validate() error {
	var errs []error
	if err := s.RateLimit.Validate(); err != nil {
		errs = append(errs, configerr.Errorf("rate_limit", "%v", err))
	}
	if s.WakeTimeout < 0 {
		errs = append(errs, configerr.Errorf("wake_timeout", "%s must not be negative", s.WakeTimeout))
	}
	for i, u := range s.MQTTUsers {
		if u == "" {
			errs = append(errs, configerr.Errorf(fmt.Sprintf("mqtt_users[%d]", i), "is empty: name a user of mqtt.embedded.users"))
		}
	}
	if s.FleetAPIURL != "" {
		if u, err := url.Parse(s.FleetAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, configerr.Errorf("fleet_api_url", "%q is not an http(s) URL such as https://fleet-api.prd.eu.vn.cloud.tesla.com", s.FleetAPIURL))
		}
	}
	if p := s.Proxy; p.Listen != "" {
		if _, _, err := net.SplitHostPort(p.Listen); err != nil {
			errs = append(errs, configerr.Errorf("proxy.listen", "%q is not host:port: %v", p.Listen, err))
		}
		if p.CertFile == "" || p.KeyFile == "" {
			errs = append(errs, configerr.Errorf("proxy.cert_file", "the proxy API listens on TLS only: set proxy.cert_file and proxy.key_file"))
		}
	}
	return errors.Join(errs...)
}
