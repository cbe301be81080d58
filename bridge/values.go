package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// The state object after a restart: SaveValues keeps every car's latest
// values in a file of the data directory, RestoreValues reads them back
// before the first record, so that the first state object after a restart
// holds every signal, not only those sent since. The file is one JSON
// object, {"<VIN>":{"<Field>":<value as in the state object>,…},…}.

// SaveValues writes every car's latest values to path (atomically, mode
// 0600) when any changed since the last save.
func (b *Bridge) SaveValues(path string) error {
	b.mu.RLock()
	vehicles := make([]*vehicle, 0, len(b.vehicles))
	for _, v := range b.vehicles {
		vehicles = append(vehicles, v)
	}
	b.mu.RUnlock()
	changed := false
	for _, v := range vehicles {
		v.mu.Lock()
		changed = changed || v.unsaved
		v.mu.Unlock()
	}
	if !changed {
		return nil
	}
	slices.SortFunc(vehicles, func(a, c *vehicle) int {
		switch {
		case a.vin < c.vin:
			return -1
		case a.vin > c.vin:
			return 1
		}
		return 0
	})
	buf := []byte{'{'}
	for i, v := range vehicles {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = telemetry.AppendJSONString(buf, v.vin)
		buf = append(buf, ':')
		v.mu.Lock()
		buf = v.appendState(buf)
		v.unsaved = false
		v.mu.Unlock()
	}
	buf = append(buf, '}')
	if err := atomicfile.Write(path, buf, 0o600); err != nil {
		// Marked unsaved again: the next save tries again.
		for _, v := range vehicles {
			v.mu.Lock()
			v.unsaved = true
			v.mu.Unlock()
		}
		return fmt.Errorf("save the cars' values: %w", err)
	}
	return nil
}

// RestoreValues reads the values SaveValues wrote to path; a missing file
// restores nothing. Call it before the first record.
func (b *Bridge) RestoreValues(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore the cars' values: %w", err)
	}
	var cars map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cars); err != nil {
		return fmt.Errorf("restore the cars' values from %s: %w (delete it to start afresh)", path, err)
	}
	for vin, values := range cars {
		v, err := b.vehicle(vin)
		if err != nil {
			continue // not a VIN this version accepts
		}
		v.mu.Lock()
		names := make([]string, 0, len(values))
		for name := range values {
			names = append(names, name)
		}
		slices.Sort(names)
		v.reserveSlots(len(names))
		for _, name := range names {
			f, ok := telemetry.FieldByName(name)
			if !ok {
				continue // a field this version does not know by name
			}
			if si := v.slot(f); si >= 0 && v.slots[si].json == nil {
				// The value itself stays unknown: the field's next datum
				// is formatted anew, whatever it holds.
				v.slots[si].json = []byte(values[name])
			}
		}
		v.mu.Unlock()
	}
	return nil
}
