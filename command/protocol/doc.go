// Package protocol implements the wire format and cryptography of Tesla's
// Vehicle Command Protocol (teslamotors/vehicle-command,
// pkg/protocol/protocol.md) as fleet2mqtt uses it over the Fleet API:
//
//   - Key agreement: ECDH on P-256 between the application key (the one the
//     owner paired as a virtual key) and a vehicle domain's key,
//     K = SHA1(shared x)[:16] (SharedKey).
//   - Handshake: Session.HandshakeRequest sends our public key with a random
//     16-byte uuid as the challenge; Session.Update accepts the domain's
//     session info only if its HMAC tag (key HMAC-SHA256(K, "session info"),
//     over the metadata {HMAC, VIN, challenge} and the encoded session info)
//     verifies. It tracks the domain's epoch, clock offset and counter, never
//     rolls the counter back within an epoch and refuses session info older
//     than one already accepted.
//   - Commands: Session.Sign wraps an application payload in a
//     RoutableMessage authenticated with HMAC-SHA256 personalized signing
//     (K' = HMAC-SHA256(K, "authenticated command"), tag over the serialized
//     metadata and the payload), the next counter, an expiry DefaultTTL ahead
//     on the domain's clock and FLAG_ENCRYPT_RESPONSE.
//   - Responses: Request.Open decrypts an encrypted answer with AES-GCM
//     under K, its associated data being SHA256 of the response metadata
//     (request hash, counter, flags, fault), and refuses a counter already
//     seen for that request. Firmware older than 2024.38 answers in
//     plaintext, which the protocol allows; Response.Encrypted says which.
//   - Faults: a protocol-layer refusal is a *FaultError, named in words;
//     FaultRecovery says whether to refresh the session and retry once
//     (INCORRECT_EPOCH, TIME_EXPIRED, INVALID_TOKEN_OR_COUNTER,
//     INVALID_SIGNATURE), back off and retry (BUSY, TIMEOUT, INTERNAL), or
//     give up (everything else, e.g. UNKNOWN_KEY_ID: the key is not paired
//     with this car).
//
// A Session's State holds nothing secret (K is derived again from the
// private key), so the command engine may cache it on disk and resume
// without a handshake.
//
// The messages are fleet2mqtt's own wire-compatible schemas in ./pb. The
// car's half of the protocol, for tests and the fake Fleet API, is in
// ./vehicle.
//
// The tests check protocol.md's published vectors (key agreement,
// session-info key and tag, metadata encoding, the AES-GCM example) and
// vectors computed independently with OpenSSL and Python's cryptography for
// the command tag and an encrypted response, plus tamper and replay cases
// against ./vehicle.
package protocol
