// Package examples_test checks the examples users copy: the Home Assistant
// dashboard card against the entities discovery announces, and the
// Node-RED flow in a real Node-RED fed by fleet2mqtt.
package examples_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const dashboardFile = "home-assistant/dashboard.yaml"

// entityRE matches the entity ids of the example car, Ellie.
var entityRE = regexp.MustCompile(`^(sensor|binary_sensor|device_tracker)\.ellie_[a-z0-9_]+$`)

// TestDashboardEntities checks that every entity of the dashboard card is
// one that discovery announces, enabled, for a car named Ellie streaming
// the signals the card's header lists.
func TestDashboardEntities(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var card map[string]any
	if err := yaml.Unmarshal(raw, &card); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if card["type"] != "vertical-stack" {
		t.Errorf("card type %v", card["type"])
	}
	var used []string
	collectEntities(card, &used)
	if len(used) < 10 {
		t.Fatalf("only %d entities found in %s: %v", len(used), dashboardFile, used)
	}

	signals := listedSignals(t, string(raw))
	announced := announcedEntities(t, signals)
	for _, id := range used {
		enabled, ok := announced[id]
		switch {
		case !ok:
			t.Errorf("%s: discovery announces no %s for the listed signals", dashboardFile, id)
		case !enabled:
			t.Errorf("%s: %s is announced disabled by default; the card would show it unavailable", dashboardFile, id)
		}
	}
}

// collectEntities gathers every string value that is an entity id of the
// example car, wherever it sits in the card.
func collectEntities(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			collectEntities(x, out)
		}
	case []any:
		for _, x := range v {
			collectEntities(x, out)
		}
	case string:
		if entityRE.MatchString(v) && !slices.Contains(*out, v) {
			*out = append(*out, v)
		}
	}
}

// listedSignals reads the signal names from the "Needs these signals"
// paragraph of the file's header comment.
func listedSignals(t *testing.T, file string) []telemetry.Field {
	t.Helper()
	_, after, ok := strings.Cut(file, "# Needs these signals")
	if !ok {
		t.Fatal("dashboard header does not list the signals it needs")
	}
	para, _, _ := strings.Cut(after, "\n#\n")
	_, list, _ := strings.Cut(para, ":")
	list, _, _ = strings.Cut(list, ".")
	var fields []telemetry.Field
	for name := range strings.FieldsFuncSeq(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '#' }) {
		f, ok := telemetry.FieldByName(name)
		if !ok {
			t.Errorf("dashboard header lists %q, which is no signal", name)
			continue
		}
		fields = append(fields, f)
	}
	if len(fields) < 10 {
		t.Fatalf("dashboard header lists only %d signals", len(fields))
	}
	return fields
}

// announcedEntities returns the default_entity_id of every component
// discovery announces for Ellie, with whether it is enabled by default.
func announcedEntities(t *testing.T, streaming []telemetry.Field) map[string]bool {
	t.Helper()
	v := discovery.Vehicle{VIN: "5YJ3E1EA7KF000001", DisplayName: "Ellie", Streaming: streaming}
	msgs := discovery.Messages(discovery.DefaultConfig(), discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, v)
	out := map[string]bool{}
	for _, m := range msgs {
		var cfg struct {
			Cmps map[string]struct {
				DefaultEntityID  string `json:"default_entity_id"`
				EnabledByDefault *bool  `json:"enabled_by_default"`
			} `json:"cmps"`
		}
		if err := json.Unmarshal(m.Payload, &cfg); err != nil {
			t.Fatalf("discovery payload on %s: %v", m.Topic, err)
		}
		for _, c := range cfg.Cmps {
			out[c.DefaultEntityID] = c.EnabledByDefault == nil || *c.EnabledByDefault
		}
	}
	if len(out) == 0 {
		t.Fatal("discovery announced nothing")
	}
	return out
}
