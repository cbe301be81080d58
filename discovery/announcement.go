package discovery

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Announcement is what a device discovery config says of a car: the
// entities it announces, those it removes, and the device's name and
// software version. Replicas of one installation read each other's
// configs with ParseAnnouncement, so that every replica announces what
// any of them has seen of a car and none removes what another announced
// (see package bridge/announce).
type Announcement struct {
	// Components are the components announced with a config, component
	// key → platform. Components whose key this version does not know (a
	// signal of a newer catalog) are left out: they are not this
	// version's to judge.
	Components map[string]string
	// Removed are the components sent bare ({"p":…} alone), which makes
	// Home Assistant delete them, component key → platform; unknown keys
	// are left out as above.
	Removed map[string]string
	// Name is the device's name; for a car without one it is the VIN.
	Name string
	// SoftwareVersion is the device's software version, "" when none.
	SoftwareVersion string
}

// ParseAnnouncement reads a device discovery config (abbreviated or long
// keys). An empty payload announces nothing.
func ParseAnnouncement(payload []byte) (Announcement, error) {
	a := Announcement{Components: map[string]string{}, Removed: map[string]string{}}
	if len(payload) == 0 {
		return a, nil
	}
	type device struct {
		Name      string `json:"name"`
		SW        string `json:"sw"`
		SWVersion string `json:"sw_version"`
	}
	var cfg struct {
		Dev        *device                               `json:"dev"`
		Device     *device                               `json:"device"`
		Cmps       map[string]map[string]json.RawMessage `json:"cmps"`
		Cmp        map[string]map[string]json.RawMessage `json:"cmp"`
		Components map[string]map[string]json.RawMessage `json:"components"`
	}
	if err := json.Unmarshal(payload, &cfg); err != nil {
		return a, fmt.Errorf("parse discovery config: %w", err)
	}
	for _, d := range []*device{cfg.Device, cfg.Dev} {
		if d == nil {
			continue
		}
		a.Name = d.Name
		a.SoftwareVersion = d.SWVersion
		if d.SW != "" {
			a.SoftwareVersion = d.SW
		}
	}
	for _, m := range []map[string]map[string]json.RawMessage{cfg.Components, cfg.Cmp, cfg.Cmps} {
		for key, comp := range m {
			if !knownKey(key) {
				continue
			}
			platform, bare := "", true
			for k, v := range comp {
				switch k {
				case "p", "platform":
					if err := json.Unmarshal(v, &platform); err != nil {
						return a, fmt.Errorf("parse discovery config: component %q: platform: %w", key, err)
					}
				default:
					bare = false
				}
			}
			if bare {
				a.Removed[key] = platform
				delete(a.Components, key)
			} else {
				a.Components[key] = platform
				delete(a.Removed, key)
			}
		}
	}
	if len(a.Components) == 0 && len(a.Removed) == 0 {
		return a, ErrNoComponents
	}
	return a, nil
}

// Fields returns the signals with at least one announced entity, by
// field number.
func (a Announcement) Fields() []telemetry.Field {
	return keyFields(a.Components, nil)
}

// RemovedFields returns the signals with an entity removed and none
// announced, by field number: signals someone no longer announces.
func (a Announcement) RemovedFields() []telemetry.Field {
	return keyFields(a.Removed, a.Components)
}

// keyFields returns the signals of the keys of in whose signal has no
// key in except, sorted and without repeats.
func keyFields(in, except map[string]string) []telemetry.Field {
	idx := keyIndex()
	var out []telemetry.Field
	for key := range in {
		f, ok := idx[key]
		if !ok || f <= 0 {
			continue
		}
		if except != nil && slices.ContainsFunc(fieldKeys(f), func(k string) bool { _, ok := except[k]; return ok }) {
			continue
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fieldKeys returns the component keys of a signal's entities.
func fieldKeys(f telemetry.Field) []string {
	all := specs()
	if f < 0 || int(f) >= len(all) {
		return nil
	}
	keys := make([]string, len(all[f]))
	for i := range all[f] {
		keys[i] = all[f][i].key
	}
	return keys
}

// knownKey reports whether key names a component this version announces:
// an entity of a catalog signal, Streaming or Active alerts.
func knownKey(key string) bool {
	_, ok := keyIndex()[key]
	return ok
}

// keyIndex maps every component key to its signal; the entities that are
// not signals map to 0, which is no field.
var keyIndex = sync.OnceValue(func() map[string]telemetry.Field {
	idx := map[string]telemetry.Field{streamingKey: 0, alertsKey: 0}
	for _, list := range specs() {
		for i := range list {
			idx[list[i].key] = list[i].field
		}
	}
	return idx
})
