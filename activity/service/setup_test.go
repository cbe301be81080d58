package service

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
)

// TestMergePlaces: the owner's places follow the configuration's; one
// whose name the configuration file took since is left out, with a
// warning, and the rest stay.
func TestMergePlaces(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	config := []activity.Place{{Name: "Home", Latitude: 52.52, Longitude: 13.405}}
	owner := []activity.Place{{Name: "Home", Latitude: 48.1, Longitude: 11.6}, {Name: "Gym", Latitude: 52.53, Longitude: 13.47, Radius: 80}}
	got := mergePlaces(config, owner, log)
	if len(got) != 2 || got[0].Name != "Home" || got[0].Latitude != 52.52 || got[1].Name != "Gym" || got[1].Radius != 80 {
		t.Fatalf("merged %+v", got)
	}
	if !strings.Contains(logs.String(), "place=Home") || !strings.Contains(logs.String(), "left out") {
		t.Errorf("no warning about the place left out: %s", logs.String())
	}
	if len(config) != 1 {
		t.Errorf("the configuration's places changed: %+v", config)
	}
}
