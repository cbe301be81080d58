package ingest

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/internal/deviceid"
)

// DeviceTypeVehicle is the device type of a car.
const DeviceTypeVehicle = "vehicle_device"

var (
	// ErrNoCertificate is returned when there is no client certificate to
	// derive an identity from.
	ErrNoCertificate = errors.New("no client certificate")
	// ErrEmptyCommonName is returned for a client certificate without a
	// subject common name: there is no device id to take.
	ErrEmptyCommonName = errors.New("client certificate has no subject common name")
	// ErrUnknownIssuer is returned when the issuer of a client certificate
	// is not one Tesla's protocol accepts.
	ErrUnknownIssuer = errors.New("client certificate issuer not accepted")
	// ErrUnknownDeviceType is returned when a certificate from one of Tesla's
	// product issuing CAs carries no extended key usage naming a known
	// device type.
	ErrUnknownDeviceType = errors.New("client certificate names no known device type")
	// ErrExcludedCertificate is returned for certificates Tesla issues for
	// other purposes (Wi-Fi EAP) that must not open a telemetry stream.
	ErrExcludedCertificate = errors.New("client certificate excluded from telemetry")
	// ErrInvalidDeviceID is returned for a client certificate whose subject
	// common name is not a plausible device id (see ValidDeviceID): the id
	// becomes a level of MQTT topics, so that MQTT wildcards, a topic
	// separator or control characters in it must never get that far.
	ErrInvalidDeviceID = errors.New("client certificate common name is not a valid device id")
)

// Identity is who a connection belongs to, taken from its verified client
// certificate, never from the messages it sends.
type Identity struct {
	// DeviceID is the leaf's subject common name with "." replaced by "-";
	// for a car it is the VIN. It always satisfies ValidDeviceID.
	DeviceID string
	// DeviceType is "vehicle_device" for a car; Tesla's other device types
	// (energy_device, vehicle_board_device, ...) are reported as named.
	DeviceType string
	// SenderID is DeviceType + "." + DeviceID, as in Tesla's sender_id.
	SenderID string
}

// IsVehicle reports whether the identity is a car.
func (id Identity) IsVehicle() bool { return id.DeviceType == DeviceTypeVehicle }

// IdentityFromCertificate derives the identity of a connection from the leaf
// of its verified client chain, following Tesla's rules: the issuer common
// name must be one of TeslaMotors, Tesla Issuing CA or Tesla Motors Products
// CA (a vehicle), or one of Tesla's product issuing CAs, whose certificates
// name their device type in an extended key usage OID under
// 1.3.6.1.4.1.49279.2. Names are compared exactly. The device id, the
// subject common name with "." replaced by "-", must satisfy ValidDeviceID
// (ErrInvalidDeviceID otherwise). Errors name the issuer and subject common
// names, quoted.
//
// It does not verify the chain: call it only with a certificate the TLS
// stack has verified against the trusted authorities.
func IdentityFromCertificate(leaf *x509.Certificate) (Identity, error) {
	if leaf == nil {
		return Identity{}, ErrNoCertificate
	}
	issuer, subject := leaf.Issuer.CommonName, leaf.Subject.CommonName
	if subject == "" {
		return Identity{}, fmt.Errorf("%w: issuer %q", ErrEmptyCommonName, issuer)
	}
	deviceType, err := deviceTypeOf(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: issuer %q, subject %q", err, issuer, subject)
	}
	deviceID := deviceid.FromCommonName(subject)
	if !ValidDeviceID(deviceID) {
		return Identity{}, fmt.Errorf("%w: issuer %q, subject %q", ErrInvalidDeviceID, issuer, subject)
	}
	return Identity{
		DeviceID:   deviceID,
		DeviceType: deviceType,
		SenderID:   deviceType + "." + deviceID,
	}, nil
}

// ValidDeviceID reports whether id is a plausible device id: 1 to 64
// ASCII letters, digits, '-' and '_', starting with a letter or a digit.
// The rule is deviceid.Valid, shared with the development PKI (certs),
// which refuses to issue certificates that this server would refuse.
func ValidDeviceID(id string) bool { return deviceid.Valid(id) }

// deviceTypeOf applies the issuer rules.
func deviceTypeOf(leaf *x509.Certificate) (string, error) {
	switch issuer := leaf.Issuer.CommonName; issuer {
	case "TeslaMotors", "Tesla Issuing CA":
		return DeviceTypeVehicle, nil
	case "Tesla Motors Products CA":
		// This CA also signs certificates for boards inside a car, which
		// Tesla's reference server tells apart by their first unit name.
		if ou := leaf.Subject.OrganizationalUnit; len(ou) > 0 && ou[0] == "Tesla Motors SN" {
			return "vehicle_board_device", nil
		}
		return DeviceTypeVehicle, nil
	default:
		if isProductIssuingCA(issuer) {
			return deviceTypeFromEKU(leaf)
		}
		return "", ErrUnknownIssuer
	}
}

// isProductIssuingCA reports whether issuer is one of Tesla's product
// issuing CAs, whose certificates carry their device type as an extended key
// usage.
func isProductIssuingCA(issuer string) bool {
	switch issuer {
	case "Tesla Motors Product Issuing CA",
		"Tesla Motors Product RSA Issuing CA",
		"Tesla Motors GF0 Product Issuing CA",
		"Tesla Motors GF3 Product Issuing CA",
		"Tesla Motors GF3 Product RSA Issuing CA",
		"Tesla Motors GF Austin Product Issuing CA",
		"Tesla Motors GF Berlin Product Issuing CA",
		"Tesla Energy Product Issuing CA",
		"Tesla Energy GF0 Product Issuing CA",
		"Tesla Product Access Issuing CA",
		"Tesla China Product Access Issuing CA",
		"Tesla GF0 Product Access Issuing CA",
		"Tesla GF3 Product Access Issuing CA",
		"Tesla GF Austin Product Access Issuing CA",
		"Tesla GF Berlin Product Access Issuing CA":
		return true
	}
	return false
}

// teslaDeviceArc is the OID arc under which Tesla names device types in
// extended key usage: <arc>.<environment>.<kind>, environment 4 for
// engineering and 5 for production certificates.
var teslaDeviceArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2}

// deviceTypeFromEKU returns the device type named by the first Tesla device
// OID among the leaf's extended key usages. A Wi-Fi EAP certificate met
// before that excludes the leaf. Some devices sharing a kind are told apart
// by their organisational unit.
func deviceTypeFromEKU(leaf *x509.Certificate) (string, error) {
	for _, oid := range leaf.UnknownExtKeyUsage {
		if !hasPrefix(oid, teslaDeviceArc) {
			continue
		}
		rest := oid[len(teslaDeviceArc):]
		// Wi-Fi EAP certificates: production vehicle kind, sub-kind 1.
		if len(rest) == 3 && rest[0] == 5 && rest[1] == 1 && rest[2] == 1 {
			return "", ErrExcludedCertificate
		}
		if len(rest) != 2 || (rest[0] != 4 && rest[0] != 5) {
			continue
		}
		deviceType := deviceKind(rest[1])
		if deviceType == "" {
			continue
		}
		for _, ou := range leaf.Subject.OrganizationalUnit {
			switch ou {
			case "Solar Inverter":
				return "solar_inverter_device", nil
			case "Gen3 Wall Connector":
				return "wall_connector_device", nil
			}
		}
		return deviceType, nil
	}
	return "", ErrUnknownDeviceType
}

// deviceKind maps the last arc of a Tesla device OID to its device type, or
// "" when the kind is unknown.
func deviceKind(kind int) string {
	switch kind {
	case 1:
		return DeviceTypeVehicle
	case 2:
		return "energy_device"
	case 11:
		return "vehicle_board_device"
	case 12:
		return "das_device"
	case 14:
		return "vehicle_service"
	case 15:
		return "das_service"
	case 16:
		return "energy_service"
	case 28:
		return "robotics_device"
	}
	return ""
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) >= len(prefix) && oid[:len(prefix)].Equal(prefix)
}
