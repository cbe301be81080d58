// Package discovery announces cars to Home Assistant through MQTT
// discovery. It holds pure functions only: from the field catalog, the
// configuration and what is known of a car, it makes the messages the
// bridge publishes; it never touches the network.
//
// # One device per car
//
// Each car is one device-based discovery config, retained, at
//
//	<prefix>/device/fleet2mqtt_<VIN>/config     (prefix default homeassistant)
//
// with the device (ids fleet2mqtt_<VIN>, name, manufacturer Tesla, model
// and model year decoded from the VIN, software version from the Version
// signal, serial number the VIN), the origin (fleet2mqtt, its version, its
// URL), the bridge's availability, and one component per entity. Messages
// makes it, RemoveMessages removes components that are no longer
// selected, RemoveDevice removes the car.
//
// # Ids
//
// Every id starts with the device id, fleet2mqtt_<VIN>, so that two cars
// never share one and other MQTT bridges that use bare VINs cannot clash:
//
//	unique_id      fleet2mqtt_<VIN>_<Field>          fleet2mqtt_5YJ3…_BatteryLevel
//	               fleet2mqtt_<VIN>_<Field>_<part>   fleet2mqtt_5YJ3…_DoorState_DriverFront
//	component key  <Field>, <Field>_<part>, streaming, alerts
//
// Ids hold only [A-Za-z0-9_-]; VIN characters outside [A-Za-z0-9] are
// written as -XX. Replicas of one installation serving the same car make
// the same topic, and the same payload once they know the same of the car
// (ParseAnnouncement reads another replica's config back into a Vehicle's
// signals, name and version; package bridge/announce merges them), so
// announcing twice only repeats a retained message. Two separate
// installations that serve the same car on one
// broker must set Config.Instance to different values: the instance then
// sits in every id (fleet2mqtt_<instance>_<VIN>…), and each makes its own
// device. Without it they would overwrite each other's config.
//
// # Entity ids and names
//
// default_entity_id suggests the entity id once, when Home Assistant first
// sees the entity: <platform>.<car>_<field>, where <car> is the display
// name (else the VIN) and <field> the protocol name in snake case, so that
// an entity id can be traced to its topic:
//
//	tesla/<VIN>/BatteryLevel   sensor.ellie_battery_level
//	tesla/<VIN>/DoorState      binary_sensor.ellie_door_driver_front, …, binary_sensor.ellie_frunk
//
// Entity names (shown after the device name) split the CamelCase protocol
// name into words ("DC charging power"); a table names the fields whose
// split reads badly (Soc is "State of charge", DiHeatsinkTREL is "Rear left
// motor heatsink temperature").
//
// # Which signals
//
// A car announces the signals in its streaming configuration (when known)
// and every signal it has sent, without those excluded, and only those
// included when Config.Include is set; never the catalog's component
// "none" (placeholders, experimental fields, route lines). Fields the
// catalog does not know (newer firmware) are not announced: nothing says
// how to show them. Two entities are always there: Streaming (binary
// sensor, connectivity, on <bridge prefix>/<VIN>/connected) and Active
// alerts (the number of active alerts, their list in the attributes, on
// <bridge prefix>/<VIN>/active_alerts).
//
// # How signals are shown
//
// Component, device class, state class and unit come from the catalog;
// the unit is the car's (miles, mph, °C, bar) and Home Assistant converts
// to the user's units. Where Home Assistant would reject the catalog's
// choice, the correction table in this package says what is announced
// instead (the legacy ChargeState string has no known option list, so it
// is a text sensor). Further:
//
//   - Enum signals are enum sensors whose options are every short name of
//     the enum.
//   - Booleans are binary sensors with payload_on "true", payload_off
//     "false". Locked uses Home Assistant's lock class, where on means
//     unlocked: payload_on "false", payload_off "true".
//   - Timestamps (epoch seconds) are timestamp sensors whose template makes
//     the ISO 8601 time Home Assistant requires; 0 reads as unknown.
//   - Locations are device trackers (source gps) fed by the JSON
//     attributes of their topic ({"latitude":…,"longitude":…}).
//   - DoorState makes one door binary sensor per door, the tire warning
//     signals one problem binary sensor per tire (the Semi's extra
//     positions on Semis only), each picking its member of the JSON object.
//   - Diagnostic signals go to Home Assistant's diagnostic section.
//   - Obscure signals are announced disabled by default (the user enables
//     them in Home Assistant): diagnostic signals in the categories drive,
//     diagnostic, other, tires and media, such as drive inverter
//     internals, pedal positions, static car configuration and Semi tire
//     pressures. Config.EnableObscure announces them enabled.
//   - Numeric sensors with a unit suggest a display precision: integers 0
//     decimals; floats by unit (% 0, mi 1, mph 0, V 0, A 1, °C 1, kWh 2,
//     kW 1, bar 2, h 1, min 0), cell voltages 3.
//
// A signal without a valid value has the payload None on its topic; every
// template here passes None through, which Home Assistant shows as
// unknown. Four enums have a value whose short name is None
// (LaneAssistLevel, SpeedAssistLevel, PowershareStopReasonStatus,
// PowershareTypeStatus); as long as the bridge publishes it as None, Home
// Assistant shows that value as unknown too.
//
// # Availability
//
// Every entity is available while the bridge is: availability is the
// topic the bridge names (Bridge.Availability, <bridge prefix>/bridge/state:
// online, or offline by the bridge's last will). A sleeping car is not unavailable; its entities keep their last
// values and Streaming shows whether it streams. With several replicas
// the availability is the same topic, which the replicas keep online
// while any of them runs (see bridge.Config.Replica): a car may stream to
// any replica, so its entities must not follow one replica's own state,
// and the config must not depend on which replica publishes it.
//
// # What the bridge must publish
//
// Besides the signal topics, the bridge publishes for discovery:
//
//	<prefix>/bridge/state           online / offline, retained, last will (replicas: online while one runs)
//	<prefix>/<VIN>/connected        true / false, retained
//	<prefix>/<VIN>/active_alerts    retained JSON, after every alerts record and when the car is first seen:
//	                                {"count":2,"alerts":[{"name":"…","started_at":"…","audiences":["Customer"]},…]}
//	                                the active alerts (no end time) ordered by start time, then name;
//	                                {"count":0,"alerts":[]} when there are none
//
// # Home Assistant restarts
//
// See OnStatus and RepublishDelay for what to do when Home Assistant sends
// its birth message.
package discovery
