package fleetapi

import (
	"crypto/subtle"
	"math/big"
)

// This file is the only place that uses the generic point arithmetic of
// crypto/elliptic (Curve.ScalarMult, ScalarBaseMult and Add), deprecated as
// a "low-level unsafe API" but still supported under the Go 1 promise.
//
// Why: verifying a Schnorr signature needs c·P + r·G, a sum of two points,
// and the standard library exposes point addition nowhere else. crypto/ecdh
// only multiplies (and returns just the x coordinate of a shared secret),
// crypto/ecdsa keeps its arithmetic internal, and crypto/internal/... cannot
// be imported. A third-party curve package (filippo.io/nistec) is not a
// dependency of this module. Since Go 1.19, elliptic.P256() is backed by the
// same constant-time nistec code as crypto/ecdsa, so the results are
// trustworthy; the API is unsafe only in that it panics on points that are
// not on the curve, which Verify rules out before calling in here.
//
// Only public values (the public key, the signature, the challenge) pass
// through here; signing never does (it uses crypto/ecdh for k·G).

// schnorrEquationHolds reports whether c·P + r·G equals V. pub and v are
// 65-byte uncompressed points already known to be on the curve; c and r are
// scalars in [0, n).
func schnorrEquationHolds(pub, v []byte, c, r *big.Int) bool {
	px := new(big.Int).SetBytes(pub[1 : 1+scalarSize])
	py := new(big.Int).SetBytes(pub[1+scalarSize:])
	cx, cy := p256.ScalarMult(px, py, c.FillBytes(make([]byte, scalarSize)))
	rx, ry := p256.ScalarBaseMult(r.FillBytes(make([]byte, scalarSize)))
	sx, sy := p256.Add(cx, cy, rx, ry)
	// The point at infinity comes back as (0, 0), which is never a valid V.
	got := make([]byte, 2*scalarSize)
	sx.FillBytes(got[:scalarSize])
	sy.FillBytes(got[scalarSize:])
	return subtle.ConstantTimeCompare(got, v[1:]) == 1
}
