package discovery

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// activityBridge announces the derived state too.
var activityBridge = Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "1.2.3", Activity: true, Currency: "EUR", StreamingCost: true}

func TestGoldenActivity(t *testing.T) {
	golden(t, "model3-activity", Messages(DefaultConfig(), activityBridge, sampleCar(t)))
}

// Every derived component is one Home Assistant accepts, and takes what
// the bridge publishes on its topic: statuses are options, timestamps RFC
// 3339, templates read members the summaries have, events carry one of
// their event types.
func TestActivityComponents(t *testing.T) {
	tab := loadHATable(t)
	c := decode(t, Messages(DefaultConfig(), activityBridge, sampleCar(t))[0].Payload)
	none := decode(t, Messages(DefaultConfig(), testBridge, sampleCar(t))[0].Payload)
	for _, e := range append(slices.Clone(activityEntities), streamingCostEntity) {
		if none.Cmps[e.key] != nil {
			t.Errorf("%s announced without Bridge.Activity", e.key)
		}
		comp := haComponent(c.Cmps[e.key])
		if comp == nil {
			t.Errorf("%s not announced", e.key)
			continue
		}
		if comp.str("state_topic") != "tesla/"+sampleCar(t).VIN+"/"+e.level || comp.str("name") == "" || comp.str("unique_id") == "" {
			t.Errorf("%s: %v", e.key, comp)
		}
		switch dc := comp.str("device_class"); {
		case comp.str("p") == "event":
			if types, _ := comp["event_types"].([]any); len(types) != 2 {
				t.Errorf("%s: event_types %v", e.key, comp["event_types"])
			}
		case dc == "timestamp" || dc == "enum" || dc == "":
			kind := telemetry.KindEnum
			if dc != "enum" {
				kind = telemetry.KindString
			}
			for _, bad := range tab.check(comp, kind) {
				if !strings.HasPrefix(bad, "timestamp sensor") { // RFC 3339 text, not epoch seconds
					t.Errorf("%s: %s", e.key, bad)
				}
			}
		default:
			for _, bad := range tab.check(comp, telemetry.KindDouble) {
				t.Errorf("%s: %s", e.key, bad)
			}
		}
	}
	// The members the templates read are in a summary as published.
	cost, dist, energy := 6.0, 9.98, 20.0
	summary, err := json.Marshal(activity.Session{Kind: activity.KindCharge, End: time.Now(), DistanceKm: &dist, EnergyUsedKWh: &energy, EnergyAddedKWh: &energy, Cost: &cost})
	if err != nil {
		t.Fatal(err)
	}
	var members map[string]any
	if err := json.Unmarshal(summary, &members); err != nil {
		t.Fatal(err)
	}
	members["monthly_dollars"] = 1.0 // the streaming cost's payload (checked in cmd/fleet2mqtt)
	for key, raw := range c.Cmps {
		for _, m := range memberPattern.FindAllStringSubmatch(haComponent(raw).str("value_template"), -1) {
			if _, ok := members[m[1]]; !ok && slices.ContainsFunc(activityEntities, func(e derivedEntity) bool { return e.key == key }) {
				t.Errorf("%s reads value_json.%s, which a summary does not have", key, m[1])
			}
		}
	}
	if got := haComponent(c.Cmps["last_charge_cost"]); got.str("device_class") != "monetary" || got.str("unit_of_measurement") != "EUR" {
		t.Errorf("cost: %v", got)
	}
	noCurrency := activityBridge
	noCurrency.Currency = ""
	if got := haComponent(decode(t, Messages(DefaultConfig(), noCurrency, sampleCar(t))[0].Payload).Cmps["last_charge_cost"]); got.str("device_class") != "" || got["unit_of_measurement"] != nil {
		t.Errorf("cost without a currency: %v", got)
	}
}

// A car announced with the derived state keeps those components when
// stale ones are removed.
func TestActivityComponentsAreNotStale(t *testing.T) {
	v := sampleCar(t)
	announced, err := ParseAnnounced(Messages(DefaultConfig(), activityBridge, v)[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := RemoveMessages(DefaultConfig(), activityBridge, v, announced); msgs != nil {
		t.Errorf("nothing is stale, yet: %s", msgs[0].Payload)
	}
	if msgs := RemoveMessages(DefaultConfig(), testBridge, v, announced); len(msgs) != 2 || !strings.Contains(string(msgs[0].Payload), `"status":{"p":"sensor"}`) {
		t.Errorf("turning activity off does not remove its components")
	}
}
