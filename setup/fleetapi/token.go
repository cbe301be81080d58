package fleetapi

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// SigningKey reads the private key that signs streaming configs from
// path. named means a person gave the file; when they did not (it is the
// setup page's key) and it does not exist, the error says how to make one.
func SigningKey(path string, named bool) (*ecdsa.PrivateKey, error) {
	key, err := LoadPrivateKey(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return nil, fmt.Errorf("no key at %s: give one with --key, or create it on the setup page (step: key pair)", path)
	}
	return key, err
}

// CheckAndSignClaims checks the raw claims of a streaming config as a
// person wrote them (CheckClaims) and signs them (SignTelemetryClaims):
// problems do not stop the signing, the caller decides; claims that are
// not a JSON object, or a key that cannot sign, do.
func CheckAndSignClaims(key *ecdsa.PrivateKey, claims []byte, now time.Time) (token string, problems []string, err error) {
	if problems, err = CheckClaims(claims, now); err != nil {
		return "", nil, err
	}
	token, err = SignTelemetryClaims(key, claims)
	return token, problems, err
}

// VerifyingKey returns the key a signed streaming config is checked
// against: the public key in path when public, else the public half of
// the private key in path. A private key file that does not exist gives
// no key and no error unless required (a person named the file): the
// token is then checked against the key its iss names.
func VerifyingKey(path string, public, required bool) (*ecdsa.PublicKey, error) {
	if public {
		return LoadPublicKey(path)
	}
	key, err := LoadPrivateKey(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &key.PublicKey, nil
}

// A TokenVerdict is what checking a signed streaming config found, in the
// words a person reads.
type TokenVerdict struct {
	// Claims are the token's claims indented for reading, ending in a
	// newline; nil when the signature does not verify.
	Claims []byte
	// Findings are the signature's verdict, then each problem of the
	// config, or that it has none.
	Findings []string
	// OK means the signature verifies and the config has no problem.
	OK bool
}

// VerifyTelemetryToken checks a signed streaming config as Tesla and the
// car would: its signature (VerifyJWS) with pub, which came from the file
// keySource (nil: the key the token's iss names), then its claims
// (CheckSignedClaims).
func VerifyTelemetryToken(token string, pub *ecdsa.PublicKey, keySource string, now time.Time) TokenVerdict {
	var v TokenVerdict
	say := func(format string, args ...any) { v.Findings = append(v.Findings, fmt.Sprintf(format, args...)) }
	claims, err := VerifyJWS(token, pub)
	if err != nil {
		if errors.Is(err, ErrInvalidSignature) && pub != nil {
			say("the signature does not verify with the key in %s: %v", keySource, err)
		} else {
			say("%v", err)
		}
		return v
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, claims, "", "  ") == nil {
		pretty.WriteByte('\n')
		v.Claims = pretty.Bytes()
	}
	if pub != nil {
		say("the signature is valid: signed with the key in %s", keySource)
	} else {
		say("the signature is valid for the key named in iss (no key of ours to compare it with: give --key or --pub)")
	}
	problems, err := CheckSignedClaims(claims, now)
	for _, p := range problems {
		say("problem: %s", p)
	}
	switch {
	case err != nil:
		say("problem: %v", err)
	case len(problems) == 0:
		say("the config is one Tesla and the car accept")
		v.OK = true
	}
	return v
}
