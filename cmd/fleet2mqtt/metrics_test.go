package main

import (
	"path/filepath"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestQueueDepthMetric: while the external broker does not answer, the
// messages of a car's record wait in the client, and
// fleet2mqtt_mqtt_queue_depth shows them; once it answers they are
// acknowledged and the gauge is back to 0.
func TestQueueDepthMetric(t *testing.T) {
	broker := testenv.Mosquitto(t)
	pkiDir := filepath.Join(t.TempDir(), "pki")
	runDevCertsOK(t, "--out", pkiDir)
	pki, err := certs.LoadDir(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, "", broker.URL(), pkiDir, t.TempDir())
	fl := newFleet(t, r.vehicleAddr, pki, 1)
	fl.stream(t, fl.cars, 1, true)
	r.waitMetric(t, "fleet2mqtt_mqtt_queue_depth", 0)
	if got := r.metric(t, "fleet2mqtt_mqtt_queue_capacity"); got != 10000 {
		t.Errorf("fleet2mqtt_mqtt_queue_capacity = %v, want 10000", got)
	}

	broker.Pause()
	t.Cleanup(broker.Resume)
	fl.send(t, fl.cars, 1, true)
	depth := r.waitMetricFunc(t, "fleet2mqtt_mqtt_queue_depth", "at least 1", func(v float64) bool { return v >= 1 })
	broker.Resume()
	fl.flush(t, fl.cars)
	r.waitMetric(t, "fleet2mqtt_mqtt_queue_depth", 0)
	t.Logf("%v messages waited while the broker was frozen", depth)
}
