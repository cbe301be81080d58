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
	// Enabled derives and publishes status, place, drives and charges
	// (read by the program, not by a Tracker). Default true.
	Enabled bool `yaml:"enabled"`
	// Places are named circles (Home, Work); see Place. The program's
	// configuration file holds them at its top level (places), where the
	// TeslaMate layout's geofence reads them too, so they are not a key
	// of this section.
	Places []Place `yaml:"-"`
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

	// History is how long ended sessions are kept (read by the program).
	History HistoryConfig `yaml:"history"`
	// StreamingBudgetDollars warns when a car's estimated monthly
	// streaming bill (Tesla's price per signal) exceeds it, in US$; 0
	// (default) never warns (read by the program).
	StreamingBudgetDollars float64 `yaml:"streaming_budget_dollars"`

	loc *time.Location
}

// HistoryConfig is how long the history of sessions is kept.
type HistoryConfig struct {
	// RetentionDays deletes sessions that ended longer ago; default 730
	// (two years). 0 in the file means the default.
	RetentionDays int `yaml:"retention_days"`
}

// DefaultRetentionDays is how long sessions are kept by default.
const DefaultRetentionDays = 730

// DefaultConfig returns the settings the program runs with when its
// configuration file says nothing: enabled, with the default thresholds.
func DefaultConfig() Config {
	return Config{
		Enabled:       true,
		DriveGrace:    DefaultDriveGrace,
		ChargeGrace:   DefaultChargeGrace,
		DriveTimeout:  DefaultDriveTimeout,
		UpdateTimeout: DefaultUpdateTimeout,
		StaleAfter:    DefaultStaleAfter,
		History:       HistoryConfig{RetentionDays: DefaultRetentionDays},
	}
}

// Retention returns how long sessions are kept.
func (c *Config) Retention() time.Duration {
	d := c.History.RetentionDays
	if d <= 0 {
		d = DefaultRetentionDays
	}
	return time.Duration(d) * 24 * time.Hour
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
	if c.History.RetentionDays < 0 {
		return fmt.Errorf("history.retention_days: %d is negative: use a number of days such as %d (the default)", c.History.RetentionDays, DefaultRetentionDays)
	}
	if b := c.StreamingBudgetDollars; !(b >= 0 && !math.IsInf(b, 0)) {
		return fmt.Errorf("streaming_budget_dollars: %v is negative: use US$ per month per car, or 0 for no warning", b)
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
