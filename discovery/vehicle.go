package discovery

import (
	"strconv"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Vehicle is what discovery knows of one car.
type Vehicle struct {
	// VIN identifies the car (from its client certificate). Required.
	VIN string
	// DisplayName is the name the owner gave the car (the VehicleName
	// signal or the Fleet API's display_name), "" when unknown. It names
	// the device in Home Assistant and starts its entity ids; without it
	// the VIN does.
	DisplayName string
	// SoftwareVersion is the car's firmware (the Version signal), "" when
	// unknown.
	SoftwareVersion string
	// Streaming are the signals in the car's streaming configuration (as
	// pushed from the setup page), nil when unknown.
	Streaming []telemetry.Field
	// Seen are the signals the car has actually sent.
	Seen []telemetry.Field
}

// Model is a Tesla model as the VIN tells it.
type Model struct {
	// Name is the model's name, such as "Model 3" or "Cybertruck".
	Name string
	// Year is the model year, 0 when the VIN does not tell it.
	Year int
}

// String returns "Model 3 (2019)", or the name alone without a year.
func (m Model) String() string {
	if m.Year == 0 {
		return m.Name
	}
	return m.Name + " (" + strconv.Itoa(m.Year) + ")"
}

// teslaModels are the model letters in the fourth position of a Tesla VIN
// (the first position of the vehicle descriptor section).
var teslaModels = map[byte]string{
	'S': "Model S", '3': "Model 3", 'X': "Model X", 'Y': "Model Y",
	'C': "Cybertruck", 'R': "Roadster", 'T': "Semi",
}

// ModelFromVIN decodes a Tesla VIN's model (position 4) and model year
// (position 10), and reports false when vin is not a 17-character VIN of
// a Tesla model it knows.
//
// Model year codes follow the VIN standard's 30-year cycle: A–H, J–N, P,
// R–T and V–Y are 2010–2030 (I, O, Q, U and Z are never used), the digits
// 1–9 are 2031–2039. The first Roadster (model R) used digits for 2008
// and 2009: for model R a digit reads 2000+digit. An unknown year code
// leaves Year 0.
func ModelFromVIN(vin string) (Model, bool) {
	if !validVIN(vin) {
		return Model{}, false
	}
	name, ok := teslaModels[upper(vin[3])]
	if !ok {
		return Model{}, false
	}
	m := Model{Name: name}
	switch c := upper(vin[9]); {
	case isDigit(c) && c != '0':
		if name == "Roadster" {
			m.Year = 2000 + int(c-'0')
		} else {
			m.Year = 2030 + int(c-'0')
		}
	case isUpper(c):
		const codes = "ABCDEFGHJKLMNPRSTVWXY" // 2010 … 2030
		for i := 0; i < len(codes); i++ {
			if codes[i] == c {
				m.Year = 2010 + i
			}
		}
	}
	return m, true
}

// validVIN reports whether vin has the form of a VIN: 17 letters and
// digits, without I, O and Q.
func validVIN(vin string) bool {
	if len(vin) != 17 {
		return false
	}
	for i := 0; i < len(vin); i++ {
		c := upper(vin[i])
		if !(isDigit(c) || isUpper(c)) || c == 'I' || c == 'O' || c == 'Q' {
			return false
		}
	}
	return true
}

func upper(c byte) byte {
	if isLower(c) {
		return c - 'a' + 'A'
	}
	return c
}
