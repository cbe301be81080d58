package mqtt

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A control is one per-control topic, <prefix>/<VIN>/set/<control>, as
// the Home Assistant entities publish on it: a plain payload (ON, 80,
// LOCK, PRESS, high) that becomes one Tesla command.
type control func(payload string) (name string, args any, err error)

// seatPositions are the select entities' seats, by the seat_position index
// of remote_seat_heater_request.
var seatPositions = map[string]int{
	"seat_heater_front_left":  0,
	"seat_heater_front_right": 1,
	"seat_heater_rear_left":   2,
	"seat_heater_rear_center": 4,
	"seat_heater_rear_right":  5,
}

// SeatHeatLevels are the select entities' options, by level 0 to 3.
var SeatHeatLevels = []string{"off", "low", "medium", "high"}

var controls = map[string]control{
	"charging":      onOff("charge_start", "charge_stop"),
	"charge_limit":  numberArg("set_charge_limit", "percent"),
	"charging_amps": numberArg("set_charging_amps", "charging_amps"),
	"climate": func(p string) (string, any, error) {
		switch strings.ToLower(p) {
		case "on", "heat_cool", "auto", "heat", "cool":
			return "auto_conditioning_start", nil, nil
		case "off":
			return "auto_conditioning_stop", nil, nil
		}
		return "", nil, fmt.Errorf("want ON or OFF (or a Home Assistant HVAC mode), got %q", p)
	},
	"temperature": func(p string) (string, any, error) {
		t, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return "", nil, fmt.Errorf("want a temperature in °C, got %q", p)
		}
		return "set_temps", map[string]float64{"driver_temp": t, "passenger_temp": t}, nil
	},
	"lock": func(p string) (string, any, error) {
		switch strings.ToUpper(p) {
		case "LOCK":
			return "door_lock", nil, nil
		case "UNLOCK":
			return "door_unlock", nil, nil
		}
		return "", nil, fmt.Errorf("want LOCK or UNLOCK, got %q", p)
	},
	"sentry": onOffArg("set_sentry_mode", "on"),
	"charge_port": func(p string) (string, any, error) {
		switch strings.ToUpper(p) {
		case "OPEN":
			return "charge_port_door_open", nil, nil
		case "CLOSE":
			return "charge_port_door_close", nil, nil
		}
		return "", nil, fmt.Errorf("want OPEN or CLOSE, got %q", p)
	},
	"frunk":                 press("actuate_trunk", map[string]string{"which_trunk": "front"}),
	"trunk":                 press("actuate_trunk", map[string]string{"which_trunk": "rear"}),
	"wake":                  press("wake_up", nil),
	"flash":                 press("flash_lights", nil),
	"honk":                  press("honk_horn", nil),
	"steering_wheel_heater": onOffArg("remote_steering_wheel_heater_request", "on"),
}

func init() {
	for name, pos := range seatPositions {
		controls[name] = func(p string) (string, any, error) {
			for level, l := range SeatHeatLevels {
				if strings.EqualFold(p, l) || p == strconv.Itoa(level) {
					return "remote_seat_heater_request", map[string]int{"seat_position": pos, "level": level}, nil
				}
			}
			return "", nil, fmt.Errorf("want one of %s, got %q", strings.Join(SeatHeatLevels, ", "), p)
		}
	}
}

// Controls lists the per-control topic names (the last level of
// <prefix>/<VIN>/set/<control>).
func Controls() []string {
	out := make([]string, 0, len(controls))
	for name := range controls {
		out = append(out, name)
	}
	return out
}

func onOff(on, off string) control {
	return func(p string) (string, any, error) {
		b, err := parseOnOff(p)
		if err != nil {
			return "", nil, err
		}
		if b {
			return on, nil, nil
		}
		return off, nil, nil
	}
}

func onOffArg(name, key string) control {
	return func(p string) (string, any, error) {
		b, err := parseOnOff(p)
		if err != nil {
			return "", nil, err
		}
		return name, map[string]bool{key: b}, nil
	}
}

func parseOnOff(p string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(p)) {
	case "ON", "TRUE", "1":
		return true, nil
	case "OFF", "FALSE", "0":
		return false, nil
	}
	return false, fmt.Errorf("want ON or OFF, got %q", p)
}

func numberArg(name, key string) control {
	return func(p string) (string, any, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return "", nil, fmt.Errorf("want a number, got %q", p)
		}
		return name, map[string]float64{key: v}, nil
	}
}

func press(name string, args any) control {
	return func(p string) (string, any, error) {
		switch strings.ToUpper(strings.TrimSpace(p)) {
		case "", "PRESS", "OPEN", "ON":
			return name, args, nil
		}
		return "", nil, fmt.Errorf("want PRESS, got %q", p)
	}
}

// singleArg names the argument of the commands that take one, so that a
// command topic may carry a plain value instead of a JSON object.
var singleArg = map[string]string{
	"set_charge_limit":                     "percent",
	"set_charging_amps":                    "charging_amps",
	"set_sentry_mode":                      "on",
	"set_preconditioning_max":              "on",
	"remote_steering_wheel_heater_request": "on",
	"set_cabin_overheat_protection":        "on",
	"actuate_trunk":                        "which_trunk",
	"window_control":                       "command",
	"set_vehicle_name":                     "vehicle_name",
}

// commandArgs turns a command topic's payload into the command's JSON
// arguments: a JSON object as it is ("only_if_awake" taken out), nothing
// for an empty payload, a plain value as the command's one argument
// (set_temps: both temperatures).
func commandArgs(name string, payload []byte) (args json.RawMessage, onlyIfAwake bool, err error) {
	p := strings.TrimSpace(string(payload))
	if p == "" {
		return nil, false, nil
	}
	if strings.HasPrefix(p, "{") {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(p), &obj); err != nil {
			return nil, false, fmt.Errorf("the payload is not a JSON object: %w", err)
		}
		if raw, ok := obj["only_if_awake"]; ok {
			if err := json.Unmarshal(raw, &onlyIfAwake); err != nil {
				return nil, false, fmt.Errorf("only_if_awake must be true or false, got %s", raw)
			}
			delete(obj, "only_if_awake")
		}
		out, err := json.Marshal(obj)
		return out, onlyIfAwake, err
	}
	value := plainValue(p)
	if name == "set_temps" {
		out, err := json.Marshal(map[string]json.RawMessage{"driver_temp": value, "passenger_temp": value})
		return out, false, err
	}
	key, ok := singleArg[name]
	if !ok {
		return nil, false, fmt.Errorf("%s takes a JSON object of arguments (or none), not %q", name, p)
	}
	out, err := json.Marshal(map[string]json.RawMessage{key: value})
	return out, false, err
}

// plainValue is p as JSON: a number, true or false as they are (ON and
// OFF as true and false), anything else as a string.
func plainValue(p string) json.RawMessage {
	if b, err := parseOnOff(p); err == nil && !isNumber(p) {
		return json.RawMessage(strconv.FormatBool(b))
	}
	if isNumber(p) {
		return json.RawMessage(p)
	}
	q, _ := json.Marshal(strings.Trim(p, `"`))
	return q
}

func isNumber(p string) bool {
	_, err := strconv.ParseFloat(p, 64)
	return err == nil && json.Valid([]byte(p))
}

// ParseControl turns a message on a per-control topic,
// <prefix>/<VIN>/set/<control>, into the command it stands for.
func ParseControl(prefix, topic string, payload []byte) (name string, args json.RawMessage, err error) {
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[1] != "set" {
		return "", nil, fmt.Errorf("%q is not a control topic %s/<VIN>/set/<control>", topic, prefix)
	}
	ctl, ok := controls[parts[2]]
	if !ok {
		return "", nil, fmt.Errorf("unknown control %q", parts[2])
	}
	name, a, err := ctl(strings.TrimSpace(string(payload)))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", parts[2], err)
	}
	if a != nil {
		if args, err = json.Marshal(a); err != nil {
			return "", nil, err
		}
	}
	return name, args, nil
}
