package topic

// Topic levels under <prefix>/<VIN>/ of what fleet2mqtt derives from a
// car's stream: the bridge publishes them (bridge.Derived, and the
// streaming cost meter), Home Assistant discovery points entities at them.
const (
	// StatusLevel is driving, charging, parked, asleep, offline or
	// updating (retained).
	StatusLevel = "status"
	// StatusSinceLevel is when the status began, RFC 3339 in UTC (retained).
	StatusSinceLevel = "status/since"
	// PlaceLevel is the name of the place the car is at, empty elsewhere
	// (retained; an empty payload clears it).
	PlaceLevel = "place"
	// PlaceEventLevel is {"event_type":"enter"|"leave","place":…,"at":…}
	// when the car enters or leaves a place (not retained).
	PlaceEventLevel = "place/event"
	// DriveLastLevel and ChargeLastLevel are the summary of the last
	// drive and charging session, JSON (retained; see activity.Session).
	DriveLastLevel  = "drive/last"
	ChargeLastLevel = "charge/last"
	// DriveEventLevel and ChargeEventLevel are {"event_type":"started",
	// "at":…} when a session starts and {"event_type":"ended",…the
	// summary…} when it ends (not retained).
	DriveEventLevel  = "drive/event"
	ChargeEventLevel = "charge/event"
	// StreamingCostLevel is {"monthly_dollars":…,…}: what the car's
	// stream costs at Tesla's price per signal, estimated from what it
	// sent in the last day.
	StreamingCostLevel = "streaming/cost"
)
