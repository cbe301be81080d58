package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// scrape returns what /metrics shows.
func scrape(t *testing.T, m *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

// publisherFunc is a broker that answers with err.
type publisherFunc func(context.Context, []pubsub.Message) error

func (f publisherFunc) Publish(ctx context.Context, msgs []pubsub.Message) error { return f(ctx, msgs) }

// TestCountAndPublisher: records are counted by topic and by what the
// stages after Count made of them; the metered publisher counts the
// messages accepted and the calls refused, but not a cancelled one.
func TestCountAndPublisher(t *testing.T) {
	m := New(false)
	var refuse error
	pub := m.Publisher(publisherFunc(func(context.Context, []pubsub.Message) error { return refuse }))
	sink := m.Count(ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		return pub.Publish(ctx, []pubsub.Message{{Topic: "a"}, {Topic: "b"}})
	}))
	ctx := context.Background()
	for range 2 {
		if err := sink.Handle(ctx, &telemetry.Record{Topic: telemetry.TopicV}); err != nil {
			t.Fatal(err)
		}
	}
	refuse = errors.New("broker gone")
	if err := sink.Handle(ctx, &telemetry.Record{Topic: telemetry.TopicAlerts}); err == nil {
		t.Fatal("the broker's error did not reach the caller")
	}
	refuse = context.Canceled
	sink.Handle(ctx, &telemetry.Record{Topic: telemetry.TopicV})

	body := scrape(t, m)
	for _, want := range []string{
		`fleet2mqtt_records_total{outcome="published",topic="V"} 2`,
		`fleet2mqtt_records_total{outcome="failed",topic="alerts"} 1`,
		`fleet2mqtt_records_total{outcome="failed",topic="V"} 1`,
		"fleet2mqtt_mqtt_messages_total 4",
		"fleet2mqtt_mqtt_publish_errors_total 1",
		"fleet2mqtt_mqtt_publish_seconds_count 2",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestCar: per-car metrics name a car by its pseudonym unless
// http.metrics_vins asks for the VIN.
func TestCar(t *testing.T) {
	const vin = "5YJ3E1EA7KF000001"
	if got := New(false).Car(vin); got != CarPseudonym(vin) || len(got) != 8 || got == vin[:8] {
		t.Errorf("pseudonym %q", got)
	}
	if got := New(true).Car(vin); got != vin {
		t.Errorf("with metrics_vins: %q", got)
	}
}
