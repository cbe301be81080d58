package activity

import (
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const testVIN = "5YJ3E7EB0KF000001"

var t0 = time.Date(2026, 3, 14, 8, 0, 0, 0, time.UTC)

// Home and Work are 10 km apart in Berlin.
var (
	homeLat, homeLon = 52.5200, 13.4050
	workLat, workLon = 52.5200, 13.5520
)

func price(p float64) *float64 { return &p }

func testConfig(t testing.TB) *Config {
	t.Helper()
	cfg := &Config{
		Places: []Place{
			{Name: "Home", Latitude: homeLat, Longitude: homeLon, Radius: 150, PricePerKWh: price(0.30),
				Tariffs: []Tariff{{From: "22:00", To: "06:00", PricePerKWh: 0.10}}},
			{Name: "Work", Latitude: workLat, Longitude: workLon},
		},
		Currency: "EUR",
		TimeZone: "UTC",
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// car plays a car's records into a tracker and collects what changed.
type car struct {
	t       testing.TB
	tr      *Tracker
	now     time.Time
	changes Changes
}

func newCar(t testing.TB, cfg *Config) *car {
	return &car{t: t, tr: NewTracker(cfg, testVIN), now: t0}
}

func (c *car) at(d time.Duration) *car { c.now = t0.Add(d); return c }

func (c *car) send(data ...telemetry.Datum) Changes {
	rec := &telemetry.Record{VIN: testVIN, Topic: telemetry.TopicV, CreatedAt: c.now, ReceivedAt: c.now, Data: data}
	ch := c.tr.Observe(rec)
	c.changes |= ch
	return ch
}

func (c *car) connect() Changes {
	return c.tr.Observe(&telemetry.Record{VIN: testVIN, Topic: telemetry.TopicConnectivity,
		Connectivity: telemetry.Connectivity{Status: telemetry.StatusConnected, CreatedAt: c.now}})
}

func (c *car) disconnect() Changes {
	return c.tr.Observe(&telemetry.Record{VIN: testVIN, Topic: telemetry.TopicConnectivity,
		Connectivity: telemetry.Connectivity{Status: telemetry.StatusDisconnected, CreatedAt: c.now}})
}

func (c *car) status() Status {
	s, _ := c.tr.Status()
	return s
}

func gear(g string) telemetry.Datum {
	ev, ok := telemetry.EnumShiftState.ByName(g)
	if !ok {
		panic(g)
	}
	return telemetry.Datum{Field: telemetry.FieldGear, Value: telemetry.EnumOf(telemetry.EnumShiftState, ev)}
}

func chargeState(s string) telemetry.Datum {
	ev, ok := telemetry.EnumDetailedChargeStateValue.ByName(s)
	if !ok {
		panic(s)
	}
	return telemetry.Datum{Field: telemetry.FieldDetailedChargeState, Value: telemetry.EnumOf(telemetry.EnumDetailedChargeStateValue, ev)}
}

func num(f telemetry.Field, v float64) telemetry.Datum {
	return telemetry.Datum{Field: f, Value: telemetry.FloatValue(v)}
}

func loc(lat, lon float64) telemetry.Datum {
	return telemetry.Datum{Field: telemetry.FieldLocation, Value: telemetry.LocationValue(lat, lon)}
}

func val(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// driveHomeToWork plays a drive from Home to Work starting at start:
// odometer 1000 → 1006.2 mi, battery 60 → 58 kWh, SoC 80 → 77 %, a top
// speed of 62 mph, and a two-minute stop in P halfway.
func driveHomeToWork(c *car, start time.Duration) {
	c.at(start).send(gear("P"), num(telemetry.FieldOdometer, 1000), loc(homeLat, homeLon),
		num(telemetry.FieldBatteryLevel, 80), num(telemetry.FieldEnergyRemaining, 60), num(telemetry.FieldVehicleSpeed, 0))
	c.at(start+time.Minute).send(gear("D"), num(telemetry.FieldVehicleSpeed, 12))
	c.at(start+5*time.Minute).send(num(telemetry.FieldVehicleSpeed, 62), num(telemetry.FieldOdometer, 1003), loc(52.52, 13.47))
	c.at(start+6*time.Minute).send(gear("P"), num(telemetry.FieldVehicleSpeed, 0)) // short stop
	c.at(start+8*time.Minute).send(gear("D"), num(telemetry.FieldVehicleSpeed, 20))
	c.at(start+12*time.Minute).send(num(telemetry.FieldOdometer, 1006.2), loc(workLat, workLon),
		num(telemetry.FieldBatteryLevel, 77), num(telemetry.FieldEnergyRemaining, 58), num(telemetry.FieldVehicleSpeed, 5))
	c.at(start+13*time.Minute).send(gear("P"), num(telemetry.FieldVehicleSpeed, 0))
}
