package fleetapi

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// Tesla.SS256 is the signature a car requires on a pushed streaming config:
// a Schnorr signature over NIST P-256 with SHA-256 (RFC 8235 style), with a
// deterministic nonce derived as in RFC 6979. It is not ES256, and no
// general JOSE library produces it, so fleet2mqtt carries its own.
//
// With x the private scalar, P = x·G the public point, m the signing input
// and n the group order:
//
//	d = SHA-256(m); k = RFC 6979 nonce from (x, d mod n); V = k·G
//	c = SHA-256(LV(G) ‖ LV(V) ‖ LV(P) ‖ LV(m)) mod n
//	r = (k − x·c) mod n
//	signature = V.x ‖ V.y ‖ r, 32 bytes each
//
// where LV is a 4-byte big-endian length followed by the bytes and points are
// 65-byte uncompressed encodings. A signature verifies when V = c·P + r·G.

const (
	// SignatureSize is the length of a Tesla.SS256 signature: V.x ‖ V.y ‖ r.
	SignatureSize = 96

	// SS256Algorithm is the JWS "alg" of a Tesla.SS256 token.
	SS256Algorithm = "Tesla.SS256"

	// TelemetryAudience is the "aud" claim of a signed streaming config.
	TelemetryAudience = "com.tesla.fleet.TelemetryClient"

	scalarSize = 32
	pointSize  = 1 + 2*scalarSize
)

// jwsHeader is the protected header of every Tesla.SS256 token, already in
// its base64url form: {"alg":"Tesla.SS256","typ":"JWT"}.
var jwsHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + SS256Algorithm + `","typ":"JWT"}`))

var (
	p256      = elliptic.P256()
	p256Order = p256.Params().N
	// p256Generator is G as a 65-byte uncompressed point; it opens every
	// challenge hash.
	p256Generator = func() []byte {
		g := make([]byte, pointSize)
		g[0] = 4
		p256.Params().Gx.FillBytes(g[1 : 1+scalarSize])
		p256.Params().Gy.FillBytes(g[1+scalarSize:])
		return g
	}()
)

// Sign returns the 96-byte Tesla.SS256 signature of signingInput. Signing is
// deterministic: the same key and input always give the same signature.
//
// The nonce point k·G is computed by crypto/ecdh in constant time. The
// scalar arithmetic r = k − x·c uses math/big, which is not constant time;
// that is acceptable here because signing happens rarely, on the user's own
// machine, with no one in a position to time it.
func Sign(key *ecdsa.PrivateKey, signingInput []byte) ([]byte, error) {
	x, pub, err := keyBytes(key)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(signingInput)
	k := deterministicNonce(x, digest)
	nonce, err := ecdh.P256().NewPrivateKey(k)
	if err != nil {
		// deterministicNonce only returns scalars in [1, n-1].
		return nil, fmt.Errorf("sign: nonce: %w", err)
	}
	v := nonce.PublicKey().Bytes()
	c := challenge(v, pub, signingInput)

	var r, xc big.Int
	xc.Mul(new(big.Int).SetBytes(x), c)
	r.Sub(new(big.Int).SetBytes(k), &xc)
	r.Mod(&r, p256Order)

	sig := make([]byte, SignatureSize)
	copy(sig, v[1:])
	r.FillBytes(sig[2*scalarSize:])
	return sig, nil
}

// Verify reports whether sig is a valid Tesla.SS256 signature of
// signingInput by pub. It never panics, whatever the input; a public key
// that is not a valid P-256 point verifies nothing.
func Verify(pub *ecdsa.PublicKey, signingInput, sig []byte) bool {
	if !isP256Public(pub) || len(sig) != SignatureSize {
		return false
	}
	pubBytes, err := pub.Bytes()
	if err != nil {
		return false
	}
	v := make([]byte, pointSize)
	v[0] = 4
	copy(v[1:], sig[:2*scalarSize])
	if _, err := ecdh.P256().NewPublicKey(v); err != nil {
		return false // V is not a point of the curve
	}
	r := new(big.Int).SetBytes(sig[2*scalarSize:])
	if r.Cmp(p256Order) >= 0 {
		return false // only canonical signatures, as Sign produces
	}
	c := challenge(v, pubBytes, signingInput)
	return schnorrEquationHolds(pubBytes, v, c, r)
}

// keyBytes returns the private scalar (32 bytes) and the uncompressed public
// point (65 bytes) of a P-256 key.
func keyBytes(key *ecdsa.PrivateKey) (scalar, pub []byte, err error) {
	if key == nil || key.D == nil || !isP256Public(&key.PublicKey) {
		return nil, nil, ErrNotP256
	}
	scalar, err = key.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("private key: %w", err)
	}
	pub, err = key.PublicKey.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("public key: %w", err)
	}
	return scalar, pub, nil
}

// isP256Public reports whether pub can be handed to crypto/ecdsa's methods,
// which panic on a key without coordinates.
func isP256Public(pub *ecdsa.PublicKey) bool {
	return pub != nil && pub.Curve == p256 && pub.X != nil && pub.Y != nil
}

// challenge is c = SHA-256(LV(G) ‖ LV(V) ‖ LV(P) ‖ LV(m)) reduced mod n.
func challenge(v, pub, message []byte) *big.Int {
	h := sha256.New()
	var length [4]byte
	for _, part := range [...][]byte{p256Generator, v, pub, message} {
		binary.BigEndian.PutUint32(length[:], uint32(len(part)))
		h.Write(length[:])
		h.Write(part)
	}
	c := new(big.Int).SetBytes(h.Sum(nil))
	return c.Mod(c, p256Order)
}

// deterministicNonce derives k from the private scalar x and the message
// digest as RFC 6979 section 3.2 does for P-256 with HMAC-SHA256. Because
// the digest and the order are both 256 bits long, every candidate T is a
// single HMAC output.
func deterministicNonce(x []byte, digest [sha256.Size]byte) []byte {
	// h1 = bits2octets(digest): the digest reduced mod n, 32 bytes.
	h1 := new(big.Int).SetBytes(digest[:])
	h1.Mod(h1, p256Order)
	h1Bytes := h1.FillBytes(make([]byte, scalarSize))

	k := make([]byte, sha256.Size)            // step c: K = 0x00…
	v := bytes.Repeat([]byte{1}, sha256.Size) // step b: V = 0x01…
	mac := func(key []byte, parts ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	k = mac(k, v, []byte{0}, x, h1Bytes) // step d
	v = mac(k, v)                        // step e
	k = mac(k, v, []byte{1}, x, h1Bytes) // step f
	v = mac(k, v)                        // step g
	candidate := new(big.Int)
	for {
		v = mac(k, v) // step h: T = V
		candidate.SetBytes(v)
		if candidate.Sign() > 0 && candidate.Cmp(p256Order) < 0 {
			return v
		}
		k = mac(k, v, []byte{0})
		v = mac(k, v)
	}
}

// SignTelemetryConfig validates nothing and signs cfg as the JWS token the
// fleet_telemetry_config_jws endpoint takes: the config's JSON object plus
// "iss" (our public key) and "aud" (TelemetryAudience). Call
// TelemetryConfig.Validate first; the token carries cfg exactly as given.
func SignTelemetryConfig(key *ecdsa.PrivateKey, cfg TelemetryConfig) (string, error) {
	claims, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	return SignTelemetryClaims(key, claims)
}

// SignTelemetryClaims signs a streaming config given as a JSON object, such
// as the file a user wrote by hand. Every claim reaches the token with its
// value unchanged (numbers keep their literal form); "iss" and "aud" are
// set, replacing any the object already had. The claims are serialized with
// keys in sorted order and no whitespace, so equal inputs give equal tokens.
func SignTelemetryClaims(key *ecdsa.PrivateKey, claimsJSON []byte) (string, error) {
	_, pub, err := keyBytes(key)
	if err != nil {
		return "", err
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(claimsJSON))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return "", fmt.Errorf("config is not a JSON object: %w", err)
	}
	if claims == nil {
		return "", fmt.Errorf("config is not a JSON object: null")
	}
	if dec.More() {
		return "", fmt.Errorf("config: unexpected data after the JSON object")
	}
	claims["iss"] = base64.StdEncoding.EncodeToString(pub)
	claims["aud"] = TelemetryAudience
	payload, err := canonicalJSON(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	return signJWS(key, payload)
}

// canonicalJSON encodes v compactly with object keys sorted (encoding/json
// sorts map keys) and without HTML escaping, as other implementations
// serialize.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// signJWS returns header.payload.signature for a claims payload.
func signJWS(key *ecdsa.PrivateKey, payload []byte) (string, error) {
	var b strings.Builder
	b.Grow(len(jwsHeader) + 2 + base64.RawURLEncoding.EncodedLen(len(payload)) + base64.RawURLEncoding.EncodedLen(SignatureSize))
	b.WriteString(jwsHeader)
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(payload))
	sig, err := Sign(key, []byte(b.String()))
	if err != nil {
		return "", err
	}
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(sig))
	return b.String(), nil
}

// VerifyJWS checks a Tesla.SS256 token: its header must be exactly
// {"alg":"Tesla.SS256","typ":"JWT"} (in any key order) and its signature
// must verify over "header.payload". The signer is pub when pub is not nil,
// and then the "iss" claim, if present, must name that same key; with a nil
// pub the signer is the key in the "iss" claim. VerifyJWS returns the
// claims (the decoded payload) and checks nothing else in them: "aud" and
// the rest are for the caller.
func VerifyJWS(token string, pub *ecdsa.PublicKey) (claims []byte, err error) {
	if pub != nil && !isP256Public(pub) {
		return nil, ErrNotP256
	}
	header, payload, sig, ok := splitJWS(token)
	if !ok {
		return nil, fmt.Errorf("%w: want three base64url segments", ErrMalformedJWS)
	}
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformedJWS, err)
	}
	if len(h) != 2 || h["alg"] != SS256Algorithm || h["typ"] != "JWT" {
		return nil, fmt.Errorf("%w: header %s is not {\"alg\":%q,\"typ\":\"JWT\"}", ErrMalformedJWS, header, SS256Algorithm)
	}
	// Claim names are case-sensitive: look "iss" up exactly (a struct
	// field would also match "ISS").
	var all map[string]json.RawMessage
	if err := json.Unmarshal(payload, &all); err != nil || all == nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformedJWS)
	}
	if rawIss, ok := all["iss"]; ok {
		var iss string
		if err := json.Unmarshal(rawIss, &iss); err != nil {
			return nil, fmt.Errorf("%w: iss is not a string", ErrMalformedJWS)
		}
		raw, err := base64.StdEncoding.DecodeString(iss)
		if err != nil {
			return nil, fmt.Errorf("%w: iss is not standard base64: %v", ErrMalformedJWS, err)
		}
		issKey, err := ecdsa.ParseUncompressedPublicKey(p256, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: iss is not a P-256 point: %v", ErrMalformedJWS, err)
		}
		if pub == nil {
			pub = issKey
		} else if !pub.Equal(issKey) {
			return nil, fmt.Errorf("%w: iss names another key than the one expected", ErrInvalidSignature)
		}
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: no key given and no iss claim", ErrMalformedJWS)
	}
	signingInput := token[:strings.LastIndexByte(token, '.')]
	if !Verify(pub, []byte(signingInput), sig) {
		return nil, ErrInvalidSignature
	}
	return payload, nil
}

// splitJWS decodes the three segments of a compact JWS.
func splitJWS(token string) (header, payload, sig []byte, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, nil, nil, false
	}
	var err error
	if header, err = base64.RawURLEncoding.DecodeString(h); err != nil {
		return nil, nil, nil, false
	}
	if payload, err = base64.RawURLEncoding.DecodeString(p); err != nil {
		return nil, nil, nil, false
	}
	if sig, err = base64.RawURLEncoding.DecodeString(s); err != nil {
		return nil, nil, nil, false
	}
	return header, payload, sig, true
}

// constantTimeEqual compares two secrets-derived strings without leaking
// where they differ.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
