package fleetapitest

import (
	"encoding/base64"
	"encoding/json"

	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	cs "github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/carserver"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/universalmessage"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/pb/vcsec"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol/vehicle"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The command side of the fake cars: signed_command (verified by
// command/protocol/vehicle exactly as a car verifies it: paired key,
// epoch, HMAC tag, expiry, counter), wake_up and the vehicle's state,
// and REST commands for cars that predate the Vehicle Command Protocol.
// Commands change a small CarState; observers (OnCarChange) see every
// change, so that a simulated car's stream can follow.

// DefaultWakeAfterPolls is how many GET /api/1/vehicles/{vin} calls after
// a wake_up a sleeping car still answers "asleep".
const DefaultWakeAfterPolls = 2

// CarState is what the fake car's commands change.
type CarState struct {
	PluggedIn      bool    // charge_start fails when false
	Charging       bool    // charge_start, charge_stop
	ChargeLimit    int     // set_charge_limit, percent
	ChargingAmps   int     // set_charging_amps
	ChargePortOpen bool    // charge_port_door_open, charge_port_door_close
	Locked         bool    // door_lock, door_unlock
	ClimateOn      bool    // auto_conditioning_start, auto_conditioning_stop
	DriverTemp     float64 // set_temps, °C
	PassengerTemp  float64
	Sentry         bool // set_sentry_mode
	FrunkOpen      bool // actuate_trunk front (toggles)
	TrunkOpen      bool // actuate_trunk rear (toggles)
	Flashes, Honks int  // flash_lights, honk_horn
}

// defaultCarState is a parked car, plugged in, not charging.
func defaultCarState() CarState {
	return CarState{PluggedIn: true, ChargeLimit: 80, ChargingAmps: 16, Locked: true, DriverTemp: 20, PassengerTemp: 20}
}

// CarObserver is told of every change a command makes to a car's state.
// It runs on the request's goroutine after the fake's locks are released;
// it must not block for long.
type CarObserver func(vin string, old, new CarState)

// carFleet holds the command side of every car; the zero value is ready.
type carFleet struct {
	mu        sync.Mutex
	cars      map[string]*Car
	observers []CarObserver
}

// Car is the command side of one fake car: one verifier per domain, the
// car's state, and knobs. Its methods are safe for concurrent use.
type Car struct {
	s   *Server
	vin string

	mu             sync.Mutex
	domains        map[protocol.Domain]*vehicle.Domain
	pairedKey      []byte // the application key on the keychains
	legacy         bool
	wakeAfterPolls int
	pollsLeft      int // polls until a woken car is online; -1 when not waking
	faults         []injectedFault
	signed, rest   int // commands received, by kind
	wakes          int

	// stateMu guards state alone: commands change it while their domain's
	// verifier is locked, so it is always taken last.
	stateMu sync.Mutex
	state   CarState
}

type injectedFault struct {
	domain protocol.Domain
	fault  protocol.Fault
}

// Car returns the command side of the owner's car vin, or nil when the
// owner has no such car.
func (s *Server) Car(vin string) *Car {
	s.mu.Lock()
	v := s.vehicleLocked(vin)
	legacy := v != nil && v.PredatesCommandProtocol
	s.mu.Unlock()
	if v == nil {
		return nil
	}
	f := &s.cars
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.cars[vin]; c != nil {
		return c
	}
	if f.cars == nil {
		f.cars = make(map[string]*Car)
	}
	c := &Car{s: s, vin: vin, domains: make(map[protocol.Domain]*vehicle.Domain),
		wakeAfterPolls: DefaultWakeAfterPolls, pollsLeft: -1, state: defaultCarState(), legacy: legacy}
	for _, d := range []protocol.Domain{protocol.DomainVehicleSecurity, protocol.DomainInfotainment} {
		dom, err := vehicle.NewDomain(vin, d, s.clock)
		if err != nil {
			panic("fake car key: " + err.Error()) // crypto/rand does not fail
		}
		c.domains[d] = dom
	}
	f.cars[vin] = c
	return c
}

// OnCarChange registers an observer of every car's state changes.
func (s *Server) OnCarChange(o CarObserver) {
	s.cars.mu.Lock()
	defer s.cars.mu.Unlock()
	s.cars.observers = append(s.cars.observers, o)
}

func (s *Server) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// State returns the car's state.
func (c *Car) State() CarState {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.state
}

// SetState replaces the car's state (observers are not told).
func (c *Car) SetState(st CarState) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.state = st
}

// UpdateState changes the car's state with fn, atomically with respect
// to commands (observers are not told): for a car whose state follows
// another source of truth, such as a simulated car's stream.
func (c *Car) UpdateState(fn func(*CarState)) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	fn(&c.state)
}

// SetLegacy makes the car one that predates the Vehicle Command Protocol:
// signed_command answers 422 and REST commands work.
func (c *Car) SetLegacy(legacy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.legacy = legacy
}

// Sleep puts the car to sleep; after a wake_up it answers "asleep" to
// polls more GET /api/1/vehicles/{vin} calls before it is online.
func (c *Car) Sleep(polls int) {
	c.mu.Lock()
	c.wakeAfterPolls, c.pollsLeft = polls, -1
	c.mu.Unlock()
	c.s.UpdateVehicle(c.vin, func(v *Vehicle) { v.State = "asleep" })
}

// Reboot restarts a domain: a new epoch, its clock at zero, every
// client's session stale (the next command gets INCORRECT_EPOCH).
func (c *Car) Reboot(d protocol.Domain) {
	c.mu.Lock()
	dom := c.domains[d]
	c.mu.Unlock()
	dom.Reboot()
}

// InjectFault makes the domain answer the next signed command (or
// handshake) with fault, before verifying it, as a busy subsystem does.
func (c *Car) InjectFault(d protocol.Domain, f protocol.Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, injectedFault{d, f})
}

// Counts returns how many signed_command and REST command requests and
// wake_up calls the car received.
func (c *Car) Counts() (signed, rest, wakes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signed, c.rest, c.wakes
}

// commandRoutes adds the vehicle command endpoints to a region's mux.
func (s *Server) commandRoutes(mux *http.ServeMux, owner func(func(http.ResponseWriter, *http.Request, fleetapi.Region)) http.HandlerFunc) {
	mux.HandleFunc("GET /api/1/vehicles/{vin}", owner(s.handleVehicle))
	mux.HandleFunc("POST /api/1/vehicles/{vin}/wake_up", owner(s.handleWakeUp))
	mux.HandleFunc("POST /api/1/vehicles/{vin}/signed_command", owner(s.handleSignedCommand))
	mux.HandleFunc("POST /api/1/vehicles/{vin}/command/{name}", owner(s.handleRESTCommand))
}

// commandScope answers 403 unless the token may send commands.
func (s *Server) commandScope(w http.ResponseWriter, r *http.Request, region fleetapi.Region) bool {
	tok, ok := s.bearer(w, r, region, ownerToken)
	if !ok {
		return false
	}
	if !slices.Contains(tok.scopes, "vehicle_cmds") && !slices.Contains(tok.scopes, "vehicle_charging_cmds") {
		writeJSON(w, http.StatusForbidden, errorBody("Unauthorized missing scopes", "vehicle commands need vehicle_cmds or vehicle_charging_cmds"))
		return false
	}
	return true
}

// vehicleFor answers 404 for an unknown car and returns the car's record
// (a copy) and command side.
func (s *Server) vehicleFor(w http.ResponseWriter, r *http.Request) (Vehicle, *Car, bool) {
	s.mu.Lock()
	v := s.vehicleLocked(r.PathValue("vin"))
	var rec Vehicle
	if v != nil {
		rec = v.Vehicle
	}
	s.mu.Unlock()
	if v == nil {
		writeJSON(w, http.StatusNotFound, errorBody("not_found", "vehicle not found"))
		return Vehicle{}, nil, false
	}
	return rec, s.Car(rec.VIN), true
}

func (s *Server) setVehicleState(vin, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vehicleLocked(vin); v != nil {
		v.State = state
	}
}

func (s *Server) handleVehicle(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	if !noQuery(w, r) {
		return
	}
	rec, car, ok := s.vehicleFor(w, r)
	if !ok {
		return
	}
	car.mu.Lock()
	if car.pollsLeft == 0 {
		car.pollsLeft = -1
		rec.State = "online"
	} else if car.pollsLeft > 0 {
		car.pollsLeft--
	}
	car.mu.Unlock()
	if rec.State == "online" {
		s.setVehicleState(rec.VIN, "online")
	}
	writeJSON(w, http.StatusOK, envelope(vehicleObject(&rec)))
}

func (s *Server) handleWakeUp(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	if !noQuery(w, r) || !s.commandScope(w, r, region) {
		return
	}
	rec, car, ok := s.vehicleFor(w, r)
	if !ok {
		return
	}
	car.mu.Lock()
	car.wakes++
	if rec.State != "online" && car.pollsLeft < 0 {
		car.pollsLeft = car.wakeAfterPolls
	}
	car.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope(vehicleObject(&rec)))
}

// vehicleUnavailable is Tesla's answer for a car that is asleep or offline.
func vehicleUnavailable() (int, map[string]any) {
	return http.StatusRequestTimeout, errorBody("vehicle unavailable: vehicle is offline or asleep", "")
}

func (s *Server) handleSignedCommand(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	var body struct {
		RoutableMessage string `json:"routable_message"`
	}
	if !noQuery(w, r) || !s.commandScope(w, r, region) || !readJSON(w, r, &body) {
		return
	}
	raw, err := base64.StdEncoding.DecodeString(body.RoutableMessage)
	var msg universalmessage.RoutableMessage
	if err == nil {
		err = proto.Unmarshal(raw, &msg)
	}
	if err != nil || len(raw) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "routable_message must be a base64 RoutableMessage"))
		return
	}
	rec, car, ok := s.vehicleFor(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	reg := s.registered[region]
	s.mu.Unlock()

	car.mu.Lock()
	car.signed++
	if car.legacy {
		car.mu.Unlock()
		writeJSON(w, http.StatusUnprocessableEntity, errorBody("vehicle does not support signed commands", ""))
		return
	}
	if rec.State != "online" {
		car.mu.Unlock()
		status, b := vehicleUnavailable()
		writeJSON(w, status, b)
		return
	}
	dest := msg.GetToDestination().GetDomain()
	dom := car.domains[dest]
	if dom == nil {
		dom = car.domains[protocol.DomainInfotainment] // answers INVALID_DOMAINS
	}
	// The car's keychain holds the application key once the owner paired it.
	if rec.Paired && reg != nil {
		if pub, err := fleetapi.PublicKeyBytes(reg.key); err == nil && !slices.Equal(pub, car.pairedKey) {
			for _, d := range car.domains {
				_ = d.Pair(pub)
			}
			car.pairedKey = pub
		}
	}
	var injected *injectedFault
	if i := slices.IndexFunc(car.faults, func(f injectedFault) bool { return f.domain == dest }); i >= 0 {
		f := car.faults[i]
		injected = &f
		car.faults = slices.Delete(car.faults, i, i+1)
	}
	car.mu.Unlock()

	var resp *universalmessage.RoutableMessage
	var changes [][2]CarState
	if injected != nil {
		resp = &universalmessage.RoutableMessage{
			ToDestination:   msg.GetFromDestination(),
			FromDestination: &universalmessage.Destination{SubDestination: &universalmessage.Destination_Domain{Domain: dest}},
			RequestUuid:     msg.GetUuid(),
			SignedMessageStatus: &universalmessage.MessageStatus{
				OperationStatus:    universalmessage.OperationStatus_E_OPERATIONSTATUS_ERROR,
				SignedMessageFault: injected.fault,
			},
		}
	} else {
		resp = dom.Handle(&msg, vehicle.ExecutorFunc(func(d protocol.Domain, payload []byte) ([]byte, error) {
			answer, old, changed, err := car.execute(d, payload)
			if changed {
				changes = append(changes, [2]CarState{old, car.State()})
			}
			return answer, err
		}))
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("internal_error", err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, envelope(base64.StdEncoding.EncodeToString(out)))
	s.notify(rec.VIN, changes)
}

func (s *Server) notify(vin string, changes [][2]CarState) {
	if len(changes) == 0 {
		return
	}
	s.cars.mu.Lock()
	obs := slices.Clone(s.cars.observers)
	s.cars.mu.Unlock()
	for _, ch := range changes {
		for _, o := range obs {
			o(vin, ch[0], ch[1])
		}
	}
}

// execute applies a verified payload to the car's state and returns the
// application-layer answer.
func (c *Car) execute(d protocol.Domain, payload []byte) (answer []byte, old CarState, changed bool, err error) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	old = c.state
	if d == protocol.DomainVehicleSecurity {
		var m vcsec.UnsignedMessage
		if err := proto.Unmarshal(payload, &m); err != nil {
			return nil, old, false, err
		}
		reason := c.applySecurity(&m)
		var out *vcsec.FromVCSECMessage
		if reason == vcsec.GenericError_E_GENERICERROR_NONE {
			out = &vcsec.FromVCSECMessage{SubMessage: &vcsec.FromVCSECMessage_CommandStatus{CommandStatus: &vcsec.CommandStatus{OperationStatus: vcsec.OperationStatus_E_OPERATIONSTATUS_OK}}}
		} else {
			out = &vcsec.FromVCSECMessage{SubMessage: &vcsec.FromVCSECMessage_NominalError{NominalError: &vcsec.NominalError{GenericError: reason}}}
		}
		answer, err = proto.Marshal(out)
		return answer, old, c.state != old, err
	}
	var a cs.Action
	if err := proto.Unmarshal(payload, &a); err != nil {
		return nil, old, false, err
	}
	status := &cs.ActionStatus{Result: cs.OperationStatus_E_OPERATIONSTATUS_OK}
	if reason := c.applyVehicleAction(a.GetVehicleAction()); reason != "" {
		status = &cs.ActionStatus{Result: cs.OperationStatus_E_OPERATIONSTATUS_ERROR,
			ResultReason: &cs.ResultReason{Reason: &cs.ResultReason_PlainText{PlainText: reason}}}
	}
	answer, err = proto.Marshal(&cs.Response{ActionStatus: status})
	return answer, old, c.state != old, err
}

func (c *Car) applySecurity(m *vcsec.UnsignedMessage) vcsec.GenericError_E {
	switch sub := m.GetSubMessage().(type) {
	case *vcsec.UnsignedMessage_RKEAction:
		switch sub.RKEAction {
		case vcsec.RKEAction_E_RKE_ACTION_LOCK:
			c.state.Locked = true
		case vcsec.RKEAction_E_RKE_ACTION_UNLOCK:
			c.state.Locked = false
		}
	case *vcsec.UnsignedMessage_ClosureMoveRequest:
		if sub.ClosureMoveRequest.GetFrontTrunk() == vcsec.ClosureMoveType_E_CLOSURE_MOVE_TYPE_MOVE {
			c.state.FrunkOpen = !c.state.FrunkOpen
		}
		if sub.ClosureMoveRequest.GetRearTrunk() == vcsec.ClosureMoveType_E_CLOSURE_MOVE_TYPE_MOVE {
			c.state.TrunkOpen = !c.state.TrunkOpen
		}
	default:
		return vcsec.GenericError_E_GENERICERROR_UNKNOWN
	}
	return vcsec.GenericError_E_GENERICERROR_NONE
}

// applyVehicleAction changes the state; a non-empty reason is the car's
// refusal, in the words cars use.
func (c *Car) applyVehicleAction(va *cs.VehicleAction) string {
	st := &c.state
	switch m := va.GetVehicleActionMsg().(type) {
	case *cs.VehicleAction_ChargingStartStopAction:
		if m.ChargingStartStopAction.GetStart() != nil {
			if !st.PluggedIn {
				return "disconnected"
			}
			if st.Charging {
				return "is_charging"
			}
			st.Charging = true
		} else {
			if !st.Charging {
				return "not_charging"
			}
			st.Charging = false
		}
	case *cs.VehicleAction_ChargingSetLimitAction:
		p := int(m.ChargingSetLimitAction.GetPercent())
		if p < 50 || p > 100 {
			return "invalid charge limit"
		}
		st.ChargeLimit = p
	case *cs.VehicleAction_SetChargingAmpsAction:
		st.ChargingAmps = int(m.SetChargingAmpsAction.GetChargingAmps())
	case *cs.VehicleAction_ChargePortDoorOpen:
		st.ChargePortOpen = true
	case *cs.VehicleAction_ChargePortDoorClose:
		st.ChargePortOpen = false
	case *cs.VehicleAction_HvacAutoAction:
		st.ClimateOn = m.HvacAutoAction.GetPowerOn()
	case *cs.VehicleAction_HvacTemperatureAdjustmentAction:
		st.DriverTemp = float64(m.HvacTemperatureAdjustmentAction.GetDriverTempCelsius())
		st.PassengerTemp = float64(m.HvacTemperatureAdjustmentAction.GetPassengerTempCelsius())
	case *cs.VehicleAction_VehicleControlSetSentryModeAction:
		st.Sentry = m.VehicleControlSetSentryModeAction.GetOn()
	case *cs.VehicleAction_VehicleControlFlashLightsAction:
		st.Flashes++
	case *cs.VehicleAction_VehicleControlHonkHornAction:
		st.Honks++
	case nil:
		return "unknown command"
	}
	// Every other known action is accepted without a modelled effect.
	return ""
}

// restCommand applies a REST command by name, for legacy cars.
func (c *Car) restCommand(name string, args map[string]json.RawMessage) (reason string, err error) {
	num := func(key string) (float64, error) {
		var v float64
		if err := json.Unmarshal(args[key], &v); err != nil {
			return 0, fmt.Errorf("%s must be a number", key)
		}
		return v, nil
	}
	boolean := func(key string) (bool, error) {
		var v bool
		if err := json.Unmarshal(args[key], &v); err != nil {
			return false, fmt.Errorf("%s must be true or false", key)
		}
		return v, nil
	}
	va := &cs.VehicleAction{}
	switch name {
	case "charge_start", "charge_stop":
		a := &cs.ChargingStartStopAction{ChargingAction: &cs.ChargingStartStopAction_Start{Start: &cs.Void{}}}
		if name == "charge_stop" {
			a.ChargingAction = &cs.ChargingStartStopAction_Stop{Stop: &cs.Void{}}
		}
		va.VehicleActionMsg = &cs.VehicleAction_ChargingStartStopAction{ChargingStartStopAction: a}
	case "set_charge_limit":
		p, err := num("percent")
		if err != nil {
			return "", err
		}
		va.VehicleActionMsg = &cs.VehicleAction_ChargingSetLimitAction{ChargingSetLimitAction: &cs.ChargingSetLimitAction{Percent: int32(p)}}
	case "set_charging_amps":
		p, err := num("charging_amps")
		if err != nil {
			return "", err
		}
		va.VehicleActionMsg = &cs.VehicleAction_SetChargingAmpsAction{SetChargingAmpsAction: &cs.SetChargingAmpsAction{ChargingAmps: int32(p)}}
	case "auto_conditioning_start", "auto_conditioning_stop":
		va.VehicleActionMsg = &cs.VehicleAction_HvacAutoAction{HvacAutoAction: &cs.HvacAutoAction{PowerOn: name == "auto_conditioning_start"}}
	case "set_sentry_mode":
		on, err := boolean("on")
		if err != nil {
			return "", err
		}
		va.VehicleActionMsg = &cs.VehicleAction_VehicleControlSetSentryModeAction{VehicleControlSetSentryModeAction: &cs.VehicleControlSetSentryModeAction{On: on}}
	case "flash_lights":
		va.VehicleActionMsg = &cs.VehicleAction_VehicleControlFlashLightsAction{VehicleControlFlashLightsAction: &cs.VehicleControlFlashLightsAction{}}
	case "honk_horn":
		va.VehicleActionMsg = &cs.VehicleAction_VehicleControlHonkHornAction{VehicleControlHonkHornAction: &cs.VehicleControlHonkHornAction{}}
	case "door_lock", "door_unlock":
		c.state.Locked = name == "door_lock"
		return "", nil
	default:
		return "", nil // accepted without a modelled effect
	}
	return c.applyVehicleAction(va), nil
}

func (s *Server) handleRESTCommand(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	if !noQuery(w, r) || !s.commandScope(w, r, region) {
		return
	}
	var args map[string]json.RawMessage
	if !readJSON(w, r, &args) {
		return
	}
	rec, car, ok := s.vehicleFor(w, r)
	if !ok {
		return
	}
	car.mu.Lock()
	car.rest++
	if !car.legacy {
		car.mu.Unlock()
		writeJSON(w, http.StatusForbidden, errorBody("Tesla Vehicle Command Protocol required, please refer to the documentation", ""))
		return
	}
	if rec.State != "online" {
		car.mu.Unlock()
		status, b := vehicleUnavailable()
		writeJSON(w, status, b)
		return
	}
	car.mu.Unlock()
	car.stateMu.Lock()
	old := car.state
	reason, err := car.restCommand(r.PathValue("name"), args)
	st := car.state
	car.stateMu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, envelope(map[string]any{"result": reason == "", "reason": reason}))
	if st != old {
		s.notify(rec.VIN, [][2]CarState{{old, st}})
	}
}
