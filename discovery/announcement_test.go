package discovery

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestParseAnnouncement(t *testing.T) {
	const testVIN = "5YJ3E1EA7KF000001"
	ellie := Vehicle{VIN: testVIN, DisplayName: "Ellie", SoftwareVersion: "2025.2.6",
		Seen: []telemetry.Field{telemetry.FieldSoc, telemetry.FieldDoorState}}
	own := string(Messages(DefaultConfig(), testBridge, ellie)[0].Payload)
	removal := string(RemoveMessages(DefaultConfig(), testBridge, Vehicle{VIN: testVIN, Seen: []telemetry.Field{telemetry.FieldSoc}},
		map[string]string{"Soc": "sensor", "Gear": "sensor", "DoorState_TrunkFront": "binary_sensor"})[0].Payload)
	tests := []struct {
		name          string
		payload       string
		comps         []string // keys of Components
		removed       []string // keys of Removed
		fields        []telemetry.Field
		removedFields []telemetry.Field
		dev, sw       string
		err           error
	}{
		{"own config", own,
			[]string{"DoorState_DriverFront", "DoorState_DriverRear", "DoorState_PassengerFront", "DoorState_PassengerRear", "DoorState_TrunkFront", "DoorState_TrunkRear", "Soc", "alerts", "streaming"},
			nil, []telemetry.Field{telemetry.FieldSoc, telemetry.FieldDoorState}, nil, "Ellie", "2025.2.6", nil},
		{"removal", removal,
			[]string{"Soc", "alerts", "streaming"}, []string{"DoorState_TrunkFront", "Gear"},
			[]telemetry.Field{telemetry.FieldSoc}, []telemetry.Field{telemetry.FieldGear, telemetry.FieldDoorState}, testVIN, "", nil},
		{"long keys, unknown component",
			`{"device":{"name":"Ellie","sw_version":"1.2"},"components":{"Soc":{"platform":"sensor","unique_id":"u"},"FutureSignal":{"p":"sensor","unique_id":"v"},"Gear":{"p":"sensor"}}}`,
			[]string{"Soc"}, []string{"Gear"}, []telemetry.Field{telemetry.FieldSoc}, []telemetry.Field{telemetry.FieldGear}, "Ellie", "1.2", nil},
		{"one door of several removed", `{"cmps":{"DoorState_TrunkFront":{"p":"binary_sensor"},"DoorState_TrunkRear":{"p":"binary_sensor","unique_id":"t"}}}`,
			[]string{"DoorState_TrunkRear"}, []string{"DoorState_TrunkFront"}, []telemetry.Field{telemetry.FieldDoorState}, nil, "", "", nil},
		{"empty", "", nil, nil, nil, nil, "", "", nil},
		{"only unknown", `{"cmps":{"FutureSignal":{"p":"sensor","unique_id":"v"}}}`, nil, nil, nil, nil, "", "", ErrNoComponents},
		{"bad platform", `{"cmps":{"Soc":{"p":7}}}`, nil, nil, nil, nil, "", "", errParse},
		{"not json", `{`, nil, nil, nil, nil, "", "", errParse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAnnouncement([]byte(tt.payload))
			switch {
			case tt.err == errParse:
				if err == nil {
					t.Fatalf("no error for %s", tt.payload)
				}
				return
			case !errors.Is(err, tt.err):
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got := slices.Sorted(maps.Keys(a.Components)); !slices.Equal(got, tt.comps) {
				t.Errorf("components %v, want %v", got, tt.comps)
			}
			if got := slices.Sorted(maps.Keys(a.Removed)); !slices.Equal(got, tt.removed) {
				t.Errorf("removed %v, want %v", got, tt.removed)
			}
			if got := a.Fields(); !slices.Equal(got, tt.fields) {
				t.Errorf("Fields %v, want %v", got, tt.fields)
			}
			if got := a.RemovedFields(); !slices.Equal(got, tt.removedFields) {
				t.Errorf("RemovedFields %v, want %v", got, tt.removedFields)
			}
			if a.Name != tt.dev || a.SoftwareVersion != tt.sw {
				t.Errorf("name %q, version %q; want %q, %q", a.Name, a.SoftwareVersion, tt.dev, tt.sw)
			}
		})
	}
}

// errParse stands for any parse error in TestParseAnnouncement.
var errParse = errors.New("any parse error")
