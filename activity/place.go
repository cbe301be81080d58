package activity

import (
	"fmt"
	"math"
	"strings"
)

// Place is a named circle on the map, such as Home or Work. A car is at the
// place when its position is within Radius metres of the centre; see
// PlaceMatcher for the hysteresis that keeps a car parked at the edge from
// flapping in and out.
type Place struct {
	// Name is published as the car's place; unique among places.
	Name string `yaml:"name" json:"name"`
	// Latitude and Longitude of the centre, in degrees.
	Latitude  float64 `yaml:"latitude" json:"latitude"`
	Longitude float64 `yaml:"longitude" json:"longitude"`
	// Radius in metres (default 100).
	Radius float64 `yaml:"radius" json:"radius"`
	// PricePerKWh is what energy charged here costs, in Config.Currency;
	// nil means the place has no price of its own (Config.PricePerKWh applies).
	PricePerKWh *float64 `yaml:"price_per_kwh,omitempty" json:"price_per_kwh,omitempty"`
	// Tariffs are time-of-use prices that replace PricePerKWh within their
	// window of the day (in Config.TimeZone). The first window that holds
	// the moment wins.
	Tariffs []Tariff `yaml:"tariffs,omitempty" json:"tariffs,omitempty"`

	cosLat float64 // cos(Latitude), set by validate for the quick rejection in within
}

// Tariff is a price that holds between two times of the day. A window whose
// To is not after From runs over midnight ("22:00" to "06:00").
type Tariff struct {
	From        string  `yaml:"from" json:"from"` // "HH:MM"
	To          string  `yaml:"to" json:"to"`     // "HH:MM"
	PricePerKWh float64 `yaml:"price_per_kwh" json:"price_per_kwh"`

	from, to int // minutes of the day, set by validate
}

// DefaultRadius is the radius of a place that does not set one, in metres.
const DefaultRadius = 100

// maxRadius keeps a typo (a radius in feet times a thousand) from turning a
// whole region into "Home".
const maxRadius = 100_000

// validate checks p and fills its defaults; key is p's path, such as
// "places[1]".
func (p *Place) validate(key string) error {
	p.Name = strings.TrimSpace(p.Name)
	if p.Name == "" {
		return fmt.Errorf("%s.name: empty: give the place a name, such as Home", key)
	}
	if !(p.Latitude >= -90 && p.Latitude <= 90) {
		return fmt.Errorf("%s.latitude: %v is not a latitude: use degrees between -90 and 90", key, p.Latitude)
	}
	if !(p.Longitude >= -180 && p.Longitude <= 180) {
		return fmt.Errorf("%s.longitude: %v is not a longitude: use degrees between -180 and 180", key, p.Longitude)
	}
	if p.Latitude == 0 && p.Longitude == 0 {
		return fmt.Errorf("%s: latitude and longitude are both 0 (the sea off Africa): set the place's coordinates", key)
	}
	switch {
	case p.Radius == 0:
		p.Radius = DefaultRadius
	case !(p.Radius > 0 && p.Radius <= maxRadius):
		return fmt.Errorf("%s.radius: %v is not a radius: use metres between 1 and %d (default %d)", key, p.Radius, maxRadius, DefaultRadius)
	}
	if p.PricePerKWh != nil && !(*p.PricePerKWh >= 0 && !math.IsInf(*p.PricePerKWh, 0)) {
		return fmt.Errorf("%s.price_per_kwh: %v is negative: use 0 for free charging", key, *p.PricePerKWh)
	}
	p.cosLat = math.Cos(p.Latitude * math.Pi / 180)
	for i := range p.Tariffs {
		if err := p.Tariffs[i].validate(fmt.Sprintf("%s.tariffs[%d]", key, i)); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tariff) validate(key string) error {
	var err error
	if t.from, err = parseClock(t.From); err != nil {
		return fmt.Errorf("%s.from: %w", key, err)
	}
	if t.to, err = parseClock(t.To); err != nil {
		return fmt.Errorf("%s.to: %w", key, err)
	}
	if !(t.PricePerKWh >= 0 && !math.IsInf(t.PricePerKWh, 0)) {
		return fmt.Errorf("%s.price_per_kwh: %v is negative: use 0 for free charging", key, t.PricePerKWh)
	}
	return nil
}

// holds reports whether minute of the day m falls in the window.
func (t *Tariff) holds(m int) bool {
	if t.from < t.to {
		return m >= t.from && m < t.to
	}
	return m >= t.from || m < t.to // over midnight; From == To is all day
}

func parseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not a time of day: use HH:MM, such as 22:00", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("%q is not a time of day: use HH:MM, such as 22:00", s)
	}
	return h*60 + m, nil
}

// ValidatePlaces checks places and fills their defaults. Errors name the
// place's key relative to the list, such as "places[1].radius: ...".
func ValidatePlaces(places []Place) error {
	seen := make(map[string]int, len(places))
	for i := range places {
		key := fmt.Sprintf("places[%d]", i)
		if err := places[i].validate(key); err != nil {
			return err
		}
		if j, dup := seen[places[i].Name]; dup {
			return fmt.Errorf("%s.name: %q is also the name of places[%d]: give each place its own name", key, places[i].Name, j)
		}
		seen[places[i].Name] = i
	}
	return nil
}

// earthRadius is the mean radius of the earth in metres (IUGG).
const earthRadius = 6_371_008.8

// Distance returns the great-circle distance in metres between two points
// given in degrees (haversine formula; good to about 0.5% anywhere).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadius * math.Asin(math.Sqrt(min(1, a)))
}

// Hysteresis returns how far beyond its radius a car must go to leave a
// place it is at: a fifth of the radius, at least 25 m (GPS drifts by
// that much while parked) and at most 500 m.
func (p *Place) Hysteresis() float64 {
	return min(500, max(25, p.Radius/5))
}

// match returns the index of the place a car at (lat, lon) is at, given the
// place it was at (-1 for none). A car stays at its place until it is
// farther than radius plus hysteresis from the centre; otherwise it is at
// the nearest place whose radius holds it.
func matchPlace(places []Place, current int, lat, lon float64) int {
	if current >= 0 && current < len(places) {
		p := &places[current]
		if _, ok := p.within(lat, lon, p.Radius+p.Hysteresis()); ok {
			return current
		}
	}
	best, bestDist := -1, math.Inf(1)
	for i := range places {
		if d, ok := places[i].within(lat, lon, places[i].Radius); ok && d < bestDist {
			best, bestDist = i, d
		}
	}
	return best
}

// metresPerDegree is the length of a degree of latitude, near enough.
const metresPerDegree = earthRadius * math.Pi / 180

// within returns the distance from p's centre to (lat, lon) and whether it
// is at most limit metres. Points clearly farther in latitude or longitude
// alone are rejected without the trigonometry of Distance (the margin of
// 10% covers the flat-earth approximation at any place's scale).
func (p *Place) within(lat, lon, limit float64) (float64, bool) {
	if math.Abs(lat-p.Latitude)*metresPerDegree > limit*1.1 {
		return 0, false
	}
	if p.cosLat > 0.1 {
		dLon := math.Abs(lon - p.Longitude)
		if dLon > 180 {
			dLon = 360 - dLon
		}
		if dLon*metresPerDegree*p.cosLat > limit*1.1 {
			return 0, false
		}
	}
	d := Distance(lat, lon, p.Latitude, p.Longitude)
	return d, d <= limit
}
