package simulate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

// ErrNoVehicleCertificates is returned when a PKI holds neither vehicle
// certificates nor a vehicle authority to issue them.
var ErrNoVehicleCertificates = errors.New("no vehicle certificates and no vehicle CA to issue them")

// Identity is who a simulated car is: its VIN and the client certificate
// that says so.
type Identity struct {
	VIN         string
	Certificate tls.Certificate
}

// Identities returns n car identities from a development PKI: first the
// vehicle certificates it holds, in VIN order, then test VINs (TestVIN 1,
// 2, ...) with certificates issued on the fly by its vehicle authority.
// Without an authority and with fewer certificates than n, the
// certificates are used in turn and reused reports so: such cars share an
// identity.
func Identities(b *certs.Bundle, n int) (ids []Identity, reused bool, err error) {
	if n <= 0 {
		return nil, false, nil
	}
	vins := make([]string, 0, len(b.Vehicles))
	for vin := range b.Vehicles {
		vins = append(vins, vin)
	}
	slices.Sort(vins)
	ids = make([]Identity, 0, n)
	for _, vin := range vins[:min(n, len(vins))] {
		ids = append(ids, Identity{VIN: vin, Certificate: b.Vehicles[vin]})
	}
	if len(ids) == n {
		return ids, false, nil
	}
	if b.VehicleCA == nil {
		if len(ids) == 0 {
			return nil, false, ErrNoVehicleCertificates
		}
		for i := len(ids); i < n; i++ {
			ids = append(ids, ids[i%len(vins)])
		}
		return ids, true, nil
	}
	for serial := 1; len(ids) < n; serial++ {
		vin := TestVIN(serial)
		if _, taken := b.Vehicles[vin]; taken {
			continue
		}
		cert, err := b.VehicleCA.IssueVehicle(vin)
		if err != nil {
			return nil, false, fmt.Errorf("issue certificate for %s: %w", vin, err)
		}
		ids = append(ids, Identity{VIN: vin, Certificate: cert})
	}
	return ids, false, nil
}

// CarConfigFor returns base with the identity's VIN and a copy of base.TLS
// presenting its certificate.
func CarConfigFor(base CarConfig, id Identity) CarConfig {
	c := base
	c.VIN = id.VIN
	if base.TLS != nil {
		c.TLS = base.TLS.Clone()
	} else {
		c.TLS = &tls.Config{}
	}
	c.TLS.Certificates = []tls.Certificate{id.Certificate}
	return c
}
