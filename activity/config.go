package activity

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Config holds the rules' thresholds, the places and the prices. The zero
// value is usable after Validate, which fills the defaults. Errors name the
// key relative to this struct ("drive_grace", "places[1].radius"); the
// program's configuration prefixes its own path.
type Config struct {
	// Places are named circles (Home, Work); see Place.
	Places []Place `yaml:"places"`
	// DriveGrace is how long the gear must stay in P before a drive ends,
	// so that a short stop (a parcel drop, a drive-through) does not split
	// a drive. Default 3m.
	DriveGrace time.Duration `yaml:"drive_grace"`
	// ChargeGrace is how long charging may stay Stopped or NoPower before
	// the charging session ends, so that a pause (a power cut, a
	// load-balancing wallbox) does not split it. Default 15m.
	ChargeGrace time.Duration `yaml:"charge_grace"`
	// DriveTimeout ends an open drive that has sent no record for this
	// long (the car lost its connection and did not come back). Default 1h.
	DriveTimeout time.Duration `yaml:"drive_timeout"`
	// UpdateTimeout is how long a car that was installing a software update
	// counts as updating without sending anything (it reboots and drops its
	// stream while installing). Default 1h.
	UpdateTimeout time.Duration `yaml:"update_timeout"`
	// StaleAfter treats a car whose stream is open but that has sent
	// nothing for this long as if its stream had closed. Default 1h; a
	// negative value (-1s) disables it.
	StaleAfter time.Duration `yaml:"stale_after"`
	// PricePerKWh is the price of energy charged outside any place that
	// sets its own; nil means no cost is computed there.
	PricePerKWh *float64 `yaml:"price_per_kwh"`
	// Currency names the prices' currency in session summaries, such as
	// EUR; informational.
	Currency string `yaml:"currency"`
	// TimeZone is the IANA zone of the tariffs' windows and the monthly
	// totals, such as Europe/Berlin. Default: the machine's zone.
	TimeZone string `yaml:"time_zone"`

	loc *time.Location
}

// Defaults of Config.
const (
	DefaultDriveGrace    = 3 * time.Minute
	DefaultChargeGrace   = 15 * time.Minute
	DefaultDriveTimeout  = time.Hour
	DefaultUpdateTimeout = time.Hour
	DefaultStaleAfter    = time.Hour
)

// Validate fills the defaults and reports the first setting that cannot
// work, naming its key.
func (c *Config) Validate() error {
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"drive_grace", &c.DriveGrace, DefaultDriveGrace},
		{"charge_grace", &c.ChargeGrace, DefaultChargeGrace},
		{"drive_timeout", &c.DriveTimeout, DefaultDriveTimeout},
		{"update_timeout", &c.UpdateTimeout, DefaultUpdateTimeout},
		{"stale_after", &c.StaleAfter, DefaultStaleAfter},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0 && d.key != "stale_after": // stale_after: negative disables
			return fmt.Errorf("%s: %v is negative: use a duration such as %v (the default)", d.key, *d.v, d.def)
		}
	}
	if c.DriveTimeout < c.DriveGrace {
		return fmt.Errorf("drive_timeout: %v is shorter than drive_grace (%v): a drive would time out before a stop could end it", c.DriveTimeout, c.DriveGrace)
	}
	if c.PricePerKWh != nil && !(*c.PricePerKWh >= 0 && !math.IsInf(*c.PricePerKWh, 0)) {
		return fmt.Errorf("price_per_kwh: %v is negative: use 0 for free charging", *c.PricePerKWh)
	}
	if err := ValidatePlaces(c.Places); err != nil {
		return err
	}
	c.loc = time.Local
	if tz := strings.TrimSpace(c.TimeZone); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return fmt.Errorf("time_zone: %q is not a known time zone: use an IANA name such as Europe/Berlin (%v)", tz, err)
		}
		c.loc = loc
	}
	return nil
}

// Location returns the time zone of tariffs and monthly totals (valid
// after Validate).
func (c *Config) Location() *time.Location {
	if c.loc == nil {
		return time.Local
	}
	return c.loc
}

// price returns the price per kWh at place index pi (-1: none) at t, and
// false when no price applies.
func (c *Config) price(pi int, t time.Time) (float64, bool) {
	if pi >= 0 && pi < len(c.Places) {
		p := &c.Places[pi]
		if len(p.Tariffs) > 0 {
			lt := t.In(c.Location())
			m := lt.Hour()*60 + lt.Minute()
			for i := range p.Tariffs {
				if p.Tariffs[i].holds(m) {
					return p.Tariffs[i].PricePerKWh, true
				}
			}
		}
		if p.PricePerKWh != nil {
			return *p.PricePerKWh, true
		}
	}
	if c.PricePerKWh != nil {
		return *c.PricePerKWh, true
	}
	return 0, false
}
