package activity

import (
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// benchData is a 20-field record of a driving car, the bridge benchmark's shape.
func benchData() []telemetry.Datum {
	return []telemetry.Datum{
		num(telemetry.FieldVehicleSpeed, 65.5),
		num(telemetry.FieldOdometer, 12345.678),
		num(telemetry.FieldSoc, 79.125),
		num(telemetry.FieldBatteryLevel, 78.5),
		num(telemetry.FieldEstBatteryRange, 251.37),
		{Field: telemetry.FieldChargeLimitSoc, Value: telemetry.IntValue(80)},
		num(telemetry.FieldChargeAmps, 16),
		{Field: telemetry.FieldMilesSinceReset, Value: telemetry.IntValue(9876543210)},
		num(telemetry.FieldInsideTemp, 21.5),
		num(telemetry.FieldOutsideTemp, -3.25),
		num(telemetry.FieldPackVoltage, 398.25),
		num(telemetry.FieldPackCurrent, -12.5),
		{Field: telemetry.FieldLocked, Value: telemetry.BoolValue(true)},
		{Field: telemetry.FieldSentryMode, Value: telemetry.BoolValue(false)},
		gear("D"),
		chargeState("Disconnected"),
		loc(homeLat+0.01, homeLon),
		num(telemetry.FieldGpsHeading, 271.5),
		{Field: telemetry.FieldVehicleName, Value: telemetry.StringValue("Golden Test Car")},
		{Field: telemetry.FieldMilesSinceReset, Value: telemetry.InvalidValue()},
	}
}

// BenchmarkObserve measures a tracker's cost per data record. "unchanged"
// is a record whose values the tracker already holds (the common case of
// a resend or a record of other signals); "changing" moves speed,
// odometer, position and energy, as a driving car's records do.
func BenchmarkObserve(b *testing.B) {
	cfg := testConfig(b)
	b.Run("unchanged", func(b *testing.B) {
		tr := NewTracker(cfg, testVIN)
		rec := &telemetry.Record{VIN: testVIN, Topic: telemetry.TopicV, CreatedAt: t0, Data: benchData()}
		tr.Observe(rec)
		b.ReportAllocs()
		for b.Loop() {
			if ch := tr.Observe(rec); ch != 0 {
				b.Fatalf("changes %b", ch)
			}
		}
	})
	b.Run("changing", func(b *testing.B) {
		tr := NewTracker(cfg, testVIN)
		rec := &telemetry.Record{VIN: testVIN, Topic: telemetry.TopicV, CreatedAt: t0, Data: benchData()}
		tr.Observe(rec)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			rec.CreatedAt = rec.CreatedAt.Add(time.Second)
			x := float64(i % 1000)
			rec.Data[0].Value = telemetry.FloatValue(30 + x/100)
			rec.Data[1].Value = telemetry.FloatValue(12345.678 + x/100)
			rec.Data[16].Value = telemetry.LocationValue(homeLat+0.01+x*1e-6, homeLon)
			rec.Data[10].Value = telemetry.FloatValue(398 - x/1000)
			if ch := tr.Observe(rec); !ch.Has(ChangedValues) {
				b.Fatalf("changes %b", ch)
			}
		}
	})
}
