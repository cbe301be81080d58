package bridge

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// benchRecord is a data record of 20 mixed fields, the shape of the load
// the reference server was measured with.
func benchRecord() *telemetry.Record {
	return dataRecord(
		datum(telemetry.FieldVehicleSpeed, telemetry.Float32Value(65.5)),
		datum(telemetry.FieldOdometer, telemetry.FloatValue(12345.678)),
		datum(telemetry.FieldSoc, telemetry.FloatValue(79.125)),
		datum(telemetry.FieldBatteryLevel, telemetry.FloatValue(78.5)),
		datum(telemetry.FieldEstBatteryRange, telemetry.FloatValue(251.37)),
		datum(telemetry.FieldChargeLimitSoc, telemetry.IntValue(80)),
		datum(telemetry.FieldChargeAmps, telemetry.IntValue(16)),
		datum(telemetry.FieldMilesSinceReset, telemetry.IntValue(9876543210)),
		datum(telemetry.FieldInsideTemp, telemetry.Float32Value(21.5)),
		datum(telemetry.FieldOutsideTemp, telemetry.Float32Value(-3.25)),
		datum(telemetry.FieldPackVoltage, telemetry.FloatValue(398.25)),
		datum(telemetry.FieldPackCurrent, telemetry.FloatValue(-12.5)),
		datum(telemetry.FieldLocked, telemetry.BoolValue(true)),
		datum(telemetry.FieldSentryMode, telemetry.BoolValue(false)),
		datum(telemetry.FieldGear, telemetry.EnumNumber(telemetry.EnumShiftState, 5)),
		datum(telemetry.FieldDetailedChargeState, telemetry.EnumNumber(telemetry.EnumDetailedChargeStateValue, 4)),
		datum(telemetry.FieldLocation, telemetry.LocationValue(37.412374, -122.145867)),
		datum(telemetry.FieldGpsHeading, telemetry.FloatValue(271.5)),
		datum(telemetry.FieldVehicleName, telemetry.StringValue("Golden Test Car")),
		datum(telemetry.FieldChargeAmps, telemetry.InvalidValue()),
	)
}

// BenchmarkHandle measures one 20-field record turned into messages for a
// publisher that does nothing: the bridge's own cost per record.
func BenchmarkHandle(b *testing.B) {
	for _, layout := range []struct {
		name   string
		modify func(*Config)
	}{
		{"native", func(*Config) {}},
		{"native+compat", func(c *Config) { c.Compat.Enabled = true }},
		{"compat", func(c *Config) { c.Compat.Enabled, c.Compat.Exclusive = true, true }},
	} {
		b.Run(layout.name, func(b *testing.B) {
			cfg := DefaultConfig()
			layout.modify(&cfg)
			br, err := New(cfg, discard{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			rec := benchRecord()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := br.Handle(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandleChanging is BenchmarkHandle/native with values that
// change from record to record, as a driving car's do: every value is
// formatted again.
func BenchmarkHandleChanging(b *testing.B) {
	br, err := New(DefaultConfig(), discard{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rec := benchRecord()
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		for i := range rec.Data {
			d := &rec.Data[i]
			switch d.Value.Kind() {
			case telemetry.KindFloatValue:
				d.Value = telemetry.FloatValue(float64(n%1000)/7 + float64(i))
			case telemetry.KindIntValue:
				d.Value = telemetry.IntValue(int64(n + i))
			case telemetry.KindBoolValue:
				d.Value = telemetry.BoolValue(n%2 == 0)
			case telemetry.KindLocationValue:
				d.Value = telemetry.LocationValue(37+float64(n%1000)/1e4, -122.1)
			}
		}
		if err := br.Handle(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleParallel runs many vehicles at once.
func BenchmarkHandleParallel(b *testing.B) {
	br, err := New(DefaultConfig(), discard{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		rec := benchRecord()
		rec.VIN = fmt.Sprintf("VIN%014d", n.Add(1))
		for pb.Next() {
			if err := br.Handle(ctx, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVehicleMemory reports what the bridge keeps per car: cars
// that connected and sent one 20-field record, measured as live heap
// after a garbage collection (bytes/car). The messages go to a publisher
// that keeps nothing; what the broker keeps is not counted.
func BenchmarkVehicleMemory(b *testing.B) {
	const cars = 2000
	ctx := context.Background()
	vins := make([]string, cars)
	for i := range vins {
		vins[i] = fmt.Sprintf("5YJ3E1EA7KF%06d", i)
	}
	for b.Loop() {
		before := liveHeap()
		br, err := New(DefaultConfig(), discard{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, vin := range vins {
			conn := &telemetry.Record{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{
				ConnectionID: "c", Status: telemetry.StatusConnected, NetworkInterface: "wifi",
			}}
			rec := benchRecord()
			rec.VIN = vin
			for _, r := range []*telemetry.Record{conn, rec} {
				if err := br.Handle(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		}
		after := liveHeap()
		b.ReportMetric(float64(after-before)/cars, "bytes/car")
		runtime.KeepAlive(br)
	}
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
