package activity

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestDriveWithShortStopIsOneDrive(t *testing.T) {
	c := newCar(t, testConfig(t))
	driveHomeToWork(c, 0)
	if c.changes.Has(DriveEnded) {
		t.Fatal("drive ended before its grace period")
	}
	if got := c.status(); got != StatusDriving {
		t.Fatalf("status in P within the grace period = %v, want driving", got)
	}
	// The grace period passes without a record: Tick ends the drive at the
	// moment the gear went to P.
	ch := c.tr.Tick(t0.Add(13*time.Minute + DefaultDriveGrace))
	if !ch.Has(DriveEnded | ChangedStatus) {
		t.Fatalf("Tick after the grace period = %b, want DriveEnded and ChangedStatus", ch)
	}
	s, ok := c.tr.LastDrive()
	if !ok {
		t.Fatal("no drive summary")
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"distance_km", val(s.DistanceKm), 9.98},
		{"duration_min", s.DurationMin, 12},
		{"max_speed_kmh", val(s.MaxSpeedKmh), 99.8},
		{"avg_speed_kmh", val(s.AvgSpeedKmh), 49.9},
		{"energy_used_kwh", val(s.EnergyUsedKWh), 2},
		{"soc_start", val(s.SocStart), 80},
		{"soc_end", val(s.SocEnd), 77},
		{"odometer_start_km", val(s.OdometerStartKm), 1609.34},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if s.StartPlace != "Home" || s.EndPlace != "Work" || s.EndReason != EndParked {
		t.Errorf("places/reason = %q → %q (%s), want Home → Work (parked)", s.StartPlace, s.EndPlace, s.EndReason)
	}
	if !s.Start.Equal(t0.Add(time.Minute)) || !s.End.Equal(t0.Add(13*time.Minute)) {
		t.Errorf("start/end = %v/%v, want +1m/+13m", s.Start, s.End)
	}
	if got, _ := c.tr.Status(); got != StatusParked {
		t.Errorf("status after the drive = %v, want parked", got)
	}
}

func TestDriveEndsOnNextRecordAfterGrace(t *testing.T) {
	c := newCar(t, testConfig(t))
	driveHomeToWork(c, 0)
	ch := c.at(20 * time.Minute).send(num(telemetry.FieldInsideTemp, 21))
	if !ch.Has(DriveEnded) {
		t.Fatalf("record after the grace period: %b, want DriveEnded", ch)
	}
	if s, _ := c.tr.LastDrive(); !s.End.Equal(t0.Add(13 * time.Minute)) {
		t.Errorf("end = %v, want when the gear went to P", s.End)
	}
}

func TestStatusRules(t *testing.T) {
	cfg := testConfig(t)
	for _, tc := range []struct {
		name string
		play func(c *car)
		want Status
	}{
		{"connected, in P", func(c *car) { c.connect(); c.send(gear("P")) }, StatusParked},
		{"in D", func(c *car) { c.send(gear("D")) }, StatusDriving},
		{"speed without gear", func(c *car) { c.send(num(telemetry.FieldVehicleSpeed, 30)) }, StatusDriving},
		{"charging", func(c *car) { c.send(gear("P"), chargeState("Charging")) }, StatusCharging},
		{"charge complete", func(c *car) { c.send(gear("P"), chargeState("Complete")) }, StatusParked},
		{"parked, stream closes", func(c *car) { c.send(gear("P")); c.at(time.Minute).disconnect() }, StatusAsleep},
		{"driving, stream closes", func(c *car) { c.send(gear("D")); c.at(time.Minute).disconnect() }, StatusOffline},
		{"charging, stream closes", func(c *car) { c.send(chargeState("Charging")); c.at(time.Minute).disconnect() }, StatusOffline},
		{"installing an update", func(c *car) {
			c.send(telemetry.Datum{Field: telemetry.FieldSoftwareUpdateInstallationPercentComplete, Value: telemetry.IntValue(40)})
		}, StatusUpdating},
		{"installing, stream closes (reboot)", func(c *car) {
			c.send(telemetry.Datum{Field: telemetry.FieldSoftwareUpdateInstallationPercentComplete, Value: telemetry.IntValue(40)})
			c.at(time.Minute).disconnect()
		}, StatusUpdating},
		{"installing, silent past update_timeout", func(c *car) {
			c.send(telemetry.Datum{Field: telemetry.FieldSoftwareUpdateInstallationPercentComplete, Value: telemetry.IntValue(40)})
			c.at(time.Minute).disconnect()
			c.tr.Tick(t0.Add(2 * time.Hour))
		}, StatusOffline},
		{"install done", func(c *car) {
			c.send(telemetry.Datum{Field: telemetry.FieldSoftwareUpdateInstallationPercentComplete, Value: telemetry.IntValue(100)}, gear("P"))
		}, StatusParked},
		{"stream open but silent past stale_after", func(c *car) { c.send(gear("P")); c.tr.Tick(t0.Add(2 * time.Hour)) }, StatusAsleep},
		{"asleep, wakes", func(c *car) { c.send(gear("P")); c.at(time.Minute).disconnect(); c.at(time.Hour).connect() }, StatusParked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCar(t, cfg)
			tc.play(c)
			if got := c.status(); got != tc.want {
				t.Errorf("status = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSinceIsTheTimeOfTheChange(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(gear("P"))
	c.at(time.Minute).send(num(telemetry.FieldInsideTemp, 20))
	ch := c.at(2 * time.Minute).disconnect()
	s, since := c.tr.Status()
	if !ch.Has(ChangedStatus) || s != StatusAsleep || !since.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after disconnect: %v since %v (changes %b), want asleep since +2m", s, since, ch)
	}
	if ch := c.tr.Tick(t0.Add(3 * time.Minute)); ch != 0 {
		t.Errorf("Tick with nothing new = %b, want no change", ch)
	}
}

func TestChargeWithTimeOfUseCost(t *testing.T) {
	c := newCar(t, testConfig(t))
	// Plugged in at home at 21:00; 10 kWh before 22:00 at 0.30, 20 kWh after at 0.10.
	base := 13 * time.Hour
	c.at(base).send(gear("P"), loc(homeLat, homeLon), num(telemetry.FieldBatteryLevel, 40),
		num(telemetry.FieldEnergyRemaining, 30), chargeState("Disconnected"),
		num(telemetry.FieldACChargingEnergyIn, 7.5), num(telemetry.FieldDCChargingEnergyIn, 7)) // last session's counters
	if ch := c.at(base+time.Minute).send(chargeState("Charging"), num(telemetry.FieldACChargingPower, 11)); !ch.Has(ChargeStarted) {
		t.Fatalf("Charging: %b, want ChargeStarted", ch)
	}
	if got := c.status(); got != StatusCharging {
		t.Fatalf("status = %v, want charging", got)
	}
	// Counters reset to 0 for the new session and count up.
	c.at(base+2*time.Minute).send(num(telemetry.FieldACChargingEnergyIn, 0), num(telemetry.FieldDCChargingEnergyIn, 0))
	c.at(base+55*time.Minute).send(num(telemetry.FieldACChargingEnergyIn, 10), num(telemetry.FieldDCChargingEnergyIn, 9.2))
	c.at(base+3*time.Hour).send(num(telemetry.FieldACChargingEnergyIn, 30), num(telemetry.FieldDCChargingEnergyIn, 27.6),
		num(telemetry.FieldBatteryLevel, 80), num(telemetry.FieldEnergyRemaining, 57.6), chargeState("Complete"))
	s, ok := c.tr.LastCharge()
	if !ok || !c.changes.Has(ChargeEnded) {
		t.Fatal("charge did not end on Complete")
	}
	for _, chk := range []struct {
		name      string
		got, want float64
	}{
		{"energy_used_kwh", val(s.EnergyUsedKWh), 30},
		{"energy_added_kwh", val(s.EnergyAddedKWh), 27.6},
		{"cost", val(s.Cost), 10*0.30 + 20*0.10},
		{"max_power_kw", val(s.MaxPowerKW), 11},
		{"soc_start", val(s.SocStart), 40},
		{"soc_end", val(s.SocEnd), 80},
		{"duration_min", s.DurationMin, 179},
	} {
		if chk.got != chk.want {
			t.Errorf("%s = %v, want %v", chk.name, chk.got, chk.want)
		}
	}
	if s.StartPlace != "Home" || s.Currency != "EUR" || s.EndReason != EndComplete || s.FastCharger {
		t.Errorf("place %q currency %q reason %q fast %v", s.StartPlace, s.Currency, s.EndReason, s.FastCharger)
	}
}

func TestChargePauseWithinGraceIsOneSession(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(chargeState("Charging"), num(telemetry.FieldDCChargingEnergyIn, 0))
	c.at(10*time.Minute).send(chargeState("Stopped"), num(telemetry.FieldDCChargingEnergyIn, 2))
	c.at(20 * time.Minute).send(chargeState("Charging"))
	c.at(40*time.Minute).send(chargeState("Stopped"), num(telemetry.FieldDCChargingEnergyIn, 5))
	if c.changes.Has(ChargeEnded) {
		t.Fatal("a pause shorter than charge_grace ended the session")
	}
	if ch := c.tr.Tick(t0.Add(40*time.Minute + DefaultChargeGrace)); !ch.Has(ChargeEnded) {
		t.Fatalf("Tick after charge_grace: %b, want ChargeEnded", ch)
	}
	s, _ := c.tr.LastCharge()
	if val(s.EnergyAddedKWh) != 5 || s.EndReason != EndStopped || !s.End.Equal(t0.Add(40*time.Minute)) {
		t.Errorf("added %v reason %s end %v, want 5 kWh, stopped, at +40m", val(s.EnergyAddedKWh), s.EndReason, s.End)
	}
	if s.Cost != nil {
		t.Errorf("cost %v away from any priced place and without a default price, want none", *s.Cost)
	}
}

func TestAsleepMidChargeKeepsTheSession(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(loc(homeLat, homeLon), chargeState("Charging"), num(telemetry.FieldDCChargingEnergyIn, 0), num(telemetry.FieldACChargingEnergyIn, 0))
	c.at(30*time.Minute).send(num(telemetry.FieldDCChargingEnergyIn, 4), num(telemetry.FieldACChargingEnergyIn, 4.4))
	c.at(31 * time.Minute).disconnect()
	if got := c.status(); got != StatusOffline {
		t.Errorf("stream closed while charging: %v, want offline", got)
	}
	// Hours pass: ticks must not end the session.
	for h := 1; h <= 5; h++ {
		if ch := c.tr.Tick(t0.Add(time.Duration(h) * time.Hour)); ch.Has(ChargeEnded) {
			t.Fatalf("Tick %dh into the sleep ended the charge", h)
		}
	}
	c.at(5 * time.Hour).connect()
	c.at(5*time.Hour+time.Second).send(chargeState("Complete"), num(telemetry.FieldDCChargingEnergyIn, 20), num(telemetry.FieldACChargingEnergyIn, 22))
	s, ok := c.tr.LastCharge()
	if !ok {
		t.Fatal("no charge summary after the car woke with Complete")
	}
	if val(s.EnergyAddedKWh) != 20 || val(s.EnergyUsedKWh) != 22 || !s.Start.Equal(t0) {
		t.Errorf("added %v used %v start %v, want one session of 20/22 kWh from t0", val(s.EnergyAddedKWh), val(s.EnergyUsedKWh), s.Start)
	}
	if val(s.Cost) != 0.30*22 {
		t.Errorf("cost = %v, want %v", val(s.Cost), 0.30*22)
	}
}

func TestShortGapMidDriveIsOneDrive(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(gear("D"), num(telemetry.FieldOdometer, 100))
	c.at(5 * time.Minute).disconnect() // a tunnel
	if got := c.status(); got != StatusOffline {
		t.Errorf("status in the gap = %v, want offline", got)
	}
	c.tr.Tick(t0.Add(15 * time.Minute))
	c.at(20 * time.Minute).connect()
	c.at(20*time.Minute).send(gear("D"), num(telemetry.FieldOdometer, 110))
	c.at(25*time.Minute).send(gear("P"), num(telemetry.FieldOdometer, 112))
	c.tr.Tick(t0.Add(time.Hour))
	if c.changes&DriveStarted == 0 {
		t.Fatal("no drive")
	}
	s, _ := c.tr.LastDrive()
	if val(s.DistanceKm) != *round(12*kmPerMile, 2) || !s.Start.Equal(t0) {
		t.Errorf("distance %v from %v, want one drive of 12 mi from t0", val(s.DistanceKm), s.Start)
	}
}

func TestLongGapMidDriveTimesOut(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(gear("D"), num(telemetry.FieldOdometer, 100))
	c.at(5 * time.Minute).send(num(telemetry.FieldOdometer, 103))
	// No Tick ran during the gap: the next record ends the old drive first.
	ch := c.at(3*time.Hour).send(gear("D"), num(telemetry.FieldOdometer, 150))
	if !ch.Has(DriveEnded | DriveStarted) {
		t.Fatalf("record after a long gap: %b, want DriveEnded and DriveStarted", ch)
	}
	s, _ := c.tr.LastDrive()
	if s.EndReason != EndTimeout || !s.End.Equal(t0.Add(5*time.Minute)) || val(s.DistanceKm) != *round(3*kmPerMile, 2) {
		t.Errorf("old drive: %s at %v, %v km; want timeout at +5m, 3 mi", s.EndReason, s.End, val(s.DistanceKm))
	}
}

func TestDuplicateRecordsChangeNothing(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.send(loc(homeLat, homeLon), chargeState("Charging"), num(telemetry.FieldDCChargingEnergyIn, 0))
	c.at(10 * time.Minute)
	rec := []telemetry.Datum{num(telemetry.FieldDCChargingEnergyIn, 3)}
	c.send(rec...)
	if ch := c.send(rec...); ch != 0 {
		t.Errorf("same record twice: %b, want no change", ch)
	}
	// An older record sent again after a newer one is ignored too.
	c.at(20 * time.Minute).send(num(telemetry.FieldDCChargingEnergyIn, 6))
	if ch := c.at(10 * time.Minute).send(num(telemetry.FieldDCChargingEnergyIn, 3)); ch != 0 {
		t.Errorf("resent older record: %b, want no change", ch)
	}
	c.at(30 * time.Minute).send(chargeState("Complete"))
	s, _ := c.tr.LastCharge()
	if val(s.EnergyAddedKWh) != 6 {
		t.Errorf("energy added = %v, want 6 (duplicates counted once)", val(s.EnergyAddedKWh))
	}
}

func TestRestartMidDriveContinuesTheDrive(t *testing.T) {
	cfg := testConfig(t)
	c := newCar(t, cfg)
	c.send(gear("P"), loc(homeLat, homeLon), num(telemetry.FieldOdometer, 1000), num(telemetry.FieldEnergyRemaining, 60))
	c.at(time.Minute).send(gear("D"), num(telemetry.FieldVehicleSpeed, 70))
	c.at(5*time.Minute).send(num(telemetry.FieldOdometer, 1004), num(telemetry.FieldVehicleSpeed, 40))
	snap, err := c.tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(snap) {
		t.Fatalf("snapshot is not JSON: %s", snap)
	}

	// A new process: a new tracker restored from the snapshot.
	c2 := newCar(t, cfg)
	if err := c2.tr.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !c2.tr.Driving() || c2.tr.Place() != "Home" {
		t.Fatalf("restored: driving %v place %q, want an open drive at Home", c2.tr.Driving(), c2.tr.Place())
	}
	// The car resends its last unacknowledged record, then goes on.
	c2.at(5 * time.Minute).connect()
	if ch := c2.at(5*time.Minute - time.Second).send(num(telemetry.FieldOdometer, 1003.9)); ch != 0 {
		t.Errorf("resent record after restore: %b, want no change", ch)
	}
	c2.at(10*time.Minute).send(gear("P"), num(telemetry.FieldOdometer, 1008), loc(workLat, workLon), num(telemetry.FieldEnergyRemaining, 58.5))
	c2.tr.Tick(t0.Add(time.Hour))
	s, ok := c2.tr.LastDrive()
	if !ok {
		t.Fatal("no drive after restart")
	}
	if !s.Start.Equal(t0.Add(time.Minute)) || val(s.DistanceKm) != *round(8*kmPerMile, 2) ||
		val(s.MaxSpeedKmh) != *round(70*kmPerMile, 1) || val(s.EnergyUsedKWh) != 1.5 || s.StartPlace != "Home" || s.EndPlace != "Work" {
		t.Errorf("drive across restart: %+v", s)
	}
}

func TestSnapshotRoundTripsValues(t *testing.T) {
	cfg := testConfig(t)
	c := newCar(t, cfg)
	c.tr.KeepEveryValue()
	c.send(gear("R"), loc(homeLat, homeLon), num(telemetry.FieldOdometer, 1000.25),
		telemetry.Datum{Field: telemetry.FieldLocked, Value: telemetry.BoolValue(true)},
		telemetry.Datum{Field: telemetry.FieldVehicleName, Value: telemetry.StringValue("Blue, 2")},
		telemetry.Datum{Field: telemetry.FieldDoorState, Value: telemetry.DoorsValue(telemetry.TrunkRear | telemetry.DriverFront)},
		telemetry.Datum{Field: telemetry.FieldChargeLimitSoc, Value: telemetry.IntValue(80)})
	snap, err := c.tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(cfg, testVIN)
	tr.KeepEveryValue()
	if err := tr.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, f := range viewFields {
		if a, b := c.tr.Values().Get(f), tr.Values().Get(f); !a.Equal(b) {
			t.Errorf("%v: %v restored as %v", f, a, b)
		}
	}
	if err := NewTracker(cfg, "OTHER").Restore(snap); err == nil {
		t.Error("restoring another car's snapshot succeeded")
	}
}

func TestPlacesEnterLeaveWithHysteresis(t *testing.T) {
	c := newCar(t, testConfig(t))
	// 1° of latitude is about 111 km: 1e-3° ≈ 111 m.
	steps := []struct {
		dLat    float64
		want    string
		changed bool
	}{
		{0.0030, "", false},     // 333 m out
		{0.0012, "Home", true},  // 133 m: inside the 150 m radius
		{0.0015, "Home", false}, // 167 m: beyond the radius, within the 30 m hysteresis
		{0.0012, "Home", false},
		{0.0017, "", true}, // 189 m: left
	}
	for i, s := range steps {
		ch := c.at(time.Duration(i) * time.Minute).send(loc(homeLat+s.dLat, homeLon))
		if got := c.tr.Place(); got != s.want || ch.Has(ChangedPlace) != s.changed {
			t.Errorf("step %d (%.4f°): place %q changed %v, want %q %v", i, s.dLat, got, ch.Has(ChangedPlace), s.want, s.changed)
		}
	}
	if got := c.tr.PreviousPlace(); got != "Home" {
		t.Errorf("previous place = %q, want Home", got)
	}
}

func TestDistance(t *testing.T) {
	// Berlin TV tower to Brandenburg Gate: about 2.2 km (haversine, mean radius).
	d := Distance(52.520817, 13.409419, 52.516275, 13.377704)
	if d < 2180 || d > 2230 {
		t.Errorf("distance = %.0f m, want about 2200", d)
	}
	if d := Distance(0, 179.9, 0, -179.9); d > 23000 {
		t.Errorf("across the antimeridian: %.0f m, want about 22 km", d)
	}
}

func TestConfigValidate(t *testing.T) {
	neg := -1.0
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"radius", Config{Places: []Place{{Name: "A", Latitude: 1, Longitude: 1}, {Name: "B", Latitude: 1, Longitude: 1, Radius: -5}}},
			"places[1].radius: -5 is not a radius: use metres between 1 and 100000 (default 100)"},
		{"name", Config{Places: []Place{{Latitude: 1, Longitude: 1}}}, "places[0].name: empty: give the place a name, such as Home"},
		{"duplicate", Config{Places: []Place{{Name: "A", Latitude: 1, Longitude: 1}, {Name: "A", Latitude: 2, Longitude: 2}}},
			`places[1].name: "A" is also the name of places[0]: give each place its own name`},
		{"latitude", Config{Places: []Place{{Name: "A", Latitude: 91, Longitude: 1}}}, "places[0].latitude: 91 is not a latitude: use degrees between -90 and 90"},
		{"null island", Config{Places: []Place{{Name: "A"}}}, "places[0]: latitude and longitude are both 0 (the sea off Africa): set the place's coordinates"},
		{"tariff", Config{Places: []Place{{Name: "A", Latitude: 1, Longitude: 1, Tariffs: []Tariff{{From: "22:00", To: "6"}}}}},
			`places[0].tariffs[0].to: "6" is not a time of day: use HH:MM, such as 22:00`},
		{"price", Config{PricePerKWh: &neg}, "price_per_kwh: -1 is negative: use 0 for free charging"},
		{"grace", Config{DriveGrace: -time.Second}, "drive_grace: -1s is negative: use a duration such as 3m0s (the default)"},
		{"zone", Config{TimeZone: "Mars/Olympus"}, `time_zone: "Mars/Olympus" is not a known time zone: use an IANA name such as Europe/Berlin (unknown time zone Mars/Olympus)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || err.Error() != tc.want {
				t.Errorf("Validate() = %v\nwant          %s", err, tc.want)
			}
		})
	}
	var c Config
	if err := c.Validate(); err != nil || c.DriveGrace != DefaultDriveGrace || c.StaleAfter != DefaultStaleAfter {
		t.Errorf("zero Config: %v, defaults %v %v", err, c.DriveGrace, c.StaleAfter)
	}
}

func TestRestartMidChargeKeepsCountersAndCost(t *testing.T) {
	cfg := testConfig(t)
	c := newCar(t, cfg)
	c.at(12*time.Hour).send(loc(homeLat, homeLon), chargeState("Charging"),
		num(telemetry.FieldACChargingEnergyIn, 0), num(telemetry.FieldDCChargingEnergyIn, 0))
	c.at(13*time.Hour).send(num(telemetry.FieldACChargingEnergyIn, 5), num(telemetry.FieldDCChargingEnergyIn, 4.5))
	snap, err := c.tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	c2 := newCar(t, cfg)
	if err := c2.tr.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// After the restart the counters go on from where they were; 5 kWh by 21:00 at the day price, 5 kWh after 22:00 at night.
	c2.at(14*time.Hour+30*time.Minute).send(num(telemetry.FieldACChargingEnergyIn, 8), num(telemetry.FieldDCChargingEnergyIn, 7.2))
	c2.at(15*time.Hour).send(num(telemetry.FieldACChargingEnergyIn, 10), num(telemetry.FieldDCChargingEnergyIn, 9), chargeState("Complete"))
	s, ok := c2.tr.LastCharge()
	if !ok {
		t.Fatal("no charge after restart")
	}
	if val(s.EnergyUsedKWh) != 10 || val(s.EnergyAddedKWh) != 9 || val(s.Cost) != *round(5*0.30+5*0.10, 2) || !s.Start.Equal(t0.Add(12*time.Hour)) {
		t.Errorf("charge across restart: used %v added %v cost %v start %v", val(s.EnergyUsedKWh), val(s.EnergyAddedKWh), val(s.Cost), s.Start)
	}
}

// A car that streams its location every few seconds is already out of
// its place in the record whose gear says D: the drive starts at the
// place and location before that record.
func TestDriveStartsWhereTheCarWas(t *testing.T) {
	c := newCar(t, testConfig(t))
	c.at(0).send(gear("P"), loc(homeLat, homeLon), num(telemetry.FieldOdometer, 10))
	c.at(time.Minute).send(gear("D"), loc(homeLat, homeLon+0.01), num(telemetry.FieldOdometer, 10.5))
	c.at(10*time.Minute).send(gear("P"), loc(workLat, workLon), num(telemetry.FieldOdometer, 16.2))
	c.at(20 * time.Minute).send(num(telemetry.FieldInsideTemp, 20))
	s, ok := c.tr.LastDrive()
	if !ok {
		t.Fatal("no drive ended")
	}
	if s.StartPlace != "Home" || s.StartLocation == nil || s.StartLocation.Longitude != homeLon || s.EndPlace != "Work" {
		t.Errorf("drive %+v from %+v", s, s.StartLocation)
	}
}
