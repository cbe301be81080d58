// Package vehicle is the car's half of the Vehicle Command Protocol, for
// tests and the fake Fleet API: each Domain answers session info requests
// with authenticated session info and verifies signed commands exactly as
// protocol.md describes a vehicle does (known key, epoch, HMAC-SHA256
// personalized tag, expiry, anti-replay counter), hands verified payloads
// to an Executor and encrypts the answer when the request asks for it.
//
// It is a faithful verifier, not a car: what a command does is up to the
// Executor.
package vehicle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
)

// MaxTTL is the furthest in the future a command may expire; later
// expiries are refused with TIME_TO_LIVE_TOO_LONG.
const MaxTTL = 5 * time.Minute

// windowSize is how far out of order infotainment accepts counters.
const windowSize = 32

// Executor carries out a verified command payload and returns the
// application-layer answer (an encoded carserver.Response or
// vcsec.FromVCSECMessage). An error means the payload did not decode and
// is answered with a DECODING fault.
type Executor interface {
	Execute(domain protocol.Domain, payload []byte) ([]byte, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(domain protocol.Domain, payload []byte) ([]byte, error)

// Execute calls f.
func (f ExecutorFunc) Execute(domain protocol.Domain, payload []byte) ([]byte, error) {
	return f(domain, payload)
}

// Domain is one vehicle subsystem: its key pair, epoch, clock and the
// counters of every client key it knows. It is safe for concurrent use.
type Domain struct {
	vin    string
	domain protocol.Domain
	priv   *ecdh.PrivateKey
	now    func() time.Time

	mu        sync.Mutex
	epoch     []byte
	clockZero time.Time
	keys      map[string]*client // by ENCODE_PUBLIC of the client key
	respCount uint32
}

type client struct {
	commandKey []byte
	k          []byte
	counter    uint32 // highest counter accepted
	window     uint64 // bit i set: counter-i-1 was accepted (infotainment)
}

// NewDomain returns a domain of the car vin with a fresh key pair and
// epoch. now is the domain's time source (time.Now when nil).
func NewDomain(vin string, domain protocol.Domain, now func() time.Time) (*Domain, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewDomainWithKey(vin, domain, priv, now), nil
}

// NewDomainWithKey is NewDomain with a given key pair (for test vectors).
func NewDomainWithKey(vin string, domain protocol.Domain, priv *ecdh.PrivateKey, now func() time.Time) *Domain {
	if now == nil {
		now = time.Now
	}
	d := &Domain{vin: vin, domain: domain, priv: priv, now: now, keys: map[string]*client{}}
	d.rebootLocked()
	return d
}

// Pair adds a client public key (65-byte uncompressed point) to the
// domain's keychain, as pairing a virtual key does.
func (d *Domain) Pair(clientPublic []byte) error {
	k, err := protocol.SharedKey(d.priv, clientPublic)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys[string(clientPublic)] = &client{k: k, commandKey: protocol.CommandKey(k)}
	return nil
}

// Reboot starts a new epoch with the clock at zero, as a domain does when
// it restarts. Clients' sessions become stale.
func (d *Domain) Reboot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rebootLocked()
}

func (d *Domain) rebootLocked() {
	d.epoch = make([]byte, protocol.EpochSize)
	if _, err := rand.Read(d.epoch); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	d.clockZero = d.now()
	for _, c := range d.keys {
		c.counter, c.window = 0, 0
	}
}

// PublicKey returns ENCODE_PUBLIC of the domain's key.
func (d *Domain) PublicKey() []byte { return d.priv.PublicKey().Bytes() }

func (d *Domain) clockLocked() uint32 {
	return uint32(d.now().Sub(d.clockZero) / time.Second)
}

// Handle answers one request. It never fails: every problem is answered
// with the fault a vehicle would send.
func (d *Domain) Handle(req *universalmessage.RoutableMessage, exec Executor) *universalmessage.RoutableMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	resp := &universalmessage.RoutableMessage{
		ToDestination: req.GetFromDestination(),
		FromDestination: &universalmessage.Destination{
			SubDestination: &universalmessage.Destination_Domain{Domain: d.domain},
		},
		RequestUuid: req.GetUuid(),
	}
	if req.GetToDestination().GetDomain() != d.domain {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_DOMAINS)
	}
	switch p := req.GetPayload().(type) {
	case *universalmessage.RoutableMessage_SessionInfoRequest:
		c, ok := d.keys[string(p.SessionInfoRequest.GetPublicKey())]
		if !ok {
			return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID)
		}
		d.attachSessionInfoLocked(resp, c, req.GetUuid())
		return resp
	case *universalmessage.RoutableMessage_ProtobufMessageAsBytes:
		return d.command(req, resp, p.ProtobufMessageAsBytes, exec)
	}
	return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_DECODING)
}

func fault(resp *universalmessage.RoutableMessage, f protocol.Fault) *universalmessage.RoutableMessage {
	resp.SignedMessageStatus = &universalmessage.MessageStatus{
		OperationStatus:    universalmessage.OperationStatus_E_OPERATIONSTATUS_ERROR,
		SignedMessageFault: f,
	}
	return resp
}

// attachSessionInfoLocked puts the domain's session info for client c into
// resp, tagged with the challenge.
func (d *Domain) attachSessionInfoLocked(resp *universalmessage.RoutableMessage, c *client, challenge []byte) {
	info, err := proto.Marshal(&signatures.SessionInfo{
		Counter:   c.counter,
		PublicKey: d.PublicKey(),
		Epoch:     d.epoch,
		ClockTime: d.clockLocked(),
	})
	if err != nil {
		panic("encoding session info: " + err.Error()) // cannot fail for this message
	}
	tag, err := protocol.SessionInfoTag(c.k, d.vin, challenge, info)
	if err != nil {
		panic("session info tag: " + err.Error()) // VIN and challenge are bounded
	}
	resp.Payload = &universalmessage.RoutableMessage_SessionInfo{SessionInfo: info}
	resp.SubSigData = &universalmessage.RoutableMessage_SignatureData{SignatureData: &signatures.SignatureData{
		SigType: &signatures.SignatureData_SessionInfoTag{SessionInfoTag: &signatures.HMAC_Signature_Data{Tag: tag}},
	}}
}

// syncFault answers with a fault and the session info the client needs to
// recover.
func (d *Domain) syncFault(req, resp *universalmessage.RoutableMessage, c *client, f protocol.Fault) *universalmessage.RoutableMessage {
	fault(resp, f)
	d.attachSessionInfoLocked(resp, c, req.GetUuid())
	return resp
}

func (d *Domain) command(req, resp *universalmessage.RoutableMessage, payload []byte, exec Executor) *universalmessage.RoutableMessage {
	sig := req.GetSignatureData()
	c, ok := d.keys[string(sig.GetSignerIdentity().GetPublicKey())]
	if !ok {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID)
	}
	hm := sig.GetHMAC_PersonalizedData()
	if hm == nil {
		// Fleet API carries only HMAC-personalized commands.
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_BAD_PARAMETER)
	}
	if hm.GetEpoch() != nil && !bytes.Equal(hm.GetEpoch(), d.epoch) {
		return d.syncFault(req, resp, c, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INCORRECT_EPOCH)
	}
	fields := protocol.CommandFields{
		Domain:    d.domain,
		VIN:       d.vin,
		Epoch:     d.epoch,
		ExpiresAt: hm.GetExpiresAt(),
		Counter:   hm.GetCounter(),
		Flags:     req.GetFlags(),
	}
	want, err := protocol.CommandTag(c.commandKey, fields, payload)
	if err != nil || !hmac.Equal(want, hm.GetTag()) {
		return d.syncFault(req, resp, c, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_SIGNATURE)
	}
	clock := d.clockLocked()
	if hm.GetExpiresAt() < clock {
		return d.syncFault(req, resp, c, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_EXPIRED)
	}
	if hm.GetExpiresAt()-clock > uint32(MaxTTL/time.Second) {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_TO_LIVE_TOO_LONG)
	}
	if !d.acceptCounterLocked(c, hm.GetCounter()) {
		return d.syncFault(req, resp, c, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER)
	}
	answer, err := exec.Execute(d.domain, payload)
	if err != nil {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_DECODING)
	}
	if req.GetFlags()&protocol.FlagEncryptResponse == 0 {
		resp.Payload = &universalmessage.RoutableMessage_ProtobufMessageAsBytes{ProtobufMessageAsBytes: answer}
		return resp
	}
	d.respCount++
	resp.Flags = 0
	aad, err := protocol.ResponseFields{
		Domain:      d.domain,
		VIN:         d.vin,
		Counter:     d.respCount,
		Flags:       resp.Flags,
		RequestHash: protocol.RequestHash(d.domain, signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED, hm.GetTag()),
		Fault:       universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NONE,
	}.AAD()
	if err != nil {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INTERNAL)
	}
	nonce, ct, tag, err := protocol.SealGCM(c.k, answer, aad)
	if err != nil {
		return fault(resp, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INTERNAL)
	}
	resp.Payload = &universalmessage.RoutableMessage_ProtobufMessageAsBytes{ProtobufMessageAsBytes: ct}
	resp.SubSigData = &universalmessage.RoutableMessage_SignatureData{SignatureData: &signatures.SignatureData{
		SigType: &signatures.SignatureData_AES_GCM_ResponseData{AES_GCM_ResponseData: &signatures.AES_GCM_Response_Signature_Data{
			Nonce: nonce, Counter: d.respCount, Tag: tag,
		}},
	}}
	return resp
}

// acceptCounterLocked applies the anti-replay rule: vehicle security needs
// strictly increasing counters; infotainment also accepts a counter up to
// windowSize below the highest one if it has not been used.
func (d *Domain) acceptCounterLocked(c *client, counter uint32) bool {
	if counter > c.counter {
		shift := uint64(counter - c.counter)
		if shift >= 64 {
			c.window = 0
		} else {
			c.window = c.window<<shift | 1<<(shift-1)
		}
		c.counter = counter
		return true
	}
	if d.domain == protocol.DomainVehicleSecurity || counter == c.counter {
		return false
	}
	age := uint64(c.counter - counter) // ≥ 1
	if age > windowSize || c.window&(1<<(age-1)) != 0 {
		return false
	}
	c.window |= 1 << (age - 1)
	return true
}
