package protocol_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/signatures"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
)

// The test keys and values of protocol.md (teslamotors/vehicle-command,
// pkg/protocol/protocol.md). They are published; never pair them with a car.
const (
	vectorClientKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICU4zcKal8GcHpmmN9bPT4yXDBGLVu3h5jI+bRYsSzDboAoGCCqGSM49
AwEHoUQDQgAEsra8aMLaBmXOZWgVWUmWxiOU7di+qQX+eBp1T+aoRacUMwkC8iXp
Jp1GbgWzSZgf2p2FzCPG+0RKpztikQXcbg==
-----END EC PRIVATE KEY-----`
	vectorVehicleKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIDRO5bRmp88e6xK29QMx2y5exYNO9fS+/P2MvlXCUo1woAoGCCqGSM49
AwEHoUQDQgAEx6H0cThIaqRymXFJSHjTOxok45Vx90im4WxZVbPYd9OmqqDpVRZk
dK9dMsQQ9DmiI0E3rRuwhf1OiBPJWPEdlw==
-----END EC PRIVATE KEY-----`
	vectorClientPublic  = "04b2b6bc68c2da0665ce656815594996c62394edd8bea905fe781a754fe6a845a714330902f225e9269d466e05b349981fda9d85cc23c6fb444aa73b629105dc6e"
	vectorVehiclePublic = "04c7a1f47138486aa4729971494878d33b1a24e39571f748a6e16c5955b3d877d3a6aaa0e955166474af5d32c410f439a2234137ad1bb085fd4e8813c958f11d97"
	vectorK             = "1b2fce19967b79db696f909cff89ea9a"
	vectorVIN           = "5YJ30123456789ABC"
	vectorEpoch         = "4c463f9cc0d3d26906e982ed224adde6"
	vectorChallenge     = "1588d5a30eabc6f8fc9a951b11f6fd11"
	vectorSessionInfo   = "0806124104c7a1f47138486aa4729971494878d33b1a24e39571f748a6e16c5955b3d877d3a6aaa0e955166474af5d32c410f439a2234137ad1bb085fd4e8813c958f11d971a104c463f9cc0d3d26906e982ed224adde6255a0a0000"
	vectorSessionTag    = "996c1fe38331be138f8039c194b14db2198846ed7d8251e6749284d7b32ea002"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseKey(t testing.TB, pemText string) *ecdh.PrivateKey {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	e, err := k.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestVectorKeys(t *testing.T) {
	c, v := parseKey(t, vectorClientKey), parseKey(t, vectorVehicleKey)
	if got := hex.EncodeToString(c.PublicKey().Bytes()); got != vectorClientPublic {
		t.Errorf("client public = %s", got)
	}
	if got := hex.EncodeToString(v.PublicKey().Bytes()); got != vectorVehiclePublic {
		t.Errorf("vehicle public = %s", got)
	}
}

// protocol.md, "Key Agreement": both sides derive the same K.
func TestVectorKeyAgreement(t *testing.T) {
	c, v := parseKey(t, vectorClientKey), parseKey(t, vectorVehicleKey)
	k1, err := protocol.SharedKey(c, unhex(t, vectorVehiclePublic))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := protocol.SharedKey(v, unhex(t, vectorClientPublic))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(k1) != vectorK || hex.EncodeToString(k2) != vectorK {
		t.Fatalf("K = %x / %x, want %s", k1, k2, vectorK)
	}
	if _, err := protocol.SharedKey(c, unhex(t, vectorVehiclePublic)[:64]); err == nil {
		t.Error("a truncated public key was accepted")
	}
}

// protocol.md, "Metadata serialization".
func TestVectorMetadata(t *testing.T) {
	var m protocol.Metadata
	if err := m.Add(signatures.Tag_TAG_PERSONALIZATION, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := m.AddUint32(signatures.Tag_TAG_COUNTER, 100); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(m.Encode()); got != "0203616263050400000064ff" {
		t.Errorf("SERIALIZE({COUNTER: 100, VIN: abc}) = %s", got)
	}

	var bad protocol.Metadata
	_ = bad.AddUint32(signatures.Tag_TAG_COUNTER, 1)
	if err := bad.Add(signatures.Tag_TAG_PERSONALIZATION, []byte("abc")); err == nil {
		t.Error("descending tags were accepted")
	}
	if err := bad.AddUint32(signatures.Tag_TAG_COUNTER, 2); err == nil {
		t.Error("a repeated tag was accepted")
	}
	if err := bad.Add(signatures.Tag_TAG_FLAGS, make([]byte, 256)); err == nil {
		t.Error("a 256-byte value was accepted")
	}

	// The AES-GCM command example's metadata (flags zero, so absent).
	f := protocol.CommandFields{
		Domain: protocol.DomainInfotainment, VIN: vectorVIN, Epoch: unhex(t, vectorEpoch),
		ExpiresAt: 2655, Counter: 7,
	}
	got, err := f.Metadata(signatures.SignatureType_SIGNATURE_TYPE_AES_GCM_PERSONALIZED)
	if err != nil {
		t.Fatal(err)
	}
	const want = "000105010103021135594a333031323334353637383941424303104c463f9cc0d3d26906e982ed224adde6040400000a5f050400000007ff"
	if hex.EncodeToString(got) != want {
		t.Errorf("command metadata = %x\nwant            %s", got, want)
	}
}

// protocol.md, "Response authentication": session info key, metadata and tag.
func TestVectorSessionInfoTag(t *testing.T) {
	k := unhex(t, vectorK)
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte("session info"))
	if got := hex.EncodeToString(mac.Sum(nil)); got != "fceb679ee7bca756fcd441bf238bf2f338629b41d9eb9c67be1b32c9672ce300" {
		t.Errorf("SESSION_INFO_KEY = %s", got)
	}
	tag, err := protocol.SessionInfoTag(k, vectorVIN, unhex(t, vectorChallenge), unhex(t, vectorSessionInfo))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(tag) != vectorSessionTag {
		t.Errorf("session info tag = %x, want %s", tag, vectorSessionTag)
	}

	var info signatures.SessionInfo
	if err := proto.Unmarshal(unhex(t, vectorSessionInfo), &info); err != nil {
		t.Fatal(err)
	}
	if info.GetCounter() != 6 || info.GetClockTime() != 2650 || hex.EncodeToString(info.GetEpoch()) != vectorEpoch ||
		hex.EncodeToString(info.GetPublicKey()) != vectorVehiclePublic {
		t.Errorf("session info decodes as %v", &info)
	}
}

// vectorHandshake returns protocol.md's handshake request and response.
func vectorHandshake(t *testing.T) (req, resp *universalmessage.RoutableMessage) {
	req = &universalmessage.RoutableMessage{Uuid: unhex(t, vectorChallenge)}
	resp = &universalmessage.RoutableMessage{
		FromDestination: &universalmessage.Destination{SubDestination: &universalmessage.Destination_Domain{Domain: protocol.DomainInfotainment}},
		Payload:         &universalmessage.RoutableMessage_SessionInfo{SessionInfo: unhex(t, vectorSessionInfo)},
		SubSigData: &universalmessage.RoutableMessage_SignatureData{SignatureData: &signatures.SignatureData{
			SigType: &signatures.SignatureData_SessionInfoTag{SessionInfoTag: &signatures.HMAC_Signature_Data{Tag: unhex(t, vectorSessionTag)}},
		}},
		RequestUuid: unhex(t, vectorChallenge),
	}
	return req, resp
}

func TestVectorSessionUpdate(t *testing.T) {
	s, err := protocol.NewSession(parseKey(t, vectorClientKey), vectorVIN, protocol.DomainInfotainment)
	if err != nil {
		t.Fatal(err)
	}
	req, resp := vectorHandshake(t)
	now := time.Unix(1_800_000_000, 0)

	// Tampering with any byte of the session info, the tag or the challenge
	// is refused.
	for _, tamper := range []func(req, resp *universalmessage.RoutableMessage){
		func(_, resp *universalmessage.RoutableMessage) { resp.GetSessionInfo()[2] ^= 1 },
		func(_, resp *universalmessage.RoutableMessage) {
			resp.GetSignatureData().GetSessionInfoTag().Tag[0] ^= 1
		},
		func(req, _ *universalmessage.RoutableMessage) { req.Uuid[15] ^= 1 },
		func(_, resp *universalmessage.RoutableMessage) { resp.SubSigData = nil },
	} {
		req, resp := vectorHandshake(t)
		tamper(req, resp)
		if err := s.Update(resp, req, now); err == nil {
			t.Error("tampered session info accepted")
		}
		if s.Established() {
			t.Fatal("tampered session info established a session")
		}
	}

	if err := s.Update(resp, req, now); err != nil {
		t.Fatal(err)
	}
	st, ok := s.State()
	if !ok || st.Counter != 6 || hex.EncodeToString(st.Epoch) != vectorEpoch || st.LastClock != 2650 ||
		st.ClockZeroUnixMilli != now.Add(-2650*time.Second).UnixMilli() {
		t.Fatalf("state after the vector handshake: %+v", st)
	}
}

// protocol.md's AES-GCM example: "turn HVAC on" for infotainment. The
// payload encodes to the documented bytes and the documented ciphertext
// decrypts under K with AAD = SHA256(metadata), the convention encrypted
// responses use as well.
func TestVectorAESGCM(t *testing.T) {
	action := &carserver.Action{ActionMsg: &carserver.Action_VehicleAction{VehicleAction: &carserver.VehicleAction{
		VehicleActionMsg: &carserver.VehicleAction_HvacAutoAction{HvacAutoAction: &carserver.HvacAutoAction{PowerOn: true}},
	}}}
	p, err := proto.Marshal(action)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(p) != "120452020801" {
		t.Errorf("HVAC on encodes as %x", p)
	}
	aad := sha256.Sum256(unhex(t, "000105010103021135594a333031323334353637383941424303104c463f9cc0d3d26906e982ed224adde6040400000a5f050400000007ff"))
	pt, err := protocol.OpenGCM(unhex(t, vectorK), unhex(t, "dbf79447fa156674dae1caed"), unhex(t, "38038e8c0f2e"), unhex(t, "8e128da165f162f4d7d2c8da866cf82a"), aad[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pt, p) {
		t.Errorf("decrypted %x", pt)
	}
	if _, err := protocol.OpenGCM(unhex(t, vectorK), unhex(t, "dbf79447fa156674dae1caed"), unhex(t, "38038e8c0f2f"), unhex(t, "8e128da165f162f4d7d2c8da866cf82a"), aad[:]); err == nil {
		t.Error("a tampered ciphertext decrypted")
	}
}

// The command tag and the encrypted response below are not in protocol.md;
// they were computed independently of this package from protocol.md's
// definitions with OpenSSL (HMAC) and Python's cryptography (AES-GCM),
// using the document's K, VIN, epoch and HVAC payload:
//
//	K'  = HMAC-SHA256(K, "authenticated command")
//	tag = HMAC-SHA256(K', M ‖ P), M with signature type 8, domain 3,
//	      expires_at 2655, counter 7, flags 2 (FLAG_ENCRYPT_RESPONSE)
//	response: counter 1, flags 0, fault 0, request hash 0x08 ‖ tag,
//	      nonce 000102…0b, plaintext 0a00 (carserver.Response, status OK)
const (
	vectorCommandKey      = "6d3a14d0b6d762e4f076739e2cf6edd291d2e56e3f25bc6a2af5cb26dc753b14"
	vectorCommandMetadata = "000108010103021135594a333031323334353637383941424303104c463f9cc0d3d26906e982ed224adde6040400000a5f050400000007070400000002ff"
	vectorCommandTag      = "f3c24554a00e42160e6acef6dd4f1c8ef9c30ed6391ec818d75663bee00a47f0"
	vectorResponseMeta    = "000109010103021135594a3330313233343536373839414243050400000001070400000000082108f3c24554a00e42160e6acef6dd4f1c8ef9c30ed6391ec818d75663bee00a47f0090400000000ff"
)

func vectorCommandFields(t *testing.T) protocol.CommandFields {
	return protocol.CommandFields{
		Domain: protocol.DomainInfotainment, VIN: vectorVIN, Epoch: unhex(t, vectorEpoch),
		ExpiresAt: 2655, Counter: 7, Flags: protocol.FlagEncryptResponse,
	}
}

func TestVectorCommandTag(t *testing.T) {
	ck := protocol.CommandKey(unhex(t, vectorK))
	if hex.EncodeToString(ck) != vectorCommandKey {
		t.Errorf("K' = %x", ck)
	}
	m, err := vectorCommandFields(t).Metadata(signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(m) != vectorCommandMetadata {
		t.Errorf("metadata = %x", m)
	}
	tag, err := protocol.CommandTag(ck, vectorCommandFields(t), unhex(t, "120452020801"))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(tag) != vectorCommandTag {
		t.Errorf("tag = %x, want %s", tag, vectorCommandTag)
	}
	// Every bound value changes the tag.
	for name, change := range map[string]func(*protocol.CommandFields){
		"vin":     func(f *protocol.CommandFields) { f.VIN = "5YJ30123456789ABD" },
		"domain":  func(f *protocol.CommandFields) { f.Domain = protocol.DomainVehicleSecurity },
		"counter": func(f *protocol.CommandFields) { f.Counter++ },
		"expiry":  func(f *protocol.CommandFields) { f.ExpiresAt++ },
		"flags":   func(f *protocol.CommandFields) { f.Flags = 0 },
		"epoch":   func(f *protocol.CommandFields) { f.Epoch = make([]byte, 16) },
	} {
		f := vectorCommandFields(t)
		change(&f)
		other, _ := protocol.CommandTag(ck, f, unhex(t, "120452020801"))
		if bytes.Equal(other, tag) {
			t.Errorf("changing %s did not change the tag", name)
		}
	}
}

func TestVectorResponseDecryption(t *testing.T) {
	rf := protocol.ResponseFields{
		Domain: protocol.DomainInfotainment, VIN: vectorVIN, Counter: 1,
		RequestHash: protocol.RequestHash(protocol.DomainInfotainment, signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED, unhex(t, vectorCommandTag)),
	}
	aad, err := rf.AAD()
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(unhex(t, vectorResponseMeta))
	if !bytes.Equal(aad, want[:]) {
		t.Fatalf("response AAD = %x, want SHA256(%s)", aad, vectorResponseMeta)
	}
	pt, err := protocol.OpenGCM(unhex(t, vectorK), unhex(t, "000102030405060708090a0b"), unhex(t, "135c"), unhex(t, "a39e8f2159cd6ee89ddd8de1edcdd2ba"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(pt) != "0a00" {
		t.Errorf("plaintext %x", pt)
	}
	// Vehicle security truncates the request hash to 17 bytes.
	h := protocol.RequestHash(protocol.DomainVehicleSecurity, signatures.SignatureType_SIGNATURE_TYPE_HMAC_PERSONALIZED, unhex(t, vectorCommandTag))
	if hex.EncodeToString(h) != "08f3c24554a00e42160e6acef6dd4f1c8e" {
		t.Errorf("VCSEC request hash = %x", h)
	}
}

// protocol.md's debug line decodes as the documented RoutableMessage.
func TestVectorEnvelope(t *testing.T) {
	var m universalmessage.RoutableMessage
	if err := proto.Unmarshal(unhex(t, "320208023a1212100a7962c10d38b61dd2a7722780a4f0969a031005514f57616bcc81a8ce0f9d7b48322952040a020805"), &m); err != nil {
		t.Fatal(err)
	}
	if m.GetToDestination().GetDomain() != protocol.DomainVehicleSecurity ||
		hex.EncodeToString(m.GetFromDestination().GetRoutingAddress()) != "0a7962c10d38b61dd2a7722780a4f096" ||
		hex.EncodeToString(m.GetProtobufMessageAsBytes()) != "0a020805" ||
		hex.EncodeToString(m.GetUuid()) != "05514f57616bcc81a8ce0f9d7b483229" {
		t.Errorf("decoded %v", &m)
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(again) != "320208023a1212100a7962c10d38b61dd2a7722780a4f0969a031005514f57616bcc81a8ce0f9d7b48322952040a020805" {
		t.Errorf("re-encoded as %x", again)
	}
}
