package protocol

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
)

// Domain is a vehicle subsystem with its own keys, clock and counters.
type Domain = universalmessage.Domain

// The two domains fleet2mqtt commands.
const (
	// DomainVehicleSecurity (VCSEC) handles locks, trunks and waking.
	DomainVehicleSecurity = universalmessage.Domain_DOMAIN_VEHICLE_SECURITY
	// DomainInfotainment handles every other command.
	DomainInfotainment = universalmessage.Domain_DOMAIN_INFOTAINMENT
)

// FlagEncryptResponse is the RoutableMessage.flags bit asking the vehicle to
// encrypt its response (firmware 2024.38 and later; older firmware ignores it).
const FlagEncryptResponse = uint32(1) << universalmessage.Flags_FLAG_ENCRYPT_RESPONSE

// CommandKey derives the HMAC key of personalized command authentication,
// K' = HMAC-SHA256(K, "authenticated command").
func CommandKey(k []byte) []byte { return deriveKey(k, labelCommand) }

// CommandFields are the values a personalized command's metadata binds the
// payload to.
type CommandFields struct {
	Domain    Domain
	VIN       string
	Epoch     []byte // 16 bytes, from the domain's session info
	ExpiresAt uint32 // seconds on the domain's clock
	Counter   uint32
	Flags     uint32 // included in the metadata only when non-zero
}

// Metadata serializes f for the given signature type (protocol.md,
// "Authorizing commands").
func (f CommandFields) Metadata(sigType signatures.SignatureType) ([]byte, error) {
	var m Metadata
	steps := []func() error{
		func() error { return m.Add(signatures.Tag_TAG_SIGNATURE_TYPE, []byte{byte(sigType)}) },
		func() error { return m.Add(signatures.Tag_TAG_DOMAIN, []byte{byte(f.Domain)}) },
		func() error { return m.Add(signatures.Tag_TAG_PERSONALIZATION, []byte(f.VIN)) },
		func() error { return m.Add(signatures.Tag_TAG_EPOCH, f.Epoch) },
		func() error { return m.AddUint32(signatures.Tag_TAG_EXPIRES_AT, f.ExpiresAt) },
		func() error { return m.AddUint32(signatures.Tag_TAG_COUNTER, f.Counter) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if f.Flags != 0 {
		if err := m.AddUint32(signatures.Tag_TAG_FLAGS, f.Flags); err != nil {
			return nil, err
		}
	}
	return m.Encode(), nil
}

// CommandTag returns the HMAC-SHA256 personalized tag of a command:
// HMAC-SHA256(K', M ‖ P) where K' is CommandKey(K), M the serialized
// metadata of f and P the payload exactly as sent.
func CommandTag(commandKey []byte, f CommandFields, payload []byte) ([]byte, error) {
	m, err := f.Metadata(signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, commandKey)
	mac.Write(m)
	mac.Write(payload)
	return mac.Sum(nil), nil
}

// RequestHash identifies a request inside its encrypted response: the
// request's signature type followed by its authentication tag, truncated
// to 17 bytes for the vehicle security domain.
func RequestHash(domain Domain, sigType signatures.SignatureType, tag []byte) []byte {
	if domain == DomainVehicleSecurity && len(tag) > 16 {
		tag = tag[:16]
	}
	return append([]byte{byte(sigType)}, tag...)
}

// ResponseFields are the values an encrypted response's metadata binds its
// payload to.
type ResponseFields struct {
	Domain      Domain // the responding domain (the response's from_destination)
	VIN         string
	Counter     uint32 // AES_GCM_Response_data.counter
	Flags       uint32 // the response's flags, always included
	RequestHash []byte
	Fault       universalmessage.MessageFault_E
}

// AAD returns the associated data of an encrypted response:
// SHA256 of the serialized response metadata.
func (f ResponseFields) AAD() ([]byte, error) {
	var m Metadata
	steps := []func() error{
		func() error {
			return m.Add(signatures.Tag_TAG_SIGNATURE_TYPE, []byte{byte(signatures.SignatureType_SIGNATURE_TYPE_AES_GCM_RESPONSE)})
		},
		func() error { return m.Add(signatures.Tag_TAG_DOMAIN, []byte{byte(f.Domain)}) },
		func() error { return m.Add(signatures.Tag_TAG_PERSONALIZATION, []byte(f.VIN)) },
		func() error { return m.AddUint32(signatures.Tag_TAG_COUNTER, f.Counter) },
		func() error { return m.AddUint32(signatures.Tag_TAG_FLAGS, f.Flags) },
		func() error { return m.Add(signatures.Tag_TAG_REQUEST_HASH, f.RequestHash) },
		func() error { return m.AddUint32(signatures.Tag_TAG_FAULT, uint32(f.Fault)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(m.Encode())
	return sum[:], nil
}
