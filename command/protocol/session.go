package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
)

// EpochSize is the length of a domain's epoch identifier.
const EpochSize = 16

// DefaultTTL is how long a signed command stays valid on the vehicle's
// clock. Short, so that a delayed or captured command cannot be replayed
// later; long enough for the Fleet API round trip.
const DefaultTTL = 15 * time.Second

var (
	// ErrUnauthenticatedSessionInfo: the session info's tag does not match
	// the challenge we sent. Such a message is discarded.
	ErrUnauthenticatedSessionInfo = errors.New("the vehicle's session info is not authenticated for our request (tag mismatch); discarded")
	// ErrNoSession: Sign was called before a session was established.
	ErrNoSession = errors.New("no session with this vehicle domain yet: send a session info request first")
	// ErrKeyNotPaired: the domain answered the handshake, but our key is not
	// on its keychain.
	ErrKeyNotPaired = errors.New("the key is not paired with this car; " + PairingHint)
	// ErrReplayedResponse: a response counter was seen before for the same
	// request.
	ErrReplayedResponse = errors.New("the vehicle's response repeats a counter already seen for this request (replay); discarded")
)

// Session is the client side of the protocol for one VIN and one domain:
// the key agreement, the domain's epoch, clock and anti-replay counter.
// A Session is not safe for concurrent use; the command engine serializes
// the commands of one car and domain (VCSEC requires in-order counters
// anyway).
type Session struct {
	vin    string
	domain Domain
	priv   *ecdh.PrivateKey
	public []byte // ENCODE_PUBLIC(C)

	established bool
	vehicleKey  []byte // ENCODE_PUBLIC(V) of the domain
	k           []byte // K
	commandKey  []byte // K'
	epoch       []byte
	counter     uint32
	clockZero   time.Time // local time at which the domain's clock read 0
	lastClock   uint32    // newest authenticated clock_time in this epoch
}

// NewSession returns a session without a handshake yet. priv is the
// application's P-256 key (the one the owner paired).
func NewSession(priv *ecdh.PrivateKey, vin string, domain Domain) (*Session, error) {
	if priv == nil || priv.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("the command key must be a P-256 private key")
	}
	if len(vin) == 0 || len(vin) > 255 {
		return nil, fmt.Errorf("invalid VIN %q", vin)
	}
	return &Session{vin: vin, domain: domain, priv: priv, public: priv.PublicKey().Bytes()}, nil
}

// VIN returns the session's vehicle.
func (s *Session) VIN() string { return s.vin }

// Domain returns the session's domain.
func (s *Session) Domain() Domain { return s.domain }

// Established reports whether the session can sign commands.
func (s *Session) Established() bool { return s.established }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on supported platforms
	}
	return b
}

// HandshakeRequest returns a session info request carrying our public key.
// Its uuid, 16 random bytes, is the challenge the vehicle must bind its
// answer to: pass the answer and this request to Update.
func (s *Session) HandshakeRequest() *universalmessage.RoutableMessage {
	return &universalmessage.RoutableMessage{
		ToDestination: &universalmessage.Destination{
			SubDestination: &universalmessage.Destination_Domain{Domain: s.domain},
		},
		FromDestination: &universalmessage.Destination{
			SubDestination: &universalmessage.Destination_RoutingAddress{RoutingAddress: randomBytes(16)},
		},
		Payload: &universalmessage.RoutableMessage_SessionInfoRequest{
			SessionInfoRequest: &universalmessage.SessionInfoRequest{PublicKey: s.public},
		},
		Uuid: randomBytes(16),
	}
}

// Update applies the session info in resp, which answers request (a
// handshake request or a signed command whose response carries fresh
// session info after a fault). The session info is used only if its HMAC
// tag verifies against request's uuid; the counter never goes back within
// an epoch, and session info older than the last accepted one in the same
// epoch is refused.
func (s *Session) Update(resp, request *universalmessage.RoutableMessage, now time.Time) error {
	encoded := resp.GetSessionInfo()
	if encoded == nil {
		return fmt.Errorf("the vehicle's answer carries no session info")
	}
	tag := resp.GetSignatureData().GetSessionInfoTag().GetTag()
	if tag == nil {
		return ErrUnauthenticatedSessionInfo
	}
	return s.apply(encoded, tag, request.GetUuid(), now)
}

func (s *Session) apply(encoded, tag, challenge []byte, now time.Time) error {
	var info signatures.SessionInfo
	if err := proto.Unmarshal(encoded, &info); err != nil {
		return fmt.Errorf("the vehicle's session info does not decode: %w", err)
	}
	k, err := SharedKey(s.priv, info.GetPublicKey())
	if err != nil {
		return err
	}
	want, err := SessionInfoTag(k, s.vin, challenge, encoded)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, tag) {
		return ErrUnauthenticatedSessionInfo
	}
	if info.GetStatus() == signatures.Session_Info_Status_SESSION_INFO_STATUS_KEY_NOT_ON_WHITELIST {
		return ErrKeyNotPaired
	}
	if len(info.GetEpoch()) != EpochSize {
		return fmt.Errorf("the vehicle's session info has a %d-byte epoch; want %d", len(info.GetEpoch()), EpochSize)
	}
	sameEpoch := s.established && bytes.Equal(info.GetEpoch(), s.epoch)
	if sameEpoch && info.GetClockTime() < s.lastClock {
		return fmt.Errorf("the vehicle's session info is older (clock %d) than one already accepted (clock %d); discarded", info.GetClockTime(), s.lastClock)
	}
	if !sameEpoch || info.GetCounter() > s.counter {
		s.counter = info.GetCounter()
	}
	s.vehicleKey = bytes.Clone(info.GetPublicKey())
	s.k = k
	s.commandKey = CommandKey(k)
	s.epoch = bytes.Clone(info.GetEpoch())
	s.lastClock = info.GetClockTime()
	s.clockZero = now.Add(-time.Duration(info.GetClockTime()) * time.Second)
	s.established = true
	return nil
}

// clock returns the domain's clock at local time now, in seconds.
func (s *Session) clock(now time.Time) uint32 {
	d := now.Sub(s.clockZero)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}

// Request is one signed command in flight: the message to send and what
// is needed to check and decrypt its response.
type Request struct {
	Message *universalmessage.RoutableMessage

	vin         string
	domain      Domain
	k           []byte
	routing     []byte
	requestHash []byte
	seen        []uint32 // response counters already accepted for this request
}

// Sign wraps payload (an encoded carserver.Action for infotainment or
// vcsec.UnsignedMessage for vehicle security) in a RoutableMessage
// authenticated with HMAC-SHA256 personalized signing: the next counter, an
// expiry ttl ahead on the domain's clock, and FLAG_ENCRYPT_RESPONSE.
func (s *Session) Sign(payload []byte, now time.Time, ttl time.Duration) (*Request, error) {
	if !s.established {
		return nil, ErrNoSession
	}
	if s.counter == ^uint32(0) {
		return nil, fmt.Errorf("the session's counter is exhausted; a new handshake is needed")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	s.counter++
	fields := CommandFields{
		Domain:    s.domain,
		VIN:       s.vin,
		Epoch:     s.epoch,
		ExpiresAt: s.clock(now) + uint32((ttl+time.Second-1)/time.Second),
		Counter:   s.counter,
		Flags:     FlagEncryptResponse,
	}
	tag, err := CommandTag(s.commandKey, fields, payload)
	if err != nil {
		return nil, err
	}
	routing := randomBytes(16)
	msg := &universalmessage.RoutableMessage{
		ToDestination: &universalmessage.Destination{
			SubDestination: &universalmessage.Destination_Domain{Domain: s.domain},
		},
		FromDestination: &universalmessage.Destination{
			SubDestination: &universalmessage.Destination_RoutingAddress{RoutingAddress: routing},
		},
		Payload: &universalmessage.RoutableMessage_ProtobufMessageAsBytes{ProtobufMessageAsBytes: payload},
		SubSigData: &universalmessage.RoutableMessage_SignatureData{SignatureData: &signatures.SignatureData{
			SignerIdentity: &signatures.KeyIdentity{IdentityType: &signatures.KeyIdentity_PublicKey{PublicKey: s.public}},
			SigType: &signatures.SignatureData_HMAC_PersonalizedData{HMAC_PersonalizedData: &signatures.HMAC_Personalized_Signature_Data{
				Epoch:     s.epoch,
				Counter:   fields.Counter,
				ExpiresAt: fields.ExpiresAt,
				Tag:       tag,
			}},
		}},
		Uuid:  randomBytes(16),
		Flags: fields.Flags,
	}
	return &Request{
		Message:     msg,
		vin:         s.vin,
		domain:      s.domain,
		k:           s.k,
		routing:     routing,
		requestHash: RequestHash(s.domain, signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED, tag),
	}, nil
}

// Response is the checked answer to a Request.
type Response struct {
	// Payload is the application-layer answer: a carserver.Response from
	// infotainment or a vcsec.FromVCSECMessage from vehicle security.
	Payload []byte
	// Encrypted reports whether the answer was encrypted and authenticated.
	// Firmware before 2024.38 ignores FLAG_ENCRYPT_RESPONSE and answers in
	// plaintext, which the protocol allows.
	Encrypted bool
}

// Open checks resp as the answer to r. A protocol-layer fault is returned
// as *FaultError. An encrypted answer is decrypted with AES-GCM under K,
// with the response metadata (request hash, counter, flags, fault) as
// associated data, and its counter must not repeat one already accepted for
// this request.
func (r *Request) Open(resp *universalmessage.RoutableMessage) (*Response, error) {
	if d, ok := resp.GetFromDestination().GetSubDestination().(*universalmessage.Destination_Domain); !ok || d.Domain != r.domain {
		return nil, fmt.Errorf("the response does not come from %s", DomainName(r.domain))
	}
	if addr := resp.GetToDestination().GetRoutingAddress(); addr != nil && !bytes.Equal(addr, r.routing) {
		return nil, fmt.Errorf("the response is addressed to another request")
	}
	fault := resp.GetSignedMessageStatus().GetSignedMessageFault()
	gcmData := resp.GetSignatureData().GetAES_GCM_ResponseData()
	if gcmData == nil {
		if fault != universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NONE {
			return nil, &FaultError{Domain: r.domain, Fault: fault, Response: resp}
		}
		return &Response{Payload: resp.GetProtobufMessageAsBytes()}, nil
	}
	for _, c := range r.seen {
		if c == gcmData.GetCounter() {
			return nil, ErrReplayedResponse
		}
	}
	aad, err := ResponseFields{
		Domain:      r.domain,
		VIN:         r.vin,
		Counter:     gcmData.GetCounter(),
		Flags:       resp.GetFlags(),
		RequestHash: r.requestHash,
		Fault:       fault,
	}.AAD()
	if err != nil {
		return nil, err
	}
	plaintext, err := openGCM(r.k, gcmData.GetNonce(), resp.GetProtobufMessageAsBytes(), gcmData.GetTag(), aad)
	if err != nil {
		return nil, fmt.Errorf("the vehicle's encrypted response does not authenticate: %w", err)
	}
	r.seen = append(r.seen, gcmData.GetCounter())
	if fault != universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_NONE {
		return nil, &FaultError{Domain: r.domain, Fault: fault, Response: resp}
	}
	return &Response{Payload: plaintext, Encrypted: true}, nil
}

// openGCM decrypts ciphertext‖tag with AES-128-GCM and a 12-byte nonce.
func openGCM(k, nonce, ciphertext, tag, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(nonce) != gcm.NonceSize() || len(tag) != gcm.Overhead() {
		return nil, fmt.Errorf("nonce of %d bytes or tag of %d bytes; want %d and %d", len(nonce), len(tag), gcm.NonceSize(), gcm.Overhead())
	}
	sealed := make([]byte, 0, len(ciphertext)+len(tag))
	sealed = append(append(sealed, ciphertext...), tag...)
	return gcm.Open(nil, nonce, sealed, aad)
}

// SealGCM encrypts plaintext with AES-128-GCM under k and a fresh random
// nonce, returning nonce, ciphertext and tag separately as the protocol
// carries them. The vehicle side uses it to encrypt responses.
func SealGCM(k, plaintext, aad []byte) (nonce, ciphertext, tag []byte, err error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, nil, nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, nil, err
	}
	nonce = randomBytes(gcm.NonceSize())
	sealed := gcm.Seal(nil, nonce, plaintext, aad)
	n := len(sealed) - gcm.Overhead()
	return nonce, sealed[:n], sealed[n:], nil
}

// OpenGCM is openGCM for the vehicle side and tests.
func OpenGCM(k, nonce, ciphertext, tag, aad []byte) ([]byte, error) {
	return openGCM(k, nonce, ciphertext, tag, aad)
}
