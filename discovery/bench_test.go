package discovery

import "testing"

// BenchmarkMessagesAllFields renders the discovery config of a car that
// streams every catalog field.
func BenchmarkMessagesAllFields(b *testing.B) {
	v := Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", SoftwareVersion: "2024.44.25.2", Streaming: allFields()}
	cfg := DefaultConfig()
	specs()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Messages(cfg, testBridge, v)[0].Payload)
	}
	b.ReportMetric(float64(n), "bytes/config")
}
