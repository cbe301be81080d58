// Package bridge turns vehicle records into MQTT messages: one topic per
// signal with a plain value, a JSON object with the latest value of every
// signal, alerts, errors and connectivity, and optionally the layout of
// Tesla's reference server. It publishes through a pubsub.Publisher (the embedded
// broker in bridge/embedded or the external client in bridge/external) and
// returns from Handle only once the broker accepted every message, so that
// the ingest server acknowledges a frame to the car only then.
//
// # Topics
//
// With the default prefix "tesla":
//
//	tesla/<VIN>/<Field>          the value, retained: 80, 65.5, true, D, Charging,
//	                             {"latitude":37.4,"longitude":-122.1}
//	tesla/<VIN>/state            {"Soc":80,"Gear":"D",...}: every field seen, latest value;
//	                             at most once per state_interval (see below)
//	tesla/<VIN>/alerts/<name>    {"started_at":"…","ended_at":null,"audiences":["Customer"],"active":true}
//	tesla/<VIN>/errors/<name>    {"created_at":"…","body":"…","tags":{"k":"v"}}
//	tesla/<VIN>/connected        true or false: whether the car streams right now (retained)
//	tesla/<VIN>/active_alerts    {"count":1,"alerts":[{"name":"…","started_at":"…","audiences":["Customer"]}]}:
//	                             the active alerts (no end time) by start time, then name; after
//	                             every alerts record (see PublishActiveAlerts and Republish)
//	tesla/bridge/state           online or offline (retained; the external client's last will)
//	tesla/bridge/<replica>/state with Config.Replica: this replica's own state (retained; its
//	                             last will), while tesla/bridge/state reads online as long as
//	                             any replica runs (see RunReplicas)
//
// Numbers are plain decimal text without exponent or trailing zeros, in the
// unit the car sends (see the catalog in package telemetry); a float the car
// sent in single precision prints as it was meant (65.1, not 65.09999847).
// Booleans are true and false, enums their short names, strings as they
// are, composite values (location, doors, tires) compact JSON, a time of day
// HH:MM:SS, timestamps RFC 3339 in UTC. Field names are the protocol's
// (Soc, Gear, DetailedChargeState); a field the catalog does not know yet is
// named Field(<number>). Alert and error names come from the car; the
// characters MQTT forbids in a topic level (/, +, #, NUL) become '_'.
//
// An empty string value is published as an empty payload, which also clears
// the retained message of that topic: an empty string and "nothing" read
// the same. A datum whose value has no member set (the protocol allows it)
// publishes nothing and leaves the field's last value in place.
//
// # No valid value: the payload None
//
// When the car reports that it has no valid value for a signal (the
// protocol's invalid flag; also a float that is NaN or infinite), the
// signal's topic gets the four-byte payload None, and the state object
// holds null for it. We chose None from Home Assistant's MQTT platforms
// (homeassistant/components/mqtt: const.py defines PAYLOAD_NONE = "None"):
//
//   - sensor.py: a payload equal to PAYLOAD_NONE sets the native value to
//     None, which Home Assistant shows as "unknown", before any other check,
//     for every device class: numeric, enum (even when None is not among the
//     options), timestamp and plain text. Nothing is logged.
//   - binary_sensor.py: payload_on sets on, payload_off off, PAYLOAD_NONE
//     unknown; any other payload is ignored with an info log line "No
//     matching payload found".
//   - An empty payload is not the same thing. The sensor ignores it on
//     numeric sensors (debug log, the old value stays) and the binary sensor
//     ignores it too; an enum sensor logs a warning that it is not an
//     option. On a retained topic an empty payload deletes the retained
//     message, so a dashboard that connects later would see no value at all
//     rather than "unknown".
//   - null and unknown are ordinary strings to Home Assistant: a numeric
//     sensor logs an error (ValueError: non-numeric value) for each, an enum
//     sensor logs a warning unless they are options, a text sensor shows
//     them literally.
//
// Enum values named None (LaneAssistLevelNone, SpeedAssistLevelNone,
// PowershareStopReasonStatusNone, PowershareTypeStatusNone) have the short
// name none, lower case (package telemetry's rule), so that they do not
// read as "unknown". A string value that happens to be None (a car named
// None) cannot be told apart.
//
// Node-RED and other consumers: the payload None (exactly those four bytes)
// on a signal topic means "the car has no valid value for this signal right
// now"; in tesla/<VIN>/state the same appears as JSON null. A numeric topic
// therefore carries either a number or None; check for None before
// parsing.
//
// # Compatibility layout
//
// With compat.enabled the bridge also publishes exactly what Tesla's
// reference server (fleet-telemetry, its MQTT datastore) publishes, under
// compat.base (default "telemetry"), so that tools built for it keep working:
//
//	telemetry/<VIN>/v/<Field>                JSON: 80, "ShiftStateD", "Golden Test Car", null, {}
//	telemetry/<VIN>/alerts/<name>/current    {"Audiences":[…],"StartedAt":"…"}
//	telemetry/<VIN>/alerts/<name>/history    [{…},…] the record's alerts of that name
//	telemetry/<VIN>/errors/<name>            {"Body":"…","CreatedAt":"…","Tags":{…}}
//	telemetry/<VIN>/connectivity             {"ConnectionId":"…","CreatedAt":"…","Status":"CONNECTED"}
//
// Its quirks are reproduced on purpose: enums by their full protocol names,
// values that older firmware sent as strings stay JSON strings, strings in
// scientific notation are rewritten with five decimals ("1.5e-3" becomes
// "0.00150"), the legacy location string of the Location field becomes an
// object, an invalid value is null, a value with no member set is {}, tires
// list only the positions that are set, timestamps have whole seconds, JSON
// strings escape <, > and & as Go's encoding/json does, and a field that
// appears twice in one record is published once with its last value. Where
// the reference fails (a NaN the JSON encoder rejects, a datum without a
// value that makes it panic) the bridge publishes null and {} instead.
//
// # The state object
//
// tesla/<VIN>/state is a convenience derived from the field topics: one
// JSON object with the latest value of every field, null for a field
// without a valid value. It repeats every value, so it is by far the
// largest message; a car that streams several records a second would
// otherwise cost one such message per record. It is therefore published
// when a record changes a value and the last one is at least
// mqtt.state_interval old (default 1s). A change that comes sooner is not
// lost: one state object with the values of that moment follows at the
// end of the interval, without waiting for another record, and Offline
// publishes any that still waits. With state_interval 0 every record that
// changes a value publishes it.
//
// The field topics are the acknowledged source of truth: they are published
// with every record, before the car's frame is acknowledged. The trailing
// state object is published after the acknowledgement; should that fail
// (the broker is away), the vehicle's next record publishes it.
//
// # What the car is doing
//
// With a Derived attached (NewDerived), every record also feeds the car's
// activity.Tracker, and what it derives goes out in the same publish as
// the record's signals: tesla/<VIN>/status and status/since, place and
// place/event, drive/last and drive/event, charge/last and charge/event,
// and optionally TeslaMate's topics (derived.go). SaveValues and
// RestoreValues carry the cars' latest values across a restart, so that
// the first state object after it holds every signal (values.go).
//
// # Delivery and concurrency
//
// Handle may be called concurrently for different vehicles; records of one
// vehicle are handled one at a time, in the order they arrive. All messages
// of a record are built into one reused buffer and handed to the Publisher
// in one call: topics of a vehicle's fields are made once, values are
// formatted without reflection, and a record costs no allocation once its
// vehicle's fields have been seen.
package bridge
