package protocol_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/vehicle"
)

// clock is a settable time source shared by the test's car and client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// echo answers every command with its payload, so tests see what the car
// received.
var echo = vehicle.ExecutorFunc(func(_ protocol.Domain, p []byte) ([]byte, error) { return p, nil })

type rig struct {
	priv *ecdh.PrivateKey
	clk  *clock
	car  *vehicle.Domain
	sess *protocol.Session
}

func newRig(t *testing.T, domain protocol.Domain) *rig {
	t.Helper()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	car, err := vehicle.NewDomain(vectorVIN, domain, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := car.Pair(priv.PublicKey().Bytes()); err != nil {
		t.Fatal(err)
	}
	sess, err := protocol.NewSession(priv, vectorVIN, domain)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(100 * time.Second) // the car has been up a while
	r := &rig{priv: priv, clk: clk, car: car, sess: sess}
	r.handshake(t)
	return r
}

func (r *rig) handshake(t *testing.T) {
	t.Helper()
	req := r.sess.HandshakeRequest()
	if err := r.sess.Update(roundTrip(t, r.car, req), req, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
}

// roundTrip sends msg through the wire encoding, as the Fleet API does.
func roundTrip(t *testing.T, car *vehicle.Domain, msg *universalmessage.RoutableMessage) *universalmessage.RoutableMessage {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var in universalmessage.RoutableMessage
	if err := proto.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	out, err := proto.Marshal(car.Handle(&in, echo))
	if err != nil {
		t.Fatal(err)
	}
	var resp universalmessage.RoutableMessage
	if err := proto.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func (r *rig) sign(t *testing.T, payload string) *protocol.Request {
	t.Helper()
	req, err := r.sess.Sign([]byte(payload), r.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func wantFault(t *testing.T, err error, f protocol.Fault) *protocol.FaultError {
	t.Helper()
	var fe *protocol.FaultError
	if !errors.As(err, &fe) || fe.Fault != f {
		t.Fatalf("error %v, want fault %v", err, f)
	}
	return fe
}

func TestCommandRoundTrip(t *testing.T) {
	for _, domain := range []protocol.Domain{protocol.DomainInfotainment, protocol.DomainVehicleSecurity} {
		r := newRig(t, domain)
		for _, p := range []string{"first", "second", "third"} {
			req := r.sign(t, p)
			resp, err := req.Open(roundTrip(t, r.car, req.Message))
			if err != nil {
				t.Fatalf("%v: %v", domain, err)
			}
			if string(resp.Payload) != p || !resp.Encrypted {
				t.Fatalf("%v: got %q encrypted=%v", domain, resp.Payload, resp.Encrypted)
			}
		}
	}
}

func TestReplayedCommandRefused(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	req := r.sign(t, "lock")
	if _, err := req.Open(roundTrip(t, r.car, req.Message)); err != nil {
		t.Fatal(err)
	}
	_, err := req.Open(roundTrip(t, r.car, req.Message))
	fe := wantFault(t, err, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_TOKEN_OR_COUNTER)
	if fe.Recovery() != protocol.RefreshSession {
		t.Errorf("counter fault recovery = %v", fe.Recovery())
	}
}

func TestReplayedResponseRefused(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	req := r.sign(t, "x")
	resp := roundTrip(t, r.car, req.Message)
	if _, err := req.Open(resp); err != nil {
		t.Fatal(err)
	}
	if _, err := req.Open(resp); !errors.Is(err, protocol.ErrReplayedResponse) {
		t.Fatalf("replayed response: %v", err)
	}
	// A response to another request does not authenticate for this one.
	other := r.sign(t, "x")
	if _, err := other.Open(resp); err == nil {
		t.Fatal("a response to another request was accepted")
	}
}

func TestTamperedResponseRefused(t *testing.T) {
	r := newRig(t, protocol.DomainVehicleSecurity)
	for name, tamper := range map[string]func(*universalmessage.RoutableMessage){
		"ciphertext": func(m *universalmessage.RoutableMessage) { m.GetProtobufMessageAsBytes()[0] ^= 1 },
		"counter":    func(m *universalmessage.RoutableMessage) { m.GetSignatureData().GetAES_GCM_ResponseData().Counter++ },
		"flags":      func(m *universalmessage.RoutableMessage) { m.Flags ^= 4 },
		"tag":        func(m *universalmessage.RoutableMessage) { m.GetSignatureData().GetAES_GCM_ResponseData().Tag[3] ^= 1 },
		"fault": func(m *universalmessage.RoutableMessage) {
			m.SignedMessageStatus = &universalmessage.MessageStatus{SignedMessageFault: 1}
		},
	} {
		req := r.sign(t, "unlock")
		resp := roundTrip(t, r.car, req.Message)
		tamper(resp)
		if _, err := req.Open(resp); err == nil || strings.Contains(err.Error(), "busy") {
			t.Errorf("tampered %s: %v", name, err)
		}
	}
}

func TestTamperedCommandRefused(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	for name, tamper := range map[string]func(*universalmessage.RoutableMessage){
		"payload": func(m *universalmessage.RoutableMessage) { m.GetProtobufMessageAsBytes()[0] ^= 1 },
		"flags":   func(m *universalmessage.RoutableMessage) { m.Flags = 0 },
		"expiry":  func(m *universalmessage.RoutableMessage) { m.GetSignatureData().GetHMAC_PersonalizedData().ExpiresAt++ },
		"counter": func(m *universalmessage.RoutableMessage) {
			m.GetSignatureData().GetHMAC_PersonalizedData().Counter += 5
		},
	} {
		req := r.sign(t, "charge_start")
		tamper(req.Message)
		_, err := req.Open(roundTrip(t, r.car, req.Message))
		if fe := wantFault(t, err, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INVALID_SIGNATURE); fe.Response.GetSessionInfo() == nil {
			t.Errorf("tampered %s: the fault carries no session info", name)
		}
	}
	// After the refusals the session still works: counters were not burned.
	req := r.sign(t, "ok")
	if _, err := req.Open(roundTrip(t, r.car, req.Message)); err != nil {
		t.Fatal(err)
	}
}

func TestWrongVINRefused(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	_ = r.car.Pair(priv.PublicKey().Bytes())
	other, _ := protocol.NewSession(priv, "5YJ3OTHERVIN00000", protocol.DomainInfotainment)
	// The session info tag binds the VIN, so the handshake already fails.
	req := other.HandshakeRequest()
	if err := other.Update(roundTrip(t, r.car, req), req, r.clk.Now()); !errors.Is(err, protocol.ErrUnauthenticatedSessionInfo) {
		t.Fatalf("handshake for the wrong VIN: %v", err)
	}
}

func TestExpiredCommandRecovers(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	req := r.sign(t, "late")
	r.clk.Advance(protocol.DefaultTTL + 2*time.Second) // the command sat in a queue
	_, err := req.Open(roundTrip(t, r.car, req.Message))
	fe := wantFault(t, err, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_TIME_EXPIRED)
	if fe.Recovery() != protocol.RefreshSession {
		t.Fatal("expiry should refresh the session")
	}
	if err := r.sess.Update(fe.Response, req.Message, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	retry := r.sign(t, "late")
	if _, err := retry.Open(roundTrip(t, r.car, retry.Message)); err != nil {
		t.Fatal(err)
	}
}

func TestRebootedCarRecovers(t *testing.T) {
	r := newRig(t, protocol.DomainVehicleSecurity)
	for range 3 {
		req := r.sign(t, "x")
		if _, err := req.Open(roundTrip(t, r.car, req.Message)); err != nil {
			t.Fatal(err)
		}
	}
	r.car.Reboot()
	req := r.sign(t, "after reboot")
	_, err := req.Open(roundTrip(t, r.car, req.Message))
	fe := wantFault(t, err, universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_INCORRECT_EPOCH)
	if err := r.sess.Update(fe.Response, req.Message, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.sess.State(); st.Counter != 0 {
		t.Errorf("a new epoch should reset the counter to the car's, got %d", st.Counter)
	}
	retry := r.sign(t, "after reboot")
	if _, err := retry.Open(roundTrip(t, r.car, retry.Message)); err != nil {
		t.Fatal(err)
	}
	// Session info of the fault is bound to that request's uuid: applying it
	// against another request is refused.
	if err := r.sess.Update(fe.Response, retry.Message, r.clk.Now()); !errors.Is(err, protocol.ErrUnauthenticatedSessionInfo) {
		t.Errorf("session info replayed for another request: %v", err)
	}
}

func TestSessionInfoNeverRollsBack(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	old := r.sess.HandshakeRequest()
	oldResp := roundTrip(t, r.car, old) // counter 0, clock 100
	r.clk.Advance(10 * time.Second)
	for range 5 {
		req := r.sign(t, "x")
		if _, err := req.Open(roundTrip(t, r.car, req.Message)); err != nil {
			t.Fatal(err)
		}
	}
	r.handshake(t) // clock 110, counter 5
	if err := r.sess.Update(oldResp, old, r.clk.Now()); err == nil {
		t.Error("older session info of the same epoch was accepted")
	}
	if st, _ := r.sess.State(); st.Counter != 5 {
		t.Errorf("counter = %d, want 5", st.Counter)
	}
}

func TestCounterWindows(t *testing.T) {
	// Infotainment accepts an unused counter slightly out of order;
	// vehicle security does not.
	for domain, wantLateOK := range map[protocol.Domain]bool{protocol.DomainInfotainment: true, protocol.DomainVehicleSecurity: false} {
		r := newRig(t, domain)
		first, second := r.sign(t, "1"), r.sign(t, "2")
		if _, err := second.Open(roundTrip(t, r.car, second.Message)); err != nil {
			t.Fatal(err)
		}
		_, err := first.Open(roundTrip(t, r.car, first.Message))
		if (err == nil) != wantLateOK {
			t.Errorf("%v: late counter: %v", domain, err)
		}
	}
}

func TestUnpairedKey(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	stranger, _ := protocol.NewSession(priv, vectorVIN, protocol.DomainInfotainment)
	req := stranger.HandshakeRequest()
	resp := roundTrip(t, r.car, req)
	if f := resp.GetSignedMessageStatus().GetSignedMessageFault(); f != universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID {
		t.Fatalf("fault %v", f)
	}
	fe := &protocol.FaultError{Domain: protocol.DomainInfotainment, Fault: universalmessage.MessageFault_E_MESSAGEFAULT_ERROR_UNKNOWN_KEY_ID}
	if !strings.Contains(fe.Error(), "the key is not paired with this car") || !strings.Contains(fe.Error(), "tesla.com/_ak/") {
		t.Errorf("UNKNOWN_KEY_ID reads %q", fe.Error())
	}
	if _, err := stranger.Sign([]byte("x"), r.clk.Now(), 0); !errors.Is(err, protocol.ErrNoSession) {
		t.Errorf("signing without a session: %v", err)
	}
}

func TestStateRestore(t *testing.T) {
	r := newRig(t, protocol.DomainInfotainment)
	req := r.sign(t, "x")
	if _, err := req.Open(roundTrip(t, r.car, req.Message)); err != nil {
		t.Fatal(err)
	}
	st, ok := r.sess.State()
	if !ok {
		t.Fatal("no state after a handshake")
	}
	// A new process with the same key resumes without a handshake.
	resumed, err := protocol.NewSession(r.priv, vectorVIN, protocol.DomainInfotainment)
	if err != nil {
		t.Fatal(err)
	}
	if err := resumed.Restore(st); err != nil {
		t.Fatal(err)
	}
	again, err := resumed.Sign([]byte("y"), r.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := again.Open(roundTrip(t, r.car, again.Message)); err != nil || string(resp.Payload) != "y" {
		t.Fatalf("resumed session: %v", err)
	}
	if err := resumed.Restore(protocol.State{VehiclePublicKey: st.VehiclePublicKey, Epoch: st.Epoch[:8]}); err == nil {
		t.Error("a cached state with a short epoch was restored")
	}
}

func TestFaultClassification(t *testing.T) {
	for f, want := range map[int32]protocol.Recovery{
		15: protocol.RefreshSession, 17: protocol.RefreshSession, 6: protocol.RefreshSession, 5: protocol.RefreshSession,
		1: protocol.Backoff, 2: protocol.Backoff, 11: protocol.Backoff,
		3: protocol.GiveUp, 7: protocol.GiveUp, 21: protocol.GiveUp, 99: protocol.GiveUp,
	} {
		if got := protocol.FaultRecovery(protocol.Fault(f)); got != want {
			t.Errorf("fault %d: recovery %v, want %v", f, got, want)
		}
		if protocol.FaultText(protocol.Fault(f)) == "" {
			t.Errorf("fault %d has no words", f)
		}
	}
	for f := int32(0); f <= 28; f++ {
		if strings.HasPrefix(protocol.FaultText(protocol.Fault(f)), "unknown") {
			t.Errorf("fault %d is not named in words", f)
		}
	}
}
