// Package activity derives what a car is doing from its stream: a status
// (driving, charging, parked, asleep, offline, updating), the named place
// it is at, and drives and charging sessions with a summary when each
// ends. It reads telemetry records only; the bridge turns its results into
// MQTT messages, package history keeps the sessions, and package teslamate
// lays them out as TeslaMate's topics.
//
// # Use
//
// One Tracker per car, fed every record of that car in order:
//
//	ch := tr.Observe(rec)        // per record; 0 when nothing changed
//	ch |= tr.Tick(time.Now())    // periodically, for rules that need time to pass
//	if ch.Has(activity.ChangedStatus) { status, since := tr.Status() ... }
//	if ch.Has(activity.DriveEnded)    { s, _ := tr.LastDrive() ... }
//
// Observe and Tick allocate nothing unless a session ends. Snapshot and
// Restore carry a tracker across a restart.
//
// # Time
//
// A record's time is when the car made it (CreatedAt), else when it
// arrived. A data record older than the latest one seen (a resend after a
// lost acknowledgement or a restart) changes nothing, and a record sent
// twice changes nothing the second time: values that equal the latest do
// not count again.
//
// # Status
//
// Applied in this order after every record and Tick:
//
//  1. updating: SoftwareUpdateInstallationPercentComplete is above 0 and
//     below 100, and the car was heard from within update_timeout (it
//     reboots and drops its stream while installing); beyond that, offline.
//  2. The stream counts as open after a CONNECTED connectivity record or
//     any data record, and closed after DISCONNECTED, or when nothing
//     arrived for stale_after. With the stream closed: offline when a drive
//     was under way (not waiting in P) or the car was charging (a car does
//     not sleep while driving or charging), else asleep. The stream cannot
//     tell a sleeping car from one without network; a parked car that
//     closes its stream nearly always sleeps.
//  3. driving: a drive is open (see below), including a short stop in P.
//  4. charging: DetailedChargeState is Starting or Charging.
//  5. parked: anything else while the stream is open.
//
// since is the time of the record (or Tick) that changed the status.
//
// # Places
//
// A car enters a place when its Location is within the place's radius
// (haversine distance), and leaves when it is farther than radius plus a
// hysteresis of a fifth of the radius (25 m to 500 m), so GPS drift at the
// edge does not flap. Of overlapping places the nearest centre wins; the
// place the car is at is kept while it stays inside.
//
// # Drives
//
// A drive starts with the first record whose Gear is R, N or D (for a car
// that does not stream Gear: VehicleSpeed above 0). It ends when the gear
// has stayed in P for drive_grace; the end time is when the gear went to
// P, so a short stop within the grace period keeps one drive. A stream
// that closes while the car waits in P ends the drive at once. A drive
// without any record for drive_timeout (the car lost its connection and
// did not come back) ends at its last record with end_reason timeout; the
// distance driven during such a gap is not counted. A shorter gap keeps the
// drive: the odometer after it covers the gap.
//
// Summary: start and end time and place, distance from Odometer (miles,
// converted to km), duration, average speed (distance over duration) and
// maximum VehicleSpeed, state of charge (BatteryLevel, else Soc) at start
// and end, and energy used from EnergyRemaining at start minus at end.
//
// # Charging sessions
//
// A session starts when DetailedChargeState becomes Starting or Charging.
// It ends at Complete or Disconnected (unplugged), or when the state has
// been Stopped or NoPower for charge_grace (ending when it stopped), so a
// pause does not split it. A closed stream does not end it: a car that
// sleeps or loses its network mid-charge continues the same session when
// it comes back, and its energy counters cover the gap.
//
// Energy: DCChargingEnergyIn (energy into the pack, for AC and DC
// sessions) gives energy added; ACChargingEnergyIn (at the charger) gives
// energy used on AC, DCChargingEnergyIn on DC. Both counters reset per
// session, so the tracker sums their increases and reads a drop as a reset
// counting from zero. Without counters, energy added comes from
// EnergyRemaining. Maximum power is the highest ACChargingPower or
// DCChargingPower; average power is energy added over duration.
//
// Cost: each increase of the energy used is priced when it happens, by the
// place the car is at (its time-of-use tariff for that time of day, else
// its price) or else Config.PricePerKWh. Without a price for every part of
// the session, the summary has no cost.
package activity
