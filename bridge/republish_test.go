package bridge

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func alertsRecord(alerts ...telemetry.Alert) *telemetry.Record {
	return &telemetry.Record{VIN: vin, Topic: telemetry.TopicAlerts, Alerts: alerts}
}

// activeAlerts returns the payload of the active alerts message in msgs,
// and whether there is one.
func activeAlerts(msgs []pubsub.Message) (string, bool) {
	for _, m := range msgs {
		if m.Topic == "tesla/"+vin+"/active_alerts" {
			return string(m.Payload), true
		}
	}
	return "", false
}

// TestActiveAlerts follows the active alerts over several records: an
// alert stays until a record ends it, the list is ordered by start time,
// then name.
func TestActiveAlerts(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	customer := []telemetry.Audience{telemetry.AudienceCustomer}
	steps := []struct {
		name string
		rec  *telemetry.Record
		want string
	}{
		{"one starts", alertsRecord(telemetry.Alert{Name: "B", StartedAt: at(20), Audiences: customer}),
			`{"count":1,"alerts":[{"name":"B","started_at":"2026-01-01T00:00:20Z","audiences":["Customer"]}]}`},
		{"an earlier one comes first", alertsRecord(telemetry.Alert{Name: "A", StartedAt: at(10)}),
			`{"count":2,"alerts":[{"name":"A","started_at":"2026-01-01T00:00:10Z","audiences":[]},` +
				`{"name":"B","started_at":"2026-01-01T00:00:20Z","audiences":["Customer"]}]}`},
		{"equal starts by name", alertsRecord(telemetry.Alert{Name: "0\"q", StartedAt: at(20), Audiences: []telemetry.Audience{telemetry.AudienceService, telemetry.AudienceServiceFix}}),
			`{"count":3,"alerts":[{"name":"A","started_at":"2026-01-01T00:00:10Z","audiences":[]},` +
				`{"name":"0\"q","started_at":"2026-01-01T00:00:20Z","audiences":["Service","ServiceFix"]},` +
				`{"name":"B","started_at":"2026-01-01T00:00:20Z","audiences":["Customer"]}]}`},
		{"ended ones go", alertsRecord(
			telemetry.Alert{Name: "B", StartedAt: at(20), EndedAt: at(30)},
			telemetry.Alert{Name: "0\"q", StartedAt: at(20), EndedAt: at(31)}),
			`{"count":1,"alerts":[{"name":"A","started_at":"2026-01-01T00:00:10Z","audiences":[]}]}`},
		{"the one started last of a name counts", alertsRecord(
			telemetry.Alert{Name: "A", StartedAt: at(10), EndedAt: at(40)},
			telemetry.Alert{Name: "A", StartedAt: at(41), Audiences: customer}),
			`{"count":1,"alerts":[{"name":"A","started_at":"2026-01-01T00:00:41Z","audiences":["Customer"]}]}`},
		{"none left", alertsRecord(telemetry.Alert{Name: "A", StartedAt: at(41), EndedAt: at(50)}),
			`{"count":0,"alerts":[]}`},
		{"an ended alert never seen active", alertsRecord(telemetry.Alert{Name: "C", StartedAt: at(1), EndedAt: at(2)}),
			`{"count":0,"alerts":[]}`},
	}
	b, r := newTestBridge(t, DefaultConfig())
	for _, s := range steps {
		handle(t, b, s.rec)
		got, ok := activeAlerts(r.take())
		if !ok || got != s.want {
			t.Fatalf("%s: active alerts %q (%t), want %q", s.name, got, ok, s.want)
		}
	}
}

// TestActiveAlertsGolden reads the golden alerts frame: an active alert,
// and one that ended and started again (in milliseconds).
func TestActiveAlertsGolden(t *testing.T) {
	var rec *telemetry.Record
	for _, c := range loadManifest(t).Cases {
		if c.Name == "08_alerts" {
			rec, _ = c.record(t)
		}
	}
	if rec == nil {
		t.Fatal("no golden case 08_alerts")
	}
	b, r := newTestBridge(t, DefaultConfig())
	handle(t, b, rec)
	want := `{"count":2,"alerts":[` +
		`{"name":"UI_a001_TestAlertActive","started_at":"2025-12-31T23:59:00Z","audiences":["Customer","Service"]},` +
		`{"name":"UI_a002_TestAlertEnded","started_at":"2025-12-31T23:59:50Z","audiences":["ServiceFix"]}]}`
	if got, _ := activeAlerts(r.take()); got != want {
		t.Errorf("active alerts\n got %s\nwant %s", got, want)
	}
}

// TestActiveAlertsKeepNoRecordMemory changes the record's alerts after
// Handle; the list must not change with them.
func TestActiveAlertsKeepNoRecordMemory(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	name := []byte("Alert1")
	rec := alertsRecord(telemetry.Alert{Name: string(name), StartedAt: time.Unix(1, 0), Audiences: []telemetry.Audience{telemetry.AudienceCustomer}})
	handle(t, b, rec)
	rec.Alerts[0].Audiences[0] = telemetry.AudienceService
	r.take()
	if err := b.PublishActiveAlerts(context.Background(), vin); err != nil {
		t.Fatal(err)
	}
	if got, _ := activeAlerts(r.take()); !strings.Contains(got, `"audiences":["Customer"]`) {
		t.Errorf("active alerts %s changed with the record", got)
	}
}

func TestPublishActiveAlerts(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	ctx := context.Background()
	if err := b.PublishActiveAlerts(ctx, vin); err != nil {
		t.Fatal(err)
	}
	diffLines(t, lines(r.take()), []string{"tesla/" + vin + `/active_alerts qos=1 retain=true {"count":0,"alerts":[]}`})
	if err := b.PublishActiveAlerts(ctx, "bad/vin"); err == nil {
		t.Error("PublishActiveAlerts took a VIN with '/'")
	}

	// The compatibility layout alone has no such topic.
	b, r = newTestBridge(t, compatConfig())
	if err := b.PublishActiveAlerts(ctx, vin); err != nil {
		t.Fatal(err)
	}
	handle(t, b, alertsRecord(telemetry.Alert{Name: "A", StartedAt: time.Unix(1, 0)}))
	if got, ok := activeAlerts(r.take()); ok {
		t.Errorf("compat.exclusive published active alerts %s", got)
	}
}

// TestRepublish publishes a car's records, then asks for them again: every
// native topic gets its latest payload again, nothing else.
func TestRepublish(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	records := []*telemetry.Record{
		{VIN: vin, Topic: telemetry.TopicConnectivity, Connectivity: telemetry.Connectivity{Status: telemetry.StatusConnected}},
		dataRecord(
			datum(telemetry.FieldSoc, telemetry.FloatValue(79.5)),
			datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie")),
			datum(telemetry.FieldLocation, telemetry.LocationValue(37.4, -122.1)),
			datum(telemetry.FieldOdometer, telemetry.InvalidValue()),
		),
		dataRecord(
			datum(telemetry.FieldSoc, telemetry.FloatValue(80)),
			datum(telemetry.FieldLocked, telemetry.BoolValue(true)),
			datum(telemetry.FieldGear, telemetry.StringValue("D")),
		),
		dataRecord(datum(telemetry.FieldOutsideTemp, telemetry.Value{})), // no member set: nothing
		alertsRecord(telemetry.Alert{Name: "A", StartedAt: at(1)}),
		{VIN: vin, Topic: telemetry.TopicErrors, Errors: []telemetry.VehicleError{{Name: "e"}}},
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"defaults", nil},
		{"not retained, with compat", func(c *Config) { c.Retain = false; c.Compat.Enabled = true }},
		{"qos 0 without state", func(c *Config) { c.QoS = 0; c.StateTopic = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			// Every record publishes its state object, so that the last
			// one seen is the state Republish must repeat.
			cfg.StateInterval = 0
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			b, r := newTestBridge(t, cfg)
			for _, rec := range records {
				handle(t, b, rec)
			}
			// What a subscriber has last seen of each native topic, but
			// alerts and errors, which are events.
			want := map[string]string{}
			for _, m := range r.take() {
				if strings.HasPrefix(m.Topic, "tesla/") && !strings.Contains(m.Topic, "/alerts/") && !strings.Contains(m.Topic, "/errors/") {
					want[m.Topic] = line(m)
				}
			}
			if err := b.Republish(context.Background(), vin); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, m := range r.take() {
				if _, dup := got[m.Topic]; dup {
					t.Errorf("%s published twice", m.Topic)
				}
				got[m.Topic] = line(m)
			}
			if !maps.Equal(got, want) {
				gl, wl := slices.Sorted(maps.Values(got)), slices.Sorted(maps.Values(want))
				diffLines(t, gl, wl)
			}
			if _, ok := got["tesla/"+vin+"/Odometer"]; !ok {
				t.Error("an invalid value (None) was not republished")
			}
		})
	}
}

func TestRepublishNothing(t *testing.T) {
	ctx := context.Background()
	b, r := newTestBridge(t, DefaultConfig())
	if err := b.Republish(ctx, vin); err != nil {
		t.Fatal(err)
	}
	if msgs := r.take(); len(msgs) != 0 {
		t.Errorf("an unknown car republished %v", lines(msgs))
	}

	// Only what is known: no active alerts before an alerts record, no
	// connected before a connectivity record.
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.IntValue(5))))
	r.take()
	if err := b.Republish(ctx, vin); err != nil {
		t.Fatal(err)
	}
	diffLines(t, lines(r.take()), []string{
		"tesla/" + vin + "/Soc qos=1 retain=true 5",
		"tesla/" + vin + `/state qos=1 retain=true {"Soc":5}`,
	})

	b, r = newTestBridge(t, compatConfig())
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.IntValue(5))))
	r.take()
	if err := b.Republish(ctx, vin); err != nil {
		t.Fatal(err)
	}
	if msgs := r.take(); len(msgs) != 0 {
		t.Errorf("compat.exclusive republished %v", lines(msgs))
	}
}

// TestRepublishFails returns the publisher's error.
func TestRepublishFails(t *testing.T) {
	b, r := newTestBridge(t, DefaultConfig())
	handle(t, b, dataRecord(datum(telemetry.FieldSoc, telemetry.IntValue(5))))
	r.err = context.DeadlineExceeded
	if err := b.Republish(context.Background(), vin); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("Republish = %v, want the publisher's error", err)
	}
	if err := b.PublishActiveAlerts(context.Background(), vin); err == nil {
		t.Error("PublishActiveAlerts ignored the publisher's error")
	}
}
