package simulate

import (
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// BenchmarkTemplateMessage is the load driver's work per record in the
// timed part: copy a pre-built frame and stamp its ids.
func BenchmarkTemplateMessage(b *testing.B) {
	car, err := NewCar(CarConfig{URL: "wss://127.0.0.1:1/", VIN: testVIN, TLS: &tlsWithCert})
	if err != nil {
		b.Fatal(err)
	}
	fs, _ := loadFields(DefaultLoadFields)
	tpl, err := newTemplate(car, 0, fs, templateRing)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(tpl.frames[0])))
	for i := 0; b.Loop(); i++ {
		_ = tpl.message(i)
	}
}

// BenchmarkEncodeData is what a scenario record costs to encode (outside
// the load test's timed part).
func BenchmarkEncodeData(b *testing.B) {
	fs, _ := loadFields(DefaultLoadFields)
	data := make([]telemetry.Datum, len(fs))
	for i, f := range fs {
		data[i] = telemetry.Datum{Field: f, Value: loadValue(f, 1, 0)}
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeData(testVIN, now, data, false); err != nil {
			b.Fatal(err)
		}
	}
}
