package command_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	cs "github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/vcsec"
)

// sampleArgs are valid arguments for every command that takes some.
var sampleArgs = map[string]string{
	"set_charge_limit":                     `{"percent":80}`,
	"set_charging_amps":                    `{"charging_amps":"16"}`,
	"set_temps":                            `{"driver_temp":21.5,"passenger_temp":20}`,
	"set_preconditioning_max":              `{"on":true}`,
	"remote_seat_heater_request":           `{"seat_position":1,"level":3}`,
	"remote_steering_wheel_heater_request": `{"on":true}`,
	"set_sentry_mode":                      `{"on":false}`,
	"actuate_trunk":                        `{"which_trunk":"front"}`,
	"window_control":                       `{"command":"vent","lat":0,"lon":0}`,
	"set_scheduled_charging":               `{"enable":true,"time":120}`,
	"set_scheduled_departure":              `{"enable":true,"departure_time":450,"preconditioning_enabled":true,"off_peak_charging_weekdays_only":true,"end_off_peak_time":360}`,
	"set_cabin_overheat_protection":        `{"on":true,"fan_only":true}`,
	"set_vehicle_name":                     `{"vehicle_name":"Blue"}`,
}

func TestEveryNameBuilds(t *testing.T) {
	for _, name := range command.Names() {
		a, err := command.Build(name, []byte(sampleArgs[name]))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "wake_up" {
			if !a.Wake {
				t.Error("wake_up is not a wake")
			}
			continue
		}
		if len(a.Payload) == 0 {
			t.Errorf("%s: empty payload", name)
		}
	}
}

func infotainmentAction(t *testing.T, name, args string) *cs.VehicleAction {
	t.Helper()
	a, err := command.Build(name, []byte(args))
	if err != nil {
		t.Fatal(err)
	}
	if a.Domain != protocol.DomainInfotainment {
		t.Fatalf("%s goes to %v", name, a.Domain)
	}
	var act cs.Action
	if err := proto.Unmarshal(a.Payload, &act); err != nil {
		t.Fatal(err)
	}
	return act.GetVehicleAction()
}

func TestActionContents(t *testing.T) {
	if got := infotainmentAction(t, "set_charge_limit", `{"percent":80}`).GetChargingSetLimitAction().GetPercent(); got != 80 {
		t.Errorf("charge limit %d", got)
	}
	if got := infotainmentAction(t, "set_charging_amps", `{"charging_amps":"16"}`).GetSetChargingAmpsAction().GetChargingAmps(); got != 16 {
		t.Errorf("amps %d", got)
	}
	if infotainmentAction(t, "charge_stop", ``).GetChargingStartStopAction().GetStop() == nil {
		t.Error("charge_stop is not a stop")
	}
	temps := infotainmentAction(t, "set_temps", `{"driver_temp":21.5}`).GetHvacTemperatureAdjustmentAction()
	if temps.GetDriverTempCelsius() != 21.5 || temps.GetPassengerTempCelsius() != 21.5 {
		t.Errorf("temps %v", temps)
	}
	seat := infotainmentAction(t, "remote_seat_heater_request", `{"seat_position":1,"level":3}`).GetHvacSeatHeaterActions().GetHvacSeatHeaterAction()[0]
	if seat.GetCAR_SEAT_FRONT_RIGHT() == nil || seat.GetSEAT_HEATER_HIGH() == nil {
		t.Errorf("seat heater %v", seat)
	}
	sd := infotainmentAction(t, "set_scheduled_departure", sampleArgs["set_scheduled_departure"]).GetScheduledDepartureAction()
	if sd.GetDepartureTime() != 450 || sd.GetPreconditioningTimes().GetAllWeek() == nil || sd.GetOffPeakChargingTimes().GetWeekdays() == nil || sd.GetOffPeakHoursEndTime() != 360 {
		t.Errorf("scheduled departure %v", sd)
	}
	if infotainmentAction(t, "window_control", `{"command":"close"}`).GetVehicleControlWindowAction().GetClose() == nil {
		t.Error("window close")
	}

	for name, check := range map[string]func(*vcsec.UnsignedMessage) bool{
		"door_lock": func(m *vcsec.UnsignedMessage) bool { return m.GetRKEAction() == vcsec.RKEAction_E_RKE_ACTION_LOCK },
		"door_unlock": func(m *vcsec.UnsignedMessage) bool {
			return m.GetSubMessage() != nil && m.GetRKEAction() == vcsec.RKEAction_E_RKE_ACTION_UNLOCK
		},
		"actuate_trunk": func(m *vcsec.UnsignedMessage) bool {
			return m.GetClosureMoveRequest().GetFrontTrunk() == vcsec.ClosureMoveType_E_CLOSURE_MOVE_TYPE_MOVE
		},
	} {
		a, err := command.Build(name, []byte(sampleArgs[name]))
		if err != nil {
			t.Fatal(err)
		}
		var m vcsec.UnsignedMessage
		if a.Domain != protocol.DomainVehicleSecurity || proto.Unmarshal(a.Payload, &m) != nil || !check(&m) {
			t.Errorf("%s: domain %v, message %v", name, a.Domain, &m)
		}
	}
}

func TestInvalidArguments(t *testing.T) {
	for _, c := range []struct{ name, args, want string }{
		{"set_charge_limit", ``, `missing argument "percent"`},
		{"set_charge_limit", `{"percent":101}`, "out of range"},
		{"set_charge_limit", `{"percent":80.5}`, "whole number"},
		{"set_charge_limit", `{"percent":true}`, "must be a number"},
		{"set_charge_limit", `{"percent":80,"percentage":80}`, `unknown argument(s) ["percentage"]`},
		{"set_charging_amps", `{"charging_amps":-1}`, "out of range"},
		{"set_sentry_mode", `{"on":"yes"}`, "true or false"},
		{"actuate_trunk", `{"which_trunk":"side"}`, `"front" or "rear"`},
		{"window_control", `{"command":"open"}`, `"vent" or "close"`},
		{"remote_seat_heater_request", `{"seat_position":9,"level":1}`, "out of range"},
		{"set_scheduled_charging", `{"enable":true}`, `missing argument "time"`},
		{"set_vehicle_name", `{"vehicle_name":""}`, "1 to 64"},
		{"charge_start", `[1]`, "JSON object"},
		{"self_destruct", ``, "unknown command"},
	} {
		_, err := command.Build(c.name, []byte(c.args))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), c.name+": ") {
			t.Errorf("%s %s: error %v, want one containing %q", c.name, c.args, err, c.want)
		}
	}
}
