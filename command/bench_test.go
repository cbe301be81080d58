package command_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	cs "github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/vehicle"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// memTransport hands signed commands straight to an in-process car: the
// engine's own cost without the network.
type memTransport struct {
	car    *vehicle.Domain
	answer []byte
}

func (m *memTransport) SignedCommand(_ context.Context, _ string, msg []byte) ([]byte, error) {
	var req universalmessage.RoutableMessage
	if err := proto.Unmarshal(msg, &req); err != nil {
		return nil, err
	}
	resp := m.car.Handle(&req, vehicle.ExecutorFunc(func(protocol.Domain, []byte) ([]byte, error) { return m.answer, nil }))
	return proto.Marshal(resp)
}

func (m *memTransport) WakeUp(context.Context, string) (*fleetapi.Vehicle, error) {
	return &fleetapi.Vehicle{State: "online"}, nil
}

func (m *memTransport) Vehicle(context.Context, string) (*fleetapi.Vehicle, error) {
	return &fleetapi.Vehicle{State: "online"}, nil
}

func (m *memTransport) Command(context.Context, string, string, json.RawMessage) (*fleetapi.CommandResult, error) {
	return &fleetapi.CommandResult{Result: true}, nil
}

// BenchmarkExecute is one command to an awake car with an established
// session: validation, signing, encoding, opening the encrypted answer and
// the bookkeeping, plus (inside the same loop, not fleet2mqtt's cost) the
// in-process car verifying and encrypting. sessions=disk includes the
// session cache writes (a block of 256 counters reserved under the cache
// directory's lock, one write per 256 commands).
func BenchmarkExecute(b *testing.B) {
	for _, bc := range []struct {
		name string
		dir  bool
	}{{"sessions=memory", false}, {"sessions=disk", true}} {
		b.Run(bc.name, func(b *testing.B) {
			key, err := fleetapi.GenerateKey()
			if err != nil {
				b.Fatal(err)
			}
			car, err := vehicle.NewDomain(testVIN, protocol.DomainInfotainment, nil)
			if err != nil {
				b.Fatal(err)
			}
			pub, _ := fleetapi.PublicKeyBytes(&key.PublicKey)
			if err := car.Pair(pub); err != nil {
				b.Fatal(err)
			}
			answer, _ := proto.Marshal(&cs.Response{ActionStatus: &cs.ActionStatus{}})
			cfg := command.Config{Key: key, Transport: &memTransport{car: car, answer: answer}, RateLimit: &command.RateLimit{}}
			if bc.dir {
				cfg.SessionDir = b.TempDir()
			}
			e, err := command.New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req := command.Request{VIN: testVIN, Name: "set_charge_limit", Args: json.RawMessage(`{"percent":80}`), Who: "bench"}
			if res := e.Execute(ctx, req); !res.OK {
				b.Fatal(res.Reason)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if res := e.Execute(ctx, req); !res.OK {
					b.Fatal(res.Reason)
				}
			}
		})
	}
}

// BenchmarkCarSide is the in-process car alone (verify, execute, encrypt),
// to subtract from BenchmarkExecute.
func BenchmarkCarSide(b *testing.B) {
	key, _ := fleetapi.GenerateKey()
	priv, _ := key.ECDH()
	car, _ := vehicle.NewDomain(testVIN, protocol.DomainInfotainment, nil)
	_ = car.Pair(priv.PublicKey().Bytes())
	sess, _ := protocol.NewSession(priv, testVIN, protocol.DomainInfotainment)
	hello := sess.HandshakeRequest()
	if err := sess.Update(car.Handle(hello, nil), hello, timeNow()); err != nil {
		b.Fatal(err)
	}
	answer, _ := proto.Marshal(&cs.Response{ActionStatus: &cs.ActionStatus{}})
	mt := &memTransport{car: car, answer: answer}
	act, _ := command.Build("set_charge_limit", []byte(`{"percent":80}`))
	const batch = 1 << 16 // messages signed ahead, outside the timer
	var msgs [][]byte
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if len(msgs) == 0 {
			for range batch {
				r, _ := sess.Sign(act.Payload, timeNow(), 0)
				raw, _ := proto.Marshal(r.Message)
				msgs = append(msgs, raw)
			}
		}
		raw := msgs[0]
		msgs = msgs[1:]
		b.StartTimer()
		if _, err := mt.SignedCommand(context.Background(), testVIN, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func timeNow() time.Time { return time.Now() }
