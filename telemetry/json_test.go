package telemetry

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRecordAppendJSONMembers(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 2, 500_000_000, time.UTC)
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{"values in the car's order, a repeated field in its first place with its last value", Record{
			Topic: TopicV, TxID: "t1", VIN: "5YJ3TESTVIN000001", CreatedAt: at, Resend: true,
			Data: []Datum{
				{FieldSoc, FloatValue(10)},
				{FieldGear, StringValue("D")},
				{FieldSoc, FloatValue(79.125)},
				{FieldOdometer, Value{}},
			},
		}, `"topic":"V","txid":"t1","vin":"5YJ3TESTVIN000001","created_at":"2026-01-01T00:00:02.5Z","resend":true,` +
			`"values":{"Soc":79.125,"Gear":"D","Odometer":null}`},
		{"alerts", Record{
			Topic: TopicAlerts, TxID: "t2", CreatedAt: at,
			Alerts: []Alert{
				{Name: "A1", Audiences: []Audience{AudienceCustomer, AudienceService}, StartedAt: at},
				{Name: "A2", StartedAt: at, EndedAt: at.Add(time.Second)},
			},
		}, `"topic":"alerts","txid":"t2","vin":"","created_at":"2026-01-01T00:00:02.5Z","alerts":[` +
			`{"name":"A1","audiences":["Customer","Service"],"started_at":"2026-01-01T00:00:02.5Z","ended_at":null,"active":true},` +
			`{"name":"A2","audiences":[],"started_at":"2026-01-01T00:00:02.5Z","ended_at":"2026-01-01T00:00:03.5Z","active":false}]`},
		{"errors, tags sorted", Record{
			Topic:  TopicErrors,
			Errors: []VehicleError{{Name: "E\"1", CreatedAt: at, Tags: map[string]string{"z": "1", "a": "2"}, Body: "b\n"}},
		}, `"topic":"errors","txid":"","vin":"","created_at":null,"errors":[` +
			`{"name":"E\"1","created_at":"2026-01-01T00:00:02.5Z","tags":{"a":"2","z":"1"},"body":"b\n"}]`},
		{"connectivity", Record{
			Topic:        TopicConnectivity,
			Connectivity: Connectivity{ConnectionID: "c", Status: StatusConnected, NetworkInterface: "wifi", CreatedAt: at},
		}, `"topic":"connectivity","txid":"","vin":"","created_at":null,"connectivity":` +
			`{"connection_id":"c","status":"CONNECTED","network_interface":"wifi","created_at":"2026-01-01T00:00:02.5Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.rec.AppendJSONMembers([]byte("prefix")))
			if got != "prefix"+tt.want {
				t.Errorf("got  %s\nwant prefix%s", got, tt.want)
			}
			if !json.Valid([]byte("{" + tt.want + "}")) {
				t.Errorf("not a JSON object's members: %s", tt.want)
			}
		})
	}
}
