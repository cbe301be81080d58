package activity

import (
	"math"
	"time"
)

// Kind is the kind of a session.
type Kind string

// Session kinds.
const (
	KindDrive  Kind = "drive"
	KindCharge Kind = "charge"
)

// End reasons of a session.
const (
	EndParked    = "parked"    // drive: the gear stayed in P for DriveGrace
	EndTimeout   = "timeout"   // drive: no record for DriveTimeout
	EndComplete  = "complete"  // charge: the car reported Complete
	EndUnplugged = "unplugged" // charge: the car reported Disconnected
	EndStopped   = "stopped"   // charge: Stopped or NoPower for ChargeGrace
)

// Location is a point in degrees.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// Session is the summary of one drive or charging session, published when
// it ends and kept in the history. Figures the car did not stream are
// absent (nil) rather than zero. Distances are in km, speeds in km/h,
// energy in kWh, power in kW, state of charge in percent.
type Session struct {
	Kind Kind   `json:"kind"`
	VIN  string `json:"vin"`

	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// DurationMin is End - Start in minutes.
	DurationMin float64 `json:"duration_min"`
	// EndReason says which rule ended the session (parked, timeout,
	// complete, unplugged, stopped).
	EndReason string `json:"end_reason"`

	StartPlace    string    `json:"start_place"`
	EndPlace      string    `json:"end_place"`
	StartLocation *Location `json:"start_location,omitempty"`
	EndLocation   *Location `json:"end_location,omitempty"`

	OdometerStartKm *float64 `json:"odometer_start_km,omitempty"`
	OdometerEndKm   *float64 `json:"odometer_end_km,omitempty"`
	DistanceKm      *float64 `json:"distance_km,omitempty"`

	SocStart *float64 `json:"soc_start,omitempty"`
	SocEnd   *float64 `json:"soc_end,omitempty"`

	// BatteryStartKWh and BatteryEndKWh are the pack's EnergyRemaining.
	BatteryStartKWh *float64 `json:"battery_start_kwh,omitempty"`
	BatteryEndKWh   *float64 `json:"battery_end_kwh,omitempty"`
	// EnergyUsedKWh is, for a drive, what the battery lost
	// (EnergyRemaining at start minus at end); for a charge, what the
	// charger delivered (ACChargingEnergyIn, or for DC the energy in).
	EnergyUsedKWh *float64 `json:"energy_used_kwh,omitempty"`
	// EnergyAddedKWh is what a charge put into the battery
	// (DCChargingEnergyIn, which counts AC and DC sessions).
	EnergyAddedKWh *float64 `json:"energy_added_kwh,omitempty"`

	AvgSpeedKmh *float64 `json:"avg_speed_kmh,omitempty"`
	MaxSpeedKmh *float64 `json:"max_speed_kmh,omitempty"`
	AvgPowerKW  *float64 `json:"avg_power_kw,omitempty"`
	MaxPowerKW  *float64 `json:"max_power_kw,omitempty"`

	// FastCharger is set for a DC fast-charging session.
	FastCharger bool `json:"fast_charger,omitempty"`
	// Cost of a charge: energy used times the price that held where and
	// when each part of it was charged (see Config and Place).
	Cost     *float64 `json:"cost,omitempty"`
	Currency string   `json:"currency,omitempty"`
}

// Kilometres per mile: the car streams distances in miles.
const kmPerMile = 1.609344

// openSession accumulates a session while it runs. It is part of the
// tracker's snapshot, so every field is exported to JSON.
type openSession struct {
	Kind       Kind      `json:"kind"`
	Start      time.Time `json:"start"`
	StartPlace string    `json:"start_place"`
	StartLoc   *Location `json:"start_location,omitempty"`
	// LastAt is the time of the session's latest record.
	LastAt time.Time `json:"last_at"`
	// PausedAt is when a drive's gear went to P, or a charge stopped;
	// zero while it runs.
	PausedAt time.Time `json:"paused_at,omitzero"`

	OdoStart  reading `json:"odometer_start_mi"`
	OdoEnd    reading `json:"odometer_end_mi"`
	SocStart  reading `json:"soc_start"`
	SocEnd    reading `json:"soc_end"`
	BattStart reading `json:"battery_start_kwh"`
	BattEnd   reading `json:"battery_end_kwh"`

	MaxSpeedMph float64 `json:"max_speed_mph,omitempty"`
	MaxPowerKW  float64 `json:"max_power_kw,omitempty"`
	Fast        bool    `json:"fast,omitempty"`

	// AC and DC count the energy-in counters' increments (kWh); the
	// counters reset per session, so a drop restarts the count from it.
	AC counter `json:"ac"`
	DC counter `json:"dc"`
}

// reading is a number that may be unknown. It marshals as null when unknown.
type reading struct {
	V  float64
	OK bool
}

func (r reading) ptr(scale float64, digits int) *float64 {
	if !r.OK {
		return nil
	}
	return round(r.V*scale, digits)
}

// counter accumulates a per-session energy counter's increments and their
// cost.
type counter struct {
	Prev    float64 `json:"prev"`
	HasPrev bool    `json:"has_prev,omitempty"`
	Sum     float64 `json:"sum"`
	Seen    bool    `json:"seen,omitempty"` // moved during the session
	Cost    float64 `json:"cost"`
	Priced  bool    `json:"priced,omitempty"`  // a price applied to every increment
	Missing bool    `json:"missing,omitempty"` // some increment had no price
}

// add takes the counter's new value v; an increment costs price per kWh
// when priced.
func (c *counter) add(v float64, price float64, priced bool) {
	var d float64
	switch {
	case !c.HasPrev:
		d = 0 // the first value is the baseline
	case v >= c.Prev:
		d = v - c.Prev
	default:
		d = v // the counter reset: it counts from zero again
	}
	c.Prev, c.HasPrev = v, true
	if d <= 0 {
		return
	}
	c.Sum += d
	c.Seen = true
	if priced {
		c.Cost += d * price
		c.Priced = true
	} else {
		c.Missing = true
	}
}

// summary makes the session's summary, ending at end.
func (o *openSession) summary(vin string, end time.Time, endPlace string, endLoc *Location, reason, currency string) Session {
	s := Session{
		Kind: o.Kind, VIN: vin,
		Start: o.Start.UTC(), End: end.UTC(), EndReason: reason,
		StartPlace: o.StartPlace, EndPlace: endPlace,
		StartLocation: o.StartLoc, EndLocation: endLoc,
		SocStart: o.SocStart.ptr(1, 1), SocEnd: o.SocEnd.ptr(1, 1),
		BatteryStartKWh: o.BattStart.ptr(1, 2), BatteryEndKWh: o.BattEnd.ptr(1, 2),
	}
	dur := end.Sub(o.Start)
	if dur < 0 {
		dur = 0
	}
	s.DurationMin = *round(dur.Minutes(), 2)
	hours := dur.Hours()
	switch o.Kind {
	case KindDrive:
		s.OdometerStartKm = o.OdoStart.ptr(kmPerMile, 2)
		s.OdometerEndKm = o.OdoEnd.ptr(kmPerMile, 2)
		if o.OdoStart.OK && o.OdoEnd.OK {
			km := max(0, o.OdoEnd.V-o.OdoStart.V) * kmPerMile
			s.DistanceKm = round(km, 2)
			if hours > 0 {
				s.AvgSpeedKmh = round(km/hours, 1)
			}
		}
		if o.MaxSpeedMph > 0 || s.DistanceKm != nil {
			s.MaxSpeedKmh = round(o.MaxSpeedMph*kmPerMile, 1)
		}
		if o.BattStart.OK && o.BattEnd.OK {
			s.EnergyUsedKWh = round(o.BattStart.V-o.BattEnd.V, 2)
		}
	case KindCharge:
		s.FastCharger = o.Fast
		// DCChargingEnergyIn counts what went into the pack, AC or DC.
		if o.DC.HasPrev {
			s.EnergyAddedKWh = round(o.DC.Sum, 2)
		} else if o.BattStart.OK && o.BattEnd.OK {
			s.EnergyAddedKWh = round(max(0, o.BattEnd.V-o.BattStart.V), 2)
		}
		// What the charger delivered: the AC counter when charging on AC,
		// the energy in otherwise.
		used := &o.DC
		if !o.Fast && o.AC.HasPrev {
			used = &o.AC
		}
		if used.HasPrev {
			s.EnergyUsedKWh = round(used.Sum, 2)
			if used.Priced && !used.Missing {
				s.Cost = round(used.Cost, 2)
				s.Currency = currency
			}
		}
		if o.MaxPowerKW > 0 {
			s.MaxPowerKW = round(o.MaxPowerKW, 1)
		}
		if s.EnergyAddedKWh != nil && hours > 0 {
			s.AvgPowerKW = round(*s.EnergyAddedKWh/hours, 1)
		}
	}
	return s
}

func round(v float64, digits int) *float64 {
	p := math.Pow10(digits)
	r := math.Round(v*p) / p
	if r == 0 {
		r = 0 // no -0 in JSON
	}
	return &r
}
