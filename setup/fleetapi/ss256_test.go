package fleetapi

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// vectorsFile holds the Tesla.SS256 vectors; the first two are Tesla's own.
const vectorsFile = "../../testdata/tesla-ss256/vectors.json"

type ss256Vector struct {
	Name             string          `json:"name"`
	PrivateScalarHex string          `json:"private_scalar_hex"`
	MessageASCII     string          `json:"message_ascii"`
	SignatureHex     string          `json:"signature_hex"`
	Token            string          `json:"token"`
	Claims           json.RawMessage `json:"claims_before_signing"`
	AddedClaims      struct {
		Aud string `json:"aud"`
		Iss string `json:"iss"`
	} `json:"added_claims"`
}

func loadVectors(t testing.TB) map[string]ss256Vector {
	t.Helper()
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []ss256Vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]ss256Vector)
	for _, v := range file.Vectors {
		byName[v.Name] = v
	}
	for _, name := range []string{"schnorr_hello_world", "jwt_verify", "telemetry_config_jws"} {
		if _, ok := byName[name]; !ok {
			t.Fatalf("vector %q missing from %s", name, vectorsFile)
		}
	}
	return byName
}

func vectorKey(t testing.TB, scalarHex string) *ecdsa.PrivateKey {
	t.Helper()
	raw, err := hex.DecodeString(scalarHex)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.ParseRawPrivateKey(p256, raw)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSignVector(t *testing.T) {
	v := loadVectors(t)["schnorr_hello_world"]
	key := vectorKey(t, v.PrivateScalarHex)
	want, _ := hex.DecodeString(v.SignatureHex)

	sig, err := Sign(key, []byte(v.MessageASCII))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig, want) {
		t.Fatalf("signature\n got %x\nwant %x", sig, want)
	}
	if !Verify(&key.PublicKey, []byte(v.MessageASCII), want) {
		t.Fatal("Verify rejects the reference signature")
	}
	if Verify(&key.PublicKey, []byte("hello world!"), want) {
		t.Fatal("Verify accepts the signature for another message")
	}
}

func TestVerifyJWTVector(t *testing.T) {
	v := loadVectors(t)["jwt_verify"]
	claims, err := VerifyJWS(v.Token, nil)
	if err != nil {
		t.Fatalf("reference token: %v", err)
	}
	if !bytes.Contains(claims, []byte(`"foo":"bar"`)) {
		t.Fatalf("claims %s", claims)
	}

	// The key of the iss claim, given explicitly, verifies too.
	var iss struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(claims, &iss); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(iss.Iss)
	pub, err := ecdsa.ParseUncompressedPublicKey(p256, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyJWS(v.Token, pub); err != nil {
		t.Fatalf("with explicit key: %v", err)
	}
	// Another key does not.
	other, _ := GenerateKey()
	if _, err := VerifyJWS(v.Token, &other.PublicKey); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("with another key: %v, want ErrInvalidSignature", err)
	}

	// Flipping any bit of the payload or the signature breaks it.
	parts := strings.Split(v.Token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	signingInput := []byte(parts[0] + "." + parts[1])
	if !Verify(pub, signingInput, sig) {
		t.Fatal("Verify rejects the reference token")
	}
	for i := range len(payload) * 8 {
		p := bytes.Clone(payload)
		p[i/8] ^= 1 << (i % 8)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(p)
		if Verify(pub, []byte(tampered), sig) {
			t.Fatalf("payload bit %d flipped: still verifies", i)
		}
	}
	for i := range len(sig) * 8 {
		s := bytes.Clone(sig)
		s[i/8] ^= 1 << (i % 8)
		if Verify(pub, signingInput, s) {
			t.Fatalf("signature bit %d flipped: still verifies", i)
		}
		token := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(s)
		if _, err := VerifyJWS(token, pub); err == nil {
			t.Fatalf("signature bit %d flipped: VerifyJWS accepts", i)
		}
	}
}

func TestTelemetryConfigVector(t *testing.T) {
	v := loadVectors(t)["telemetry_config_jws"]
	key := vectorKey(t, v.PrivateScalarHex)

	// Through the typed config.
	var cfg TelemetryConfig
	dec := json.NewDecoder(bytes.NewReader(v.Claims))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	token, err := SignTelemetryConfig(key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if token != v.Token {
		t.Fatalf("token\n got %s\nwant %s", token, v.Token)
	}

	// Through the raw claims, as sign-config does, in any key order.
	token, err = SignTelemetryClaims(key, v.Claims)
	if err != nil {
		t.Fatal(err)
	}
	if token != v.Token {
		t.Fatalf("raw claims token\n got %s\nwant %s", token, v.Token)
	}

	claims, err := VerifyJWS(v.Token, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var added struct {
		Aud, Iss string
	}
	if err := json.Unmarshal(claims, &added); err != nil {
		t.Fatal(err)
	}
	if added.Aud != v.AddedClaims.Aud || added.Iss != v.AddedClaims.Iss {
		t.Fatalf("aud/iss = %q/%q, want %q/%q", added.Aud, added.Iss, v.AddedClaims.Aud, v.AddedClaims.Iss)
	}
}

func TestSignTelemetryClaimsKeepsValues(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// Numbers keep their literal form, unknown claims survive, a stale
	// iss/aud is replaced, and nothing is HTML-escaped.
	in := `{"port":443,"hostname":"a.example.com","fields":{"Soc":{"minimum_delta":0.10,"interval_seconds":60}},"prefer_typed":true,"exp":1893456000,"aud":"old","iss":"old","ca":"<&>"}`
	token, err := SignTelemetryClaims(key, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := VerifyJWS(token, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubBytes, _ := PublicKeyBytes(&key.PublicKey)
	want := `{"aud":"com.tesla.fleet.TelemetryClient","ca":"<&>","exp":1893456000,"fields":{"Soc":{"interval_seconds":60,"minimum_delta":0.10}},"hostname":"a.example.com","iss":"` +
		base64.StdEncoding.EncodeToString(pubBytes) + `","port":443,"prefer_typed":true}`
	if string(claims) != want {
		t.Fatalf("claims\n got %s\nwant %s", claims, want)
	}

	for _, bad := range []string{``, `null`, `[]`, `"x"`, `{"a":1} {}`, `{`} {
		if _, err := SignTelemetryClaims(key, []byte(bad)); err == nil {
			t.Errorf("SignTelemetryClaims(%q) succeeded", bad)
		}
	}
}

func TestSignRoundTrip(t *testing.T) {
	for range 20 {
		key, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("fleet2mqtt")
		sig, err := Sign(key, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != SignatureSize {
			t.Fatalf("signature is %d bytes", len(sig))
		}
		if !Verify(&key.PublicKey, msg, sig) {
			t.Fatal("fresh signature does not verify")
		}
		again, _ := Sign(key, msg)
		if !bytes.Equal(sig, again) {
			t.Fatal("signing is not deterministic")
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	key, _ := GenerateKey()
	msg := []byte("m")
	sig, _ := Sign(key, msg)
	order := p256Order.FillBytes(make([]byte, 32))

	nonCanonical := bytes.Clone(sig)
	// r + n overflows 32 bytes for most r; use r = n, which is ≥ n.
	copy(nonCanonical[64:], order)

	offCurve := bytes.Clone(sig)
	offCurve[0] ^= 1

	cases := []struct {
		name string
		pub  *ecdsa.PublicKey
		sig  []byte
	}{
		{"nil key", nil, sig},
		{"short", &key.PublicKey, sig[:95]},
		{"long", &key.PublicKey, append(bytes.Clone(sig), 0)},
		{"empty", &key.PublicKey, nil},
		{"r not below n", &key.PublicKey, nonCanonical},
		{"V off the curve", &key.PublicKey, offCurve},
		{"V at infinity", &key.PublicKey, append(make([]byte, 64), sig[64:]...)},
		{"invalid key", &ecdsa.PublicKey{Curve: p256}, sig},
	}
	for _, tc := range cases {
		if Verify(tc.pub, msg, tc.sig) {
			t.Errorf("%s: verifies", tc.name)
		}
	}
	if _, err := Sign(nil, msg); !errors.Is(err, ErrNotP256) {
		t.Errorf("Sign(nil) = %v", err)
	}
}

func TestVerifyJWSMalformed(t *testing.T) {
	key, _ := GenerateKey()
	good, _ := SignTelemetryClaims(key, []byte(`{"hostname":"a.example.com"}`))
	parts := strings.Split(good, ".")
	es256 := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))
	extra := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"Tesla.SS256","typ":"JWT","kid":"x"}`))
	badIss := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"!!"}`))
	numIss := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":1}`))
	notObject := base64.RawURLEncoding.EncodeToString([]byte(`[1]`))
	for _, tok := range []string{
		"", "a.b", "a.b.c.d", parts[0] + "." + parts[1],
		es256 + "." + parts[1] + "." + parts[2],
		extra + "." + parts[1] + "." + parts[2],
		parts[0] + "." + badIss + "." + parts[2],
		parts[0] + "." + numIss + "." + parts[2],
		parts[0] + "." + notObject + "." + parts[2],
		parts[0] + ".!!." + parts[2],
	} {
		if _, err := VerifyJWS(tok, nil); err == nil {
			t.Errorf("VerifyJWS(%q) accepted", tok)
		}
	}
	if _, err := VerifyJWS(good, nil); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	key, _ := GenerateKey()
	sig, _ := Sign(key, []byte("seed"))
	f.Add([]byte("seed"), sig)
	f.Add([]byte{}, make([]byte, SignatureSize))
	f.Add([]byte("x"), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		if Verify(&key.PublicKey, msg, sig) && !bytes.Equal(msg, []byte("seed")) {
			t.Fatalf("forged signature for %q", msg)
		}
	})
}

func FuzzVerifyJWS(f *testing.F) {
	key, _ := GenerateKey()
	tok, _ := SignTelemetryClaims(key, []byte(`{"hostname":"a.example.com","port":443}`))
	f.Add(tok)
	f.Add(loadVectors(f)["jwt_verify"].Token)
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		_, _ = VerifyJWS(token, nil)
		_, _ = VerifyJWS(token, &key.PublicKey)
	})
}

func FuzzSignTelemetryClaims(f *testing.F) {
	key, _ := GenerateKey()
	f.Add([]byte(`{"hostname":"a.example.com","port":443,"fields":{"Soc":{"interval_seconds":60}}}`))
	f.Add([]byte(`{"aud":1,"iss":[],"x":1e400}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		token, err := SignTelemetryClaims(key, claims)
		if err != nil {
			return
		}
		payload, err := VerifyJWS(token, &key.PublicKey)
		if err != nil {
			t.Fatalf("own token does not verify: %v", err)
		}
		var c map[string]json.RawMessage
		if err := json.Unmarshal(payload, &c); err != nil || string(c["aud"]) != `"`+TelemetryAudience+`"` {
			t.Fatalf("claims %s: %v", payload, err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	key, _ := GenerateKey()
	msg := []byte("header.payload")
	for b.Loop() {
		if _, err := Sign(key, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key, _ := GenerateKey()
	msg := []byte("header.payload")
	sig, _ := Sign(key, msg)
	for b.Loop() {
		if !Verify(&key.PublicKey, msg, sig) {
			b.Fatal("does not verify")
		}
	}
}
