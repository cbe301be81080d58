package discovery

import (
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Controls are the Home Assistant entities that command a car: a switch
// for charging, numbers for the charge limit and charging amps, a climate
// entity, a lock, a sentry-mode switch, a cover for the charge port,
// buttons for frunk, trunk, wake, flash and honk, selects for seat heat
// and a switch for the steering-wheel heater. They sit in the car's
// device next to its signals.
//
// They command through <bridge prefix>/<VIN>/set/<control> (package
// command/mqtt turns each payload into a signed command), and their state
// comes from the streamed signals, never from what was last commanded:
// value templates read the signal topics, and the bridge's None shows as
// unknown. A command the car refuses leaves the state as the car reports
// it.
type Controls struct {
	// Enabled: vehicle commands are on (commands.enabled). Without it no
	// control is announced, whatever the categories say.
	Enabled bool
	// The categories of commands.categories; each announces its controls.
	Charging, Climate, Security, Access, Alerts bool
}

// controlPrefix starts every control's component key and object id: no
// signal name starts with it (they are CamelCase).
const controlPrefix = "control_"

// control is one control entity.
type control struct {
	key      string // component key and object id, after controlPrefix
	platform string
	// category says which Controls flag announces it; "" for every car
	// with commands on (wake).
	category string
	// signal is the signal whose topic carries the state, "" for none
	// (buttons). needsSignal announces the control only for cars that
	// stream or have sent that signal (seat heaters: not every car has
	// every seat).
	signal      string
	needsSignal bool
	// static holds the component's other members, after state_topic.
	static string
}

// The templates turn the signal's payload into the entity's state; each
// lets the bridge's None through (Home Assistant shows unknown).
var controls = []control{
	{key: "charging", platform: "switch", category: "charging", signal: "DetailedChargeState",
		static: `,"name":"Charging","icon":"mdi:ev-station","payload_on":"ON","payload_off":"OFF","state_on":"ON","state_off":"OFF",` +
			`"value_template":"{{ 'None' if value == 'None' else ('ON' if value in ['Charging', 'Starting'] else 'OFF') }}"`},
	{key: "charge_limit", platform: "number", category: "charging", signal: "ChargeLimitSoc",
		static: `,"name":"Charge limit","icon":"mdi:battery-charging-80","min":50,"max":100,"step":1,"mode":"slider","unit_of_measurement":"%"`},
	{key: "charging_amps", platform: "number", category: "charging", signal: "ChargeCurrentRequest",
		static: `,"name":"Charging amps","icon":"mdi:current-ac","min":0,"max":48,"step":1,"mode":"box","unit_of_measurement":"A","device_class":"current"`},
	{key: "charge_port", platform: "cover", category: "charging", signal: "ChargePortDoorOpen",
		static: `,"name":"Charge port","icon":"mdi:ev-plug-type2","device_class":"door","payload_open":"OPEN","payload_close":"CLOSE","payload_stop":null,"state_open":"true","state_closed":"false"`},
	{key: "climate", platform: "climate", category: "climate", signal: "HvacPower",
		static: `,"name":"Climate","modes":["off","heat_cool"],"mode_command_topic":"{set}climate","mode_state_topic":"{car}HvacPower",` +
			`"mode_state_template":"{{ 'None' if value == 'None' else ('off' if value in ['Off', 'Unknown'] else 'heat_cool') }}",` +
			`"current_temperature_topic":"{car}InsideTemp","temperature_command_topic":"{set}temperature","temperature_state_topic":"{car}HvacLeftTemperatureRequest",` +
			`"min_temp":15,"max_temp":28,"temp_step":0.5,"precision":0.5,"temperature_unit":"C"`},
	{key: "lock", platform: "lock", category: "security", signal: "Locked",
		static: `,"name":"Doors","payload_lock":"LOCK","payload_unlock":"UNLOCK","state_locked":"true","state_unlocked":"false"`},
	{key: "sentry", platform: "switch", category: "security", signal: "SentryMode",
		static: `,"name":"Sentry mode","icon":"mdi:cctv","payload_on":"ON","payload_off":"OFF","state_on":"ON","state_off":"OFF",` +
			`"value_template":"{{ 'None' if value == 'None' else ('OFF' if value in ['Off', 'Unknown'] else 'ON') }}"`},
	{key: "frunk", platform: "button", category: "access",
		static: `,"name":"Open frunk","icon":"mdi:car-select","payload_press":"PRESS"`},
	{key: "trunk", platform: "button", category: "access",
		static: `,"name":"Open or close trunk","icon":"mdi:car-back","payload_press":"PRESS"`},
	{key: "wake", platform: "button",
		static: `,"name":"Wake up","icon":"mdi:sleep-off","payload_press":"PRESS","entity_category":"config"`},
	{key: "flash", platform: "button", category: "alerts",
		static: `,"name":"Flash lights","icon":"mdi:car-light-high","payload_press":"PRESS"`},
	{key: "honk", platform: "button", category: "alerts",
		static: `,"name":"Honk horn","icon":"mdi:bullhorn","payload_press":"PRESS"`},
	seatHeater("seat_heater_front_left", "Seat heater front left", "SeatHeaterLeft"),
	seatHeater("seat_heater_front_right", "Seat heater front right", "SeatHeaterRight"),
	seatHeater("seat_heater_rear_left", "Seat heater rear left", "SeatHeaterRearLeft"),
	seatHeater("seat_heater_rear_center", "Seat heater rear center", "SeatHeaterRearCenter"),
	seatHeater("seat_heater_rear_right", "Seat heater rear right", "SeatHeaterRearRight"),
	{key: "steering_wheel_heater", platform: "switch", category: "climate", signal: "HvacSteeringWheelHeatLevel", needsSignal: true,
		static: `,"name":"Steering wheel heater","icon":"mdi:steering","payload_on":"ON","payload_off":"OFF","state_on":"ON","state_off":"OFF",` +
			`"value_template":"{{ 'None' if value == 'None' else ('ON' if value | int(0) > 0 else 'OFF') }}"`},
}

// SeatHeatOptions are the seat heater selects' options, levels 0 to 3.
var SeatHeatOptions = []string{"off", "low", "medium", "high"}

func seatHeater(key, name, signal string) control {
	return control{key: key, platform: "select", category: "climate", signal: signal, needsSignal: true,
		static: `,"name":"` + name + `","icon":"mdi:car-seat-heater","options":["off","low","medium","high"],` +
			`"value_template":"{{ ['off', 'low', 'medium', 'high'][value | int] if value in ['0', '1', '2', '3'] else 'None' }}"`}
}

func (c Controls) on(category string) bool {
	switch category {
	case "":
		return true
	case "charging":
		return c.Charging
	case "climate":
		return c.Climate
	case "security":
		return c.Security
	case "access":
		return c.Access
	case "alerts":
		return c.Alerts
	}
	return false
}

// selectedControls returns the controls announced for a car.
func selectedControls(cfg Config, v Vehicle) []*control {
	if !cfg.Controls.Enabled {
		return nil
	}
	var has map[string]bool
	out := make([]*control, 0, len(controls))
	for i := range controls {
		c := &controls[i]
		if !cfg.Controls.on(c.category) {
			continue
		}
		if c.needsSignal {
			if has == nil {
				has = make(map[string]bool)
				for _, list := range [2][]telemetry.Field{v.Streaming, v.Seen} {
					for _, f := range list {
						has[f.String()] = true
					}
				}
			}
			if !has[c.signal] {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// appendControls appends the car's control components, each preceded by
// a comma.
func appendControls(buf []byte, cfg Config, b Bridge, v Vehicle, devID, devSlug string) []byte {
	for _, c := range selectedControls(cfg, v) {
		buf = append(buf, ',')
		buf = appendHead(buf, controlPrefix+c.key, c.platform, devID, devSlug, c.key)
		if c.platform != "climate" {
			buf = append(buf, `,"command_topic":`...)
			buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/set/", c.key)
			if c.signal != "" {
				buf = append(buf, `,"state_topic":`...)
				buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/", c.signal)
			}
		}
		buf = appendExpanded(buf, c.static, b.Prefix+"/"+v.VIN+"/")
		buf = append(buf, '}')
	}
	return buf
}

// appendExpanded appends static with {car} replaced by the car's topic
// prefix and {set} by its control topic prefix, JSON-escaped.
func appendExpanded(buf []byte, static, car string) []byte {
	for {
		i := indexBrace(static)
		if i < 0 {
			return append(buf, static...)
		}
		buf = append(buf, static[:i]...)
		var with string
		switch {
		case len(static) >= i+5 && static[i:i+5] == "{car}":
			with, static = car, static[i+5:]
		case len(static) >= i+5 && static[i:i+5] == "{set}":
			with, static = car+"set/", static[i+5:]
		default:
			buf = append(buf, '{')
			static = static[i+1:]
			continue
		}
		q := telemetry.AppendJSONString(nil, with)
		buf = append(buf, q[1:len(q)-1]...)
	}
}

// indexBrace finds the next "{car}" or "{set}" placeholder's brace, or -1.
func indexBrace(s string) int {
	for i := 0; i+5 <= len(s); i++ {
		if s[i] == '{' && (s[i:i+5] == "{car}" || s[i:i+5] == "{set}") {
			return i
		}
	}
	return -1
}

// controlKeys are the component keys of the controls announced for a car.
func controlKeys(cfg Config, v Vehicle) []string {
	sel := selectedControls(cfg, v)
	keys := make([]string, len(sel))
	for i, c := range sel {
		keys[i] = controlPrefix + c.key
	}
	return keys
}
