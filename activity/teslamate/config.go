package teslamate

import (
	"fmt"
	"sort"
	"strings"
)

// Config is the TeslaMate layout's section of the configuration
// (mqtt.teslamate). Errors name keys relative to it ("car_ids").
type Config struct {
	// Enabled publishes the layout. Default false.
	Enabled bool `yaml:"enabled"`
	// Namespace puts the topics under teslamate/<namespace>/cars/…, as
	// TeslaMate's MQTT_NAMESPACE does. Default none.
	Namespace string `yaml:"namespace"`
	// CarIDs numbers the cars as TeslaMate would (from 1), by VIN. A car
	// without a number gets the next one after the highest given, in the
	// order cars first stream.
	CarIDs map[string]int `yaml:"car_ids"`
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if strings.ContainsAny(c.Namespace, "/+#\x00") {
		return fmt.Errorf("namespace: %q must be one topic level without '/', '+' or '#'", c.Namespace)
	}
	vins := make([]string, 0, len(c.CarIDs))
	for vin := range c.CarIDs {
		vins = append(vins, vin)
	}
	sort.Strings(vins)
	seen := make(map[int]string, len(vins))
	for _, vin := range vins {
		id := c.CarIDs[vin]
		if id < 1 {
			return fmt.Errorf("car_ids.%s: %d is not a car id: TeslaMate numbers cars from 1", vin, id)
		}
		if other, dup := seen[id]; dup {
			return fmt.Errorf("car_ids.%s: %d is also the id of %s: give each car its own number", vin, id, other)
		}
		seen[id] = vin
	}
	return nil
}

// IDs hands out car ids: those configured, then the next free ones in the
// order cars are first seen. Not safe for concurrent use.
type IDs struct {
	given map[string]int
	next  int
}

// NewIDs returns the ids of cfg.
func NewIDs(cfg Config) *IDs {
	ids := &IDs{given: make(map[string]int, len(cfg.CarIDs)), next: 1}
	for vin, id := range cfg.CarIDs {
		ids.given[vin] = id
		ids.next = max(ids.next, id+1)
	}
	return ids
}

// Of returns the id of vin, giving it the next free one on first sight.
func (ids *IDs) Of(vin string) int {
	if id, ok := ids.given[vin]; ok {
		return id
	}
	id := ids.next
	ids.next++
	ids.given[vin] = id
	return id
}
