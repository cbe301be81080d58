package simulate

import "math"

// waypoint is a corner of the simulated route.
type waypoint struct {
	lat, lon float64
	limit    float64 // speed limit on the way to this point, mph
	light    bool    // a traffic light here may stop the car
}

// paloAlto is a loop of about eight miles through Palo Alto, starting and
// ending at 3500 Deer Creek Road, the address of the protocol's example
// location "(37.412374 N, 122.145867 W)".
var paloAlto = []waypoint{
	{37.412374, -122.145867, 25, false},
	{37.416800, -122.141300, 35, true},
	{37.422900, -122.136400, 45, true},
	{37.428500, -122.142400, 40, true},
	{37.438200, -122.157600, 35, true},
	{37.443600, -122.165300, 35, true},
	{37.447800, -122.160400, 25, true},
	{37.449000, -122.153000, 25, true},
	{37.437300, -122.140300, 30, true},
	{37.428400, -122.130500, 35, true},
	{37.421800, -122.135600, 45, true},
	{37.416800, -122.141300, 35, true},
}

const (
	earthRadiusMiles = 3958.8
	degToRad         = math.Pi / 180
)

// distanceMiles is the great-circle distance between two points.
func distanceMiles(lat1, lon1, lat2, lon2 float64) float64 {
	φ1, φ2 := lat1*degToRad, lat2*degToRad
	dφ, dλ := (lat2-lat1)*degToRad, (lon2-lon1)*degToRad
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * earthRadiusMiles * math.Asin(math.Min(1, math.Sqrt(a)))
}

// bearing is the initial compass heading from the first point to the
// second, in degrees from 0 (north) up to 360.
func bearing(lat1, lon1, lat2, lon2 float64) float64 {
	φ1, φ2 := lat1*degToRad, lat2*degToRad
	dλ := (lon2 - lon1) * degToRad
	y := math.Sin(dλ) * math.Cos(φ2)
	x := math.Cos(φ1)*math.Sin(φ2) - math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ)
	return math.Mod(math.Atan2(y, x)/degToRad+360, 360)
}

// routeLength is the length of the loop in miles.
func routeLength(r []waypoint) float64 {
	var d float64
	for i := range r {
		a, b := r[i], r[(i+1)%len(r)]
		d += distanceMiles(a.lat, a.lon, b.lat, b.lon)
	}
	return d
}

// round6 rounds to six decimals, the precision of a car's GPS position.
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// round rounds x to the given number of decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}
