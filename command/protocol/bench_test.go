package protocol_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
)

// BenchmarkSignCommand measures fleet2mqtt's own cost of one command:
// encoding the action, signing it (counter, expiry, metadata, HMAC) and
// encoding the RoutableMessage for the Fleet API. Target: under 100 µs.
func BenchmarkSignCommand(b *testing.B) {
	clk := time.Unix(1_800_000_000, 0)
	r := restoredSession(b)
	action := &carserver.Action{ActionMsg: &carserver.Action_VehicleAction{VehicleAction: &carserver.VehicleAction{
		VehicleActionMsg: &carserver.VehicleAction_ChargingSetLimitAction{ChargingSetLimitAction: &carserver.ChargingSetLimitAction{Percent: 80}},
	}}}
	b.ReportAllocs()
	for b.Loop() {
		payload, err := proto.Marshal(action)
		if err != nil {
			b.Fatal(err)
		}
		req, err := r.Sign(payload, clk, protocol.DefaultTTL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(req.Message); err != nil {
			b.Fatal(err)
		}
	}
}

// restoredSession is a session resumed from the vectors' keys and epoch.
func restoredSession(b *testing.B) *protocol.Session {
	s, err := protocol.NewSession(parseKey(b, vectorClientKey), vectorVIN, protocol.DomainInfotainment)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Restore(protocol.State{VehiclePublicKey: unhex(b, vectorVehiclePublic), Epoch: unhex(b, vectorEpoch)}); err != nil {
		b.Fatal(err)
	}
	return s
}
