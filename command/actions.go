package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	cs "github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/vcsec"
)

// Action is a validated command ready to sign: the domain that executes it
// and the encoded application payload (a carserver.Action for
// infotainment, a vcsec.UnsignedMessage for vehicle security).
type Action struct {
	Name    string
	Domain  protocol.Domain
	Payload []byte
	// Wake is set for wake_up, which is not a signed command but the Fleet
	// API's REST wake_up call.
	Wake bool
}

// args are a command's JSON arguments, checked one by one; every lookup
// records the key so that unknown keys can be refused.
type args struct {
	raw  map[string]json.RawMessage
	used map[string]bool
}

func parseArgs(data []byte) (*args, error) {
	a := &args{raw: map[string]json.RawMessage{}, used: map[string]bool{}}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return a, nil
	}
	if err := json.Unmarshal(data, &a.raw); err != nil {
		return nil, fmt.Errorf("arguments must be a JSON object: %w", err)
	}
	return a, nil
}

func (a *args) number(key string, required bool, lo, hi float64) (float64, bool, error) {
	a.used[key] = true
	raw, ok := a.raw[key]
	if !ok {
		if required {
			return 0, false, fmt.Errorf("missing argument %q (a number from %g to %g)", key, lo, hi)
		}
		return 0, false, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		// Tesla's proxy also accepts numbers sent as strings.
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false, fmt.Errorf("argument %q must be a number, got %s", key, raw)
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return 0, false, fmt.Errorf("argument %q must be a number, got %s", key, raw)
		}
	}
	if math.IsNaN(v) || v < lo || v > hi {
		return 0, false, fmt.Errorf("argument %q = %g is out of range %g to %g", key, v, lo, hi)
	}
	return v, true, nil
}

func (a *args) integer(key string, required bool, lo, hi int) (int32, bool, error) {
	v, ok, err := a.number(key, required, float64(lo), float64(hi))
	if err == nil && ok && v != math.Trunc(v) {
		err = fmt.Errorf("argument %q must be a whole number, got %g", key, v)
	}
	return int32(v), ok, err
}

func (a *args) boolean(key string, required bool) (bool, error) {
	a.used[key] = true
	raw, ok := a.raw[key]
	if !ok {
		if required {
			return false, fmt.Errorf("missing argument %q (true or false)", key)
		}
		return false, nil
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil {
		var s string
		if json.Unmarshal(raw, &s) == nil && (s == "true" || s == "false") {
			return s == "true", nil
		}
		return false, fmt.Errorf("argument %q must be true or false, got %s", key, raw)
	}
	return v, nil
}

func (a *args) str(key string, required bool) (string, bool, error) {
	a.used[key] = true
	raw, ok := a.raw[key]
	if !ok {
		if required {
			return "", false, fmt.Errorf("missing argument %q (a string)", key)
		}
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("argument %q must be a string, got %s", key, raw)
	}
	return s, true, nil
}

// unknown names arguments the command does not take. Tesla's proxy ignores
// them; we refuse them so that a typo ("percentage") is not silently lost.
func (a *args) unknown() error {
	var extra []string
	for k := range a.raw {
		if !a.used[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return fmt.Errorf("unknown argument(s) %q", extra)
}

func void() *cs.Void { return &cs.Void{} }

func infotainment(name string, va *cs.VehicleAction) (Action, error) {
	p, err := proto.Marshal(&cs.Action{ActionMsg: &cs.Action_VehicleAction{VehicleAction: va}})
	return Action{Name: name, Domain: protocol.DomainInfotainment, Payload: p}, err
}

func security(name string, m *vcsec.UnsignedMessage) (Action, error) {
	p, err := proto.Marshal(m)
	return Action{Name: name, Domain: protocol.DomainVehicleSecurity, Payload: p}, err
}

func rke(name string, a vcsec.RKEAction_E) (Action, error) {
	return security(name, &vcsec.UnsignedMessage{SubMessage: &vcsec.UnsignedMessage_RKEAction{RKEAction: a}})
}

func closure(name string, m *vcsec.ClosureMoveRequest) (Action, error) {
	return security(name, &vcsec.UnsignedMessage{SubMessage: &vcsec.UnsignedMessage_ClosureMoveRequest{ClosureMoveRequest: m}})
}

// seatHeaterPositions are the seat_position indexes of Tesla's REST
// remote_seat_heater_request, in order.
var seatHeaterPositions = []func(*cs.HvacSeatHeaterActions_HvacSeatHeaterAction){
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_FRONT_LEFT{CAR_SEAT_FRONT_LEFT: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_FRONT_RIGHT{CAR_SEAT_FRONT_RIGHT: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_REAR_LEFT{CAR_SEAT_REAR_LEFT: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_REAR_LEFT_BACK{CAR_SEAT_REAR_LEFT_BACK: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_REAR_CENTER{CAR_SEAT_REAR_CENTER: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_REAR_RIGHT{CAR_SEAT_REAR_RIGHT: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_REAR_RIGHT_BACK{CAR_SEAT_REAR_RIGHT_BACK: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_THIRD_ROW_LEFT{CAR_SEAT_THIRD_ROW_LEFT: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatPosition = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_CAR_SEAT_THIRD_ROW_RIGHT{CAR_SEAT_THIRD_ROW_RIGHT: void()}
	},
}

var seatHeaterLevels = []func(*cs.HvacSeatHeaterActions_HvacSeatHeaterAction){
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatHeaterLevel = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_SEAT_HEATER_OFF{SEAT_HEATER_OFF: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatHeaterLevel = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_SEAT_HEATER_LOW{SEAT_HEATER_LOW: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatHeaterLevel = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_SEAT_HEATER_MED{SEAT_HEATER_MED: void()}
	},
	func(a *cs.HvacSeatHeaterActions_HvacSeatHeaterAction) {
		a.SeatHeaterLevel = &cs.HvacSeatHeaterActions_HvacSeatHeaterAction_SEAT_HEATER_HIGH{SEAT_HEATER_HIGH: void()}
	},
}

// minutesOfDay is the range of Tesla's "minutes after midnight" arguments.
const minutesOfDay = 24 * 60

// Build validates a command given by its Tesla REST name and JSON
// arguments (as Tesla's HTTP proxy accepts them) and encodes it. Every
// error says which argument is wrong and why; nothing is sent for an
// invalid command.
func Build(name string, argsJSON []byte) (Action, error) {
	a, err := parseArgs(argsJSON)
	if err != nil {
		return Action{}, fmt.Errorf("%s: %w", name, err)
	}
	act, err := build(name, a)
	if err == nil {
		err = a.unknown()
	}
	if err != nil {
		return Action{}, fmt.Errorf("%s: %w", name, err)
	}
	return act, nil
}

func build(name string, a *args) (Action, error) {
	type va = cs.VehicleAction
	switch name {
	case "wake_up":
		return Action{Name: name, Wake: true}, nil
	case "charge_start", "charge_stop":
		ca := &cs.ChargingStartStopAction{ChargingAction: &cs.ChargingStartStopAction_Start{Start: void()}}
		if name == "charge_stop" {
			ca.ChargingAction = &cs.ChargingStartStopAction_Stop{Stop: void()}
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ChargingStartStopAction{ChargingStartStopAction: ca}})
	case "set_charge_limit":
		p, _, err := a.integer("percent", true, 50, 100)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ChargingSetLimitAction{ChargingSetLimitAction: &cs.ChargingSetLimitAction{Percent: p}}})
	case "set_charging_amps":
		amps, _, err := a.integer("charging_amps", true, 0, 80)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_SetChargingAmpsAction{SetChargingAmpsAction: &cs.SetChargingAmpsAction{ChargingAmps: amps}}})
	case "charge_port_door_open":
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ChargePortDoorOpen{ChargePortDoorOpen: &cs.ChargePortDoorOpen{}}})
	case "charge_port_door_close":
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ChargePortDoorClose{ChargePortDoorClose: &cs.ChargePortDoorClose{}}})
	case "auto_conditioning_start", "auto_conditioning_stop":
		on := name == "auto_conditioning_start"
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_HvacAutoAction{HvacAutoAction: &cs.HvacAutoAction{PowerOn: on}}})
	case "set_temps":
		d, _, err := a.number("driver_temp", true, 15, 28)
		if err != nil {
			return Action{}, err
		}
		p, ok, err := a.number("passenger_temp", false, 15, 28)
		if err != nil {
			return Action{}, err
		}
		if !ok {
			p = d
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_HvacTemperatureAdjustmentAction{HvacTemperatureAdjustmentAction: &cs.HvacTemperatureAdjustmentAction{
			DriverTempCelsius: float32(d), PassengerTempCelsius: float32(p),
			Level: &cs.HvacTemperatureAdjustmentAction_Temperature{Type: &cs.HvacTemperatureAdjustmentAction_Temperature_TEMP_MAX{TEMP_MAX: void()}},
		}}})
	case "set_preconditioning_max":
		on, err := a.boolean("on", true)
		if err != nil {
			return Action{}, err
		}
		override, err := a.boolean("manual_override", false)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_HvacSetPreconditioningMaxAction{HvacSetPreconditioningMaxAction: &cs.HvacSetPreconditioningMaxAction{On: on, ManualOverride: override}}})
	case "remote_seat_heater_request":
		seat, _, err := a.integer("seat_position", true, 0, len(seatHeaterPositions)-1)
		if err != nil {
			return Action{}, err
		}
		level, _, err := a.integer("level", true, 0, len(seatHeaterLevels)-1)
		if err != nil {
			return Action{}, err
		}
		h := &cs.HvacSeatHeaterActions_HvacSeatHeaterAction{}
		seatHeaterPositions[seat](h)
		seatHeaterLevels[level](h)
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_HvacSeatHeaterActions{HvacSeatHeaterActions: &cs.HvacSeatHeaterActions{HvacSeatHeaterAction: []*cs.HvacSeatHeaterActions_HvacSeatHeaterAction{h}}}})
	case "remote_steering_wheel_heater_request":
		on, err := a.boolean("on", true)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_HvacSteeringWheelHeaterAction{HvacSteeringWheelHeaterAction: &cs.HvacSteeringWheelHeaterAction{PowerOn: on}}})
	case "set_sentry_mode":
		on, err := a.boolean("on", true)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_VehicleControlSetSentryModeAction{VehicleControlSetSentryModeAction: &cs.VehicleControlSetSentryModeAction{On: on}}})
	case "door_lock":
		return rke(name, vcsec.RKEAction_E_RKE_ACTION_LOCK)
	case "door_unlock":
		return rke(name, vcsec.RKEAction_E_RKE_ACTION_UNLOCK)
	case "actuate_trunk":
		which, _, err := a.str("which_trunk", true)
		if err != nil {
			return Action{}, err
		}
		switch which {
		case "rear":
			return closure(name, &vcsec.ClosureMoveRequest{RearTrunk: vcsec.ClosureMoveType_E_CLOSURE_MOVE_TYPE_MOVE})
		case "front":
			return closure(name, &vcsec.ClosureMoveRequest{FrontTrunk: vcsec.ClosureMoveType_E_CLOSURE_MOVE_TYPE_MOVE})
		}
		return Action{}, fmt.Errorf("argument \"which_trunk\" must be \"front\" or \"rear\", got %q", which)
	case "window_control":
		cmd, _, err := a.str("command", true)
		if err != nil {
			return Action{}, err
		}
		// lat and lon are accepted for REST compatibility; cars that speak
		// the protocol do not need them.
		if _, _, err := a.number("lat", false, -90, 90); err != nil {
			return Action{}, err
		}
		if _, _, err := a.number("lon", false, -180, 180); err != nil {
			return Action{}, err
		}
		w := &cs.VehicleControlWindowAction{}
		switch cmd {
		case "vent":
			w.Action = &cs.VehicleControlWindowAction_Vent{Vent: void()}
		case "close":
			w.Action = &cs.VehicleControlWindowAction_Close{Close: void()}
		default:
			return Action{}, fmt.Errorf("argument \"command\" must be \"vent\" or \"close\", got %q", cmd)
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_VehicleControlWindowAction{VehicleControlWindowAction: w}})
	case "flash_lights":
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_VehicleControlFlashLightsAction{VehicleControlFlashLightsAction: &cs.VehicleControlFlashLightsAction{}}})
	case "honk_horn":
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_VehicleControlHonkHornAction{VehicleControlHonkHornAction: &cs.VehicleControlHonkHornAction{}}})
	case "set_scheduled_charging":
		on, err := a.boolean("enable", true)
		if err != nil {
			return Action{}, err
		}
		at, ok, err := a.integer("time", false, 0, minutesOfDay-1)
		if err != nil {
			return Action{}, err
		}
		if on && !ok {
			return Action{}, fmt.Errorf("missing argument \"time\" (minutes after midnight) to enable scheduled charging")
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ScheduledChargingAction{ScheduledChargingAction: &cs.ScheduledChargingAction{Enabled: on, ChargingTime: at}}})
	case "set_scheduled_departure":
		return scheduledDeparture(name, a)
	case "set_cabin_overheat_protection":
		on, err := a.boolean("on", true)
		if err != nil {
			return Action{}, err
		}
		fanOnly, err := a.boolean("fan_only", false)
		if err != nil {
			return Action{}, err
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_SetCabinOverheatProtectionAction{SetCabinOverheatProtectionAction: &cs.SetCabinOverheatProtectionAction{On: on, FanOnly: fanOnly}}})
	case "set_vehicle_name":
		n, _, err := a.str("vehicle_name", true)
		if err != nil {
			return Action{}, err
		}
		if n == "" || len(n) > 64 {
			return Action{}, fmt.Errorf("argument \"vehicle_name\" must be 1 to 64 bytes long")
		}
		return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_SetVehicleNameAction{SetVehicleNameAction: &cs.SetVehicleNameAction{VehicleName: n}}})
	}
	return Action{}, fmt.Errorf("unknown command (see Names for the supported ones)")
}

func scheduledDeparture(name string, a *args) (Action, error) {
	type va = cs.VehicleAction
	on, err := a.boolean("enable", true)
	if err != nil {
		return Action{}, err
	}
	policy := func(enabledKey, weekdaysKey string) (enabled, weekdays bool, err error) {
		if enabled, err = a.boolean(enabledKey, false); err != nil {
			return
		}
		weekdays, err = a.boolean(weekdaysKey, false)
		return
	}
	preOn, preWeekdays, err := policy("preconditioning_enabled", "preconditioning_weekdays_only")
	if err != nil {
		return Action{}, err
	}
	peakOn, peakWeekdays, err := policy("off_peak_charging_enabled", "off_peak_charging_weekdays_only")
	if err != nil {
		return Action{}, err
	}
	depart, _, err := a.integer("departure_time", false, 0, minutesOfDay)
	if err != nil {
		return Action{}, err
	}
	endPeak, _, err := a.integer("end_off_peak_time", false, 0, minutesOfDay)
	if err != nil {
		return Action{}, err
	}
	sd := &cs.ScheduledDepartureAction{Enabled: on}
	if on {
		sd.DepartureTime, sd.OffPeakHoursEndTime = depart, endPeak
		switch {
		case preWeekdays:
			sd.PreconditioningTimes = &cs.PreconditioningTimes{Times: &cs.PreconditioningTimes_Weekdays{Weekdays: void()}}
		case preOn:
			sd.PreconditioningTimes = &cs.PreconditioningTimes{Times: &cs.PreconditioningTimes_AllWeek{AllWeek: void()}}
		}
		switch {
		case peakWeekdays:
			sd.OffPeakChargingTimes = &cs.OffPeakChargingTimes{Times: &cs.OffPeakChargingTimes_Weekdays{Weekdays: void()}}
		case peakOn:
			sd.OffPeakChargingTimes = &cs.OffPeakChargingTimes{Times: &cs.OffPeakChargingTimes_AllWeek{AllWeek: void()}}
		}
	}
	return infotainment(name, &va{VehicleActionMsg: &cs.VehicleAction_ScheduledDepartureAction{ScheduledDepartureAction: sd}})
}

// Names lists the commands Build accepts, by their Tesla REST names.
func Names() []string {
	return []string{
		"wake_up", "charge_start", "charge_stop", "set_charge_limit", "set_charging_amps",
		"charge_port_door_open", "charge_port_door_close", "auto_conditioning_start",
		"auto_conditioning_stop", "set_temps", "set_preconditioning_max",
		"remote_seat_heater_request", "remote_steering_wheel_heater_request", "set_sentry_mode",
		"door_lock", "door_unlock", "actuate_trunk", "window_control", "flash_lights", "honk_horn",
		"set_scheduled_charging", "set_scheduled_departure", "set_cabin_overheat_protection",
		"set_vehicle_name",
	}
}
