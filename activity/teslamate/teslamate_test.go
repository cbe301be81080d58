package teslamate

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// The topics evcc's TeslaMate vehicle template reads
// (templates/definition/vehicle/teslamate.yaml in evcc-io/evcc).
var evccTopics = []string{
	"usable_battery_level", "plugged_in", "charger_actual_current", "rated_battery_range_km",
	"odometer", "latitude", "longitude", "charge_limit_soc", "time_to_full_charge",
	"charge_energy_added", "is_preconditioning",
}

// The topics TeslaMate's Home Assistant MQTT package reads
// (website/docs/integrations/home_assistant.md in teslamate-org/teslamate).
var homeAssistantTopics = []string{
	"active_route", "battery_level", "charge_energy_added", "charge_limit_soc", "charge_port_door_open",
	"charger_actual_current", "charger_phases", "charger_power", "charger_voltage", "charging_state",
	"display_name", "doors_open", "elevation", "est_battery_range_km", "exterior_color", "frunk_open",
	"geofence", "heading", "healthy", "ideal_battery_range_km", "inside_temp", "is_climate_on",
	"is_preconditioning", "is_user_present", "location", "locked", "model", "odometer", "outside_temp",
	"plugged_in", "power", "rated_battery_range_km", "scheduled_charging_start_time", "sentry_mode",
	"shift_state", "since", "speed", "spoiler_type", "state", "time_to_full_charge", "tpms_pressure_fl",
	"tpms_pressure_fr", "tpms_pressure_rl", "tpms_pressure_rr", "trim_badging", "trunk_open",
	"update_available", "update_version", "usable_battery_level", "version", "wheel_type", "windows_open",
}

// notDerivable are TeslaMate topics the stream has no signal for
// (docs/teslamate.md says why).
var notDerivable = map[string]bool{"elevation": true, "spoiler_type": true}

type sim struct {
	t   *testing.T
	tr  *activity.Tracker
	car *Car
	now time.Time
	// got holds the latest payload of every topic published so far.
	got map[string]string
}

func (s *sim) send(d time.Duration, data ...telemetry.Datum) {
	s.now = s.now.Add(d)
	s.tr.Observe(&telemetry.Record{VIN: s.tr.VIN(), Topic: telemetry.TopicV, CreatedAt: s.now, Data: data})
	s.publish()
}

func (s *sim) tick(d time.Duration) {
	s.now = s.now.Add(d)
	s.tr.Tick(s.now)
	s.publish()
}

func (s *sim) publish() {
	for _, m := range s.car.Changed(ViewOf(s.tr)) {
		name, ok := strings.CutPrefix(m.Topic, "teslamate/cars/1/")
		if !ok {
			s.t.Fatalf("topic %s outside the car's prefix", m.Topic)
		}
		if !m.Retain && name != "healthy" {
			s.t.Errorf("%s is not retained", name)
		}
		s.got[name] = string(m.Payload)
	}
}

func f(field telemetry.Field, v float64) telemetry.Datum {
	return telemetry.Datum{Field: field, Value: telemetry.FloatValue(v)}
}
func i(field telemetry.Field, v int64) telemetry.Datum {
	return telemetry.Datum{Field: field, Value: telemetry.IntValue(v)}
}
func b(field telemetry.Field, v bool) telemetry.Datum {
	return telemetry.Datum{Field: field, Value: telemetry.BoolValue(v)}
}
func s(field telemetry.Field, v string) telemetry.Datum {
	return telemetry.Datum{Field: field, Value: telemetry.StringValue(v)}
}
func e(field telemetry.Field, name string) telemetry.Datum {
	info, _ := telemetry.Lookup(field)
	ev, ok := info.Enum.ByName(name)
	if !ok {
		panic(name)
	}
	return telemetry.Datum{Field: field, Value: telemetry.EnumOf(info.Enum, ev)}
}
func l(field telemetry.Field, lat, lon float64) telemetry.Datum {
	return telemetry.Datum{Field: field, Value: telemetry.LocationValue(lat, lon)}
}

func newSim(t *testing.T) *sim {
	cfg := &activity.Config{Places: []activity.Place{{Name: "Home", Latitude: 52.52, Longitude: 13.405}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tr := activity.NewTracker(cfg, "5YJ3E7EB0KF000001")
	tr.KeepEveryValue()
	return &sim{t: t, tr: tr, car: NewCar(1, ""),
		now: time.Date(2026, 3, 14, 7, 0, 0, 0, time.UTC), got: map[string]string{}}
}

// TestSimulatedDriveAndChargeFeedTheConsumers plays a car that wakes at
// home, drives away and back with navigation, and charges; every topic
// evcc and the Home Assistant package read must appear with TeslaMate's
// units and formats.
func TestSimulatedDriveAndChargeFeedTheConsumers(t *testing.T) {
	sm := newSim(t)
	sm.send(0,
		s(telemetry.FieldVehicleName, "Blue Thunder"), s(telemetry.FieldVersion, "2025.44.25.5 abcdef123456"),
		s(telemetry.FieldSoftwareUpdateVersion, "2025.50.1 0123"), e(telemetry.FieldCarType, "Model3"),
		s(telemetry.FieldTrim, "74D"), s(telemetry.FieldExteriorColor, "DeepBlue"), s(telemetry.FieldWheelType, "Pinwheel18"),
		l(telemetry.FieldLocation, 52.52, 13.405), e(telemetry.FieldGear, "P"), f(telemetry.FieldGpsHeading, 271.5),
		f(telemetry.FieldPackVoltage, 400), f(telemetry.FieldPackCurrent, 2), b(telemetry.FieldLocked, true),
		e(telemetry.FieldSentryMode, "Armed"),
		e(telemetry.FieldFdWindow, "Closed"), e(telemetry.FieldFpWindow, "Closed"), e(telemetry.FieldRdWindow, "Closed"), e(telemetry.FieldRpWindow, "PartiallyOpen"),
		telemetry.Datum{Field: telemetry.FieldDoorState, Value: telemetry.DoorsValue(0)},
		b(telemetry.FieldDriverSeatOccupied, false), e(telemetry.FieldHvacPower, "Off"),
		f(telemetry.FieldInsideTemp, 20.8), f(telemetry.FieldOutsideTemp, 18.4), b(telemetry.FieldPreconditioningEnabled, false),
		f(telemetry.FieldOdometer, 1000), f(telemetry.FieldEstBatteryRange, 200), f(telemetry.FieldRatedRange, 220), f(telemetry.FieldIdealBatteryRange, 230),
		f(telemetry.FieldBatteryLevel, 61), f(telemetry.FieldSoc, 60), f(telemetry.FieldEnergyRemaining, 45),
		e(telemetry.FieldDetailedChargeState, "Disconnected"), f(telemetry.FieldDCChargingEnergyIn, 12.5), i(telemetry.FieldChargeLimitSoc, 80),
		b(telemetry.FieldChargePortDoorOpen, false), f(telemetry.FieldChargeAmps, 0), i(telemetry.FieldChargerPhases, 0),
		f(telemetry.FieldChargerVoltage, 1.2), i(telemetry.FieldScheduledChargingStartTime, 1773522000),
		f(telemetry.FieldTimeToFullCharge, 0),
		f(telemetry.FieldTpmsPressureFl, 2.9), f(telemetry.FieldTpmsPressureFr, 2.85), f(telemetry.FieldTpmsPressureRl, 2.9), f(telemetry.FieldTpmsPressureRr, 2.8),
		telemetry.Datum{Field: telemetry.FieldTpmsSoftWarnings, Value: telemetry.TiresValue(telemetry.FrontLeft)},
	)
	if sm.got["state"] != "online" || sm.got["geofence"] != "Home" || sm.got["plugged_in"] != "false" {
		t.Errorf("parked at home: state %q geofence %q plugged_in %q", sm.got["state"], sm.got["geofence"], sm.got["plugged_in"])
	}
	// Drive away with navigation.
	sm.send(time.Minute, e(telemetry.FieldGear, "D"), f(telemetry.FieldVehicleSpeed, 31), f(telemetry.FieldPackCurrent, 60),
		b(telemetry.FieldDriverSeatOccupied, true), e(telemetry.FieldHvacPower, "On"),
		s(telemetry.FieldDestinationName, "Supercharger Mitte"), l(telemetry.FieldDestinationLocation, 52.53, 13.41),
		i(telemetry.FieldExpectedEnergyPercentAtTripArrival, 55), f(telemetry.FieldMilesToArrival, 6.2),
		f(telemetry.FieldMinutesToArrival, 14.5), f(telemetry.FieldRouteTrafficMinutesDelay, 0))
	if sm.got["state"] != "driving" || sm.got["speed"] != "50" || sm.got["power"] != "24" || sm.got["shift_state"] != "D" || sm.got["geofence"] != "Home" {
		t.Errorf("driving: state %q speed %q km/h power %q kW shift %q geofence %q", sm.got["state"], sm.got["speed"], sm.got["power"], sm.got["shift_state"], sm.got["geofence"])
	}
	var route map[string]any
	if err := json.Unmarshal([]byte(sm.got["active_route"]), &route); err != nil || route["destination"] != "Supercharger Mitte" || route["error"] != nil {
		t.Errorf("active_route while navigating = %s (%v)", sm.got["active_route"], err)
	}
	sm.send(10*time.Minute, l(telemetry.FieldLocation, 52.53, 13.41), f(telemetry.FieldOdometer, 1006.2),
		f(telemetry.FieldVehicleSpeed, 0), e(telemetry.FieldGear, "P"), f(telemetry.FieldBatteryLevel, 55), f(telemetry.FieldSoc, 54),
		s(telemetry.FieldDestinationName, ""), f(telemetry.FieldRatedRange, 200))
	if sm.got["geofence"] != "" || sm.got["active_route"] != `{"error":"No active route available"}` || sm.got["active_route_destination"] != "nil" {
		t.Errorf("arrived: geofence %q active_route %s destination %q", sm.got["geofence"], sm.got["active_route"], sm.got["active_route_destination"])
	}
	sm.tick(5 * time.Minute)
	if sm.got["state"] != "online" {
		t.Errorf("after the drive: state %q, want online", sm.got["state"])
	}
	// Charge at a Supercharger.
	sm.send(time.Minute, e(telemetry.FieldDetailedChargeState, "Charging"), f(telemetry.FieldDCChargingEnergyIn, 0),
		f(telemetry.FieldDCChargingPower, 150.4), f(telemetry.FieldChargeAmps, 0.5), f(telemetry.FieldChargerVoltage, 0),
		f(telemetry.FieldTimeToFullCharge, 0.42), f(telemetry.FieldPackCurrent, -375), b(telemetry.FieldChargePortDoorOpen, true))
	if sm.got["state"] != "charging" || sm.got["plugged_in"] != "true" || sm.got["charging_state"] != "Charging" {
		t.Errorf("charging: state %q plugged_in %q charging_state %q", sm.got["state"], sm.got["plugged_in"], sm.got["charging_state"])
	}
	if a, err := strconv.ParseFloat(sm.got["charger_actual_current"], 64); err != nil || !(a > 0) {
		t.Errorf("charger_actual_current while charging = %q: evcc reads > 0 as charging", sm.got["charger_actual_current"])
	}
	if sm.got["power"] != "-150" || sm.got["charger_power"] != "150.4" || sm.got["time_to_full_charge"] != "0.42" {
		t.Errorf("charging figures: power %q charger_power %q time_to_full_charge %q", sm.got["power"], sm.got["charger_power"], sm.got["time_to_full_charge"])
	}
	sm.send(20*time.Minute, f(telemetry.FieldDCChargingEnergyIn, 30.456), f(telemetry.FieldBatteryLevel, 80), f(telemetry.FieldSoc, 79),
		e(telemetry.FieldDetailedChargeState, "Complete"), f(telemetry.FieldDCChargingPower, 0))
	if sm.got["charge_energy_added"] != "30.46" || sm.got["charger_actual_current"] != "0" || sm.got["charging_state"] != "Complete" {
		t.Errorf("complete: charge_energy_added %q charger_actual_current %q charging_state %q",
			sm.got["charge_energy_added"], sm.got["charger_actual_current"], sm.got["charging_state"])
	}

	for _, list := range []struct {
		who    string
		topics []string
	}{{"evcc", evccTopics}, {"Home Assistant package", homeAssistantTopics}} {
		for _, name := range list.topics {
			if _, ok := sm.got[name]; !ok && !notDerivable[name] {
				t.Errorf("%s reads %s: never published", list.who, name)
			}
		}
	}

	// Units and formats.
	want := map[string]string{
		"odometer": "1619.32", "rated_battery_range_km": "321.87", "est_battery_range_km": "321.87",
		"ideal_battery_range_km": "370.15", "usable_battery_level": "79", "battery_level": "80",
		"charge_limit_soc": "80", "latitude": "52.53", "longitude": "13.41",
		"location": `{"latitude":52.53,"longitude":13.41}`, "is_preconditioning": "false",
		"display_name": "Blue Thunder", "version": "2025.44.25.5", "update_available": "true", "update_version": "2025.50.1",
		"model": "3", "trim_badging": "74D", "heading": "272", "inside_temp": "20.8", "tpms_pressure_fr": "2.85",
		"tpms_soft_warning_fl": "true", "tpms_soft_warning_fr": "false", "windows_open": "true", "doors_open": "false",
		"sentry_mode": "true", "is_climate_on": "true", "is_user_present": "true", "locked": "true", "healthy": "true",
		"scheduled_charging_start_time": "2026-03-14T21:00:00Z", "charge_port_door_open": "true",
		"software_update": `{"installed_version":"2025.44.25.5","latest_version":"2025.50.1"}`,
	}
	for name, w := range want {
		if got := sm.got[name]; got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	if _, err := time.Parse(time.RFC3339, sm.got["since"]); err != nil {
		t.Errorf("since = %q: %v", sm.got["since"], err)
	}
	for _, name := range []string{"usable_battery_level", "odometer", "rated_battery_range_km", "time_to_full_charge", "charge_energy_added", "charge_limit_soc"} {
		if _, err := strconv.ParseFloat(sm.got[name], 64); err != nil {
			t.Errorf("%s = %q is not a number", name, sm.got[name])
		}
	}
}

func TestChangedPublishesOnlyChanges(t *testing.T) {
	sm := newSim(t)
	sm.send(0, f(telemetry.FieldOdometer, 1000), e(telemetry.FieldGear, "P"))
	if msgs := sm.car.Changed(ViewOf(sm.tr)); len(msgs) != 0 {
		t.Errorf("nothing changed, published %d messages: %v", len(msgs), msgs)
	}
	sm.tr.Observe(&telemetry.Record{Topic: telemetry.TopicV, CreatedAt: sm.now.Add(time.Second), Data: []telemetry.Datum{f(telemetry.FieldOdometer, 1001)}})
	msgs := sm.car.Changed(ViewOf(sm.tr))
	if len(msgs) != 1 || msgs[0].Topic != "teslamate/cars/1/odometer" || string(msgs[0].Payload) != "1610.95" {
		t.Errorf("odometer change published %v", msgs)
	}
	sm.car.Forget()
	if n := len(sm.car.Changed(ViewOf(sm.tr))); n < 5 {
		t.Errorf("after Forget: %d messages, want every topic with a value", n)
	}
	if got, ok := Payload("state", ViewOf(sm.tr)); !ok || got != "online" {
		t.Errorf(`Payload("state") = %q %v`, got, ok)
	}
	if NewCar(2, "garage").Prefix() != "teslamate/garage/cars/2/" {
		t.Error("namespace prefix")
	}
}
