package discovery

import (
	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// derivedEntity is a Home Assistant entity of the derived state: its
// component key (lower case, so it never clashes with a signal's), its
// platform and object id, its topic level and the component's other
// members as JSON, each preceded by a comma.
type derivedEntity struct {
	key, platform, objectID, level string
	// attributes: the topic is also the json_attributes_topic.
	attributes bool
	static     string
	// cost entities carry the charging currency as their unit.
	cost bool
}

// activityEntities are announced with Bridge.Activity.
var activityEntities = []derivedEntity{
	{key: "status", platform: "sensor", objectID: "status", level: topic.StatusLevel,
		static: `,"name":"Status","device_class":"enum","options":` + string(appendStrings(nil, activity.Statuses())) + `,"icon":"mdi:car-info"`},
	{key: "status_since", platform: "sensor", objectID: "status_since", level: topic.StatusSinceLevel,
		static: `,"name":"Status since","device_class":"timestamp","entity_category":"diagnostic"`},
	{key: "place", platform: "sensor", objectID: "place", level: topic.PlaceLevel,
		static: `,"name":"Place","value_template":"{{ value if value else 'away' }}","icon":"mdi:map-marker"`},
	{key: "place_event", platform: "event", objectID: "place", level: topic.PlaceEventLevel,
		static: `,"name":"Place","event_types":["enter","leave"],"icon":"mdi:map-marker-radius"`},
	{key: "drive_event", platform: "event", objectID: "drive", level: topic.DriveEventLevel,
		static: `,"name":"Drive","event_types":["started","ended"],"icon":"mdi:car-arrow-right"`},
	{key: "charge_event", platform: "event", objectID: "charging_session", level: topic.ChargeEventLevel,
		static: `,"name":"Charging session","event_types":["started","ended"],"icon":"mdi:ev-station"`},
	{key: "last_drive", platform: "sensor", objectID: "last_drive", level: topic.DriveLastLevel, attributes: true,
		static: `,"name":"Last drive","device_class":"timestamp","value_template":"{{ value_json.end }}","icon":"mdi:map-marker-path"`},
	{key: "last_drive_distance", platform: "sensor", objectID: "last_drive_distance", level: topic.DriveLastLevel,
		static: `,"name":"Last drive distance","device_class":"distance","unit_of_measurement":"km","suggested_display_precision":1,"value_template":"{{ value_json.distance_km if value_json.distance_km is defined else None }}"`},
	{key: "last_drive_duration", platform: "sensor", objectID: "last_drive_duration", level: topic.DriveLastLevel,
		static: `,"name":"Last drive duration","device_class":"duration","unit_of_measurement":"min","suggested_display_precision":0,"value_template":"{{ value_json.duration_min }}"`},
	{key: "last_drive_energy", platform: "sensor", objectID: "last_drive_energy", level: topic.DriveLastLevel,
		static: `,"name":"Last drive energy","device_class":"energy","unit_of_measurement":"kWh","suggested_display_precision":1,"value_template":"{{ value_json.energy_used_kwh if value_json.energy_used_kwh is defined else None }}"`},
	{key: "last_charge", platform: "sensor", objectID: "last_charge", level: topic.ChargeLastLevel, attributes: true,
		static: `,"name":"Last charge","device_class":"timestamp","value_template":"{{ value_json.end }}","icon":"mdi:ev-station"`},
	{key: "last_charge_energy", platform: "sensor", objectID: "last_charge_energy", level: topic.ChargeLastLevel,
		static: `,"name":"Last charge energy added","device_class":"energy","unit_of_measurement":"kWh","suggested_display_precision":1,"value_template":"{{ value_json.energy_added_kwh if value_json.energy_added_kwh is defined else None }}"`},
	{key: "last_charge_cost", platform: "sensor", objectID: "last_charge_cost", level: topic.ChargeLastLevel, cost: true,
		static: `,"name":"Last charge cost","suggested_display_precision":2,"value_template":"{{ value_json.cost if value_json.cost is defined else None }}","icon":"mdi:cash"`},
}

// streamingCostEntity is announced with Bridge.StreamingCost.
var streamingCostEntity = derivedEntity{key: "streaming_cost", platform: "sensor", objectID: "streaming_cost", level: topic.StreamingCostLevel, attributes: true,
	static: `,"name":"Streaming cost estimate","device_class":"monetary","unit_of_measurement":"USD","suggested_display_precision":2,"value_template":"{{ value_json.monthly_dollars }}","entity_category":"diagnostic","icon":"mdi:cash-clock"`}

// derivedEntities returns the derived entities b announces.
func derivedEntities(b Bridge) []derivedEntity {
	var out []derivedEntity
	if b.Activity {
		out = append(out, activityEntities...)
	}
	if b.StreamingCost {
		out = append(out, streamingCostEntity)
	}
	return out
}

// appendDerived appends the derived entities' components, each preceded
// by a comma.
func appendDerived(buf []byte, b Bridge, v Vehicle, devID, devSlug string) []byte {
	for _, e := range derivedEntities(b) {
		buf = append(buf, ',')
		buf = appendHead(buf, e.key, e.platform, devID, devSlug, e.objectID)
		buf = append(buf, `,"state_topic":`...)
		buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/", e.level)
		if e.attributes {
			buf = append(buf, `,"json_attributes_topic":`...)
			buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/", e.level)
		}
		buf = append(buf, e.static...)
		if e.cost {
			if b.Currency != "" {
				buf = append(buf, `,"device_class":"monetary","unit_of_measurement":`...)
				buf = telemetry.AppendJSONString(buf, b.Currency)
			}
		}
		buf = append(buf, '}')
	}
	return buf
}
