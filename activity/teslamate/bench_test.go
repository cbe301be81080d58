package teslamate

import (
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// BenchmarkChanged measures the layout of a driving car whose speed and
// odometer change with every record: every topic's payload is made and
// compared, two are published.
func BenchmarkChanged(b *testing.B) {
	sm := newSim(&testing.T{})
	rec := &telemetry.Record{Topic: telemetry.TopicV, CreatedAt: sm.now, Data: []telemetry.Datum{
		e(telemetry.FieldGear, "D"), f(telemetry.FieldVehicleSpeed, 30), f(telemetry.FieldOdometer, 1000),
		l(telemetry.FieldLocation, 52.6, 13.4), f(telemetry.FieldPackVoltage, 400), f(telemetry.FieldPackCurrent, 50),
		e(telemetry.FieldDetailedChargeState, "Disconnected"), f(telemetry.FieldRatedRange, 200),
	}}
	sm.tr.Observe(rec)
	sm.car.Changed(ViewOf(sm.tr))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		rec.CreatedAt = rec.CreatedAt.Add(time.Second)
		rec.Data[1].Value = telemetry.FloatValue(float64(30 + i%40))
		rec.Data[2].Value = telemetry.FloatValue(1000 + float64(i)/100)
		sm.tr.Observe(rec)
		if len(sm.car.Changed(ViewOf(sm.tr))) == 0 {
			b.Fatal("nothing published")
		}
	}
}
