package protocol

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
)

// SharedKeySize is the length of the session key K in bytes.
const SharedKeySize = 16

// Labels that personalize keys derived from K (protocol.md).
const (
	labelSessionInfo = "session info"
	labelCommand     = "authenticated command"
)

// SharedKey performs the protocol's key agreement: ECDH on NIST P-256
// between our private key and the peer's public key (given as the 65-byte
// uncompressed point), then K = SHA1(x coordinate of the shared point)[:16].
// The same K is the AES-128-GCM key of encrypted responses and the root of
// every HMAC key of the session.
func SharedKey(priv *ecdh.PrivateKey, peerPublic []byte) ([]byte, error) {
	if priv.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("key agreement needs a P-256 private key")
	}
	peer, err := ecdh.P256().NewPublicKey(peerPublic)
	if err != nil {
		return nil, fmt.Errorf("the vehicle's public key is not a valid P-256 point: %w", err)
	}
	x, err := priv.ECDH(peer) // crypto/ecdh returns the 32-byte big-endian x coordinate
	if err != nil {
		return nil, fmt.Errorf("key agreement: %w", err)
	}
	digest := sha1.Sum(x)
	return digest[:SharedKeySize], nil
}

// deriveKey returns HMAC-SHA256(K, label).
func deriveKey(k []byte, label string) []byte {
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// SessionInfoTag returns the HMAC-SHA256 tag with which a vehicle domain
// authenticates the session info it sends: the key is
// HMAC-SHA256(K, "session info") and the message is the serialized
// metadata {SIGNATURE_TYPE: HMAC, PERSONALIZATION: vin, CHALLENGE:
// challenge} followed by the session info exactly as encoded on the wire.
// The challenge is the uuid of the request the session info answers.
func SessionInfoTag(k []byte, vin string, challenge, encodedInfo []byte) ([]byte, error) {
	var m Metadata
	if err := m.Add(signatures.Tag_TAG_SIGNATURE_TYPE, []byte{byte(signatures.SignatureType_SIGNATURE_TYPE_HMAC)}); err != nil {
		return nil, err
	}
	if err := m.Add(signatures.Tag_TAG_PERSONALIZATION, []byte(vin)); err != nil {
		return nil, err
	}
	if err := m.Add(signatures.Tag_TAG_CHALLENGE, challenge); err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, deriveKey(k, labelSessionInfo))
	mac.Write(m.Encode())
	mac.Write(encodedInfo)
	return mac.Sum(nil), nil
}
