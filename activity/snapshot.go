package activity

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// snapshotVersion numbers the snapshot format; Restore refuses others.
const snapshotVersion = 1

// snapshot is a Tracker's state as JSON.
type snapshot struct {
	Version int         `json:"version"`
	VIN     string      `json:"vin"`
	State   state       `json:"state"`
	Values  []snapValue `json:"values,omitempty"`
}

// snapValue is a kept signal's value as text: a scalar as the car's older
// firmware would send it (telemetry.Normalize parses it back), a location
// as "lat, lon", doors and tire positions as their bits.
type snapValue struct {
	Field string `json:"field"`
	Text  string `json:"text"`
}

// Snapshot returns the tracker's state as JSON: status, place, open
// sessions, the last summaries and the kept values. Save it (in the data
// directory) on shutdown and periodically; Restore continues from it.
func (t *Tracker) Snapshot() ([]byte, error) {
	s := snapshot{Version: snapshotVersion, VIN: t.vin, State: t.st}
	for i, f := range viewFields {
		v := t.values.v[i]
		var text string
		switch v.Kind() {
		case telemetry.KindNone, telemetry.KindInvalid:
			continue
		case telemetry.KindLocationValue:
			lat, lon := v.Location()
			text = strconv.FormatFloat(lat, 'f', -1, 64) + ", " + strconv.FormatFloat(lon, 'f', -1, 64)
		case telemetry.KindDoorsValue:
			text = strconv.Itoa(int(v.Doors()))
		case telemetry.KindTiresValue:
			text = strconv.Itoa(int(v.Tires()))
		case telemetry.KindEnumValue:
			text = v.EnumName()
		default:
			text = v.String()
		}
		s.Values = append(s.Values, snapValue{Field: f.String(), Text: text})
	}
	return json.Marshal(s)
}

// Restore replaces the tracker's state with a snapshot of the same car.
// The stream counts as closed until the car reconnects (the process that
// held it has gone); the status stays as saved until then. A place that
// is no longer configured is dropped.
func (t *Tracker) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("read tracker snapshot: %w", err)
	}
	if s.Version != snapshotVersion {
		return fmt.Errorf("tracker snapshot version %d: this fleet2mqtt reads version %d", s.Version, snapshotVersion)
	}
	if s.VIN != t.vin {
		return fmt.Errorf("tracker snapshot is of %q, not %q", s.VIN, t.vin)
	}
	var vals Values
	for _, sv := range s.Values {
		f, ok := telemetry.FieldByName(sv.Field)
		si, kept := slot(f)
		if !ok || !kept || si >= t.keep {
			continue // a signal this version (or this tracker) does not keep
		}
		vals.v[si] = restoreValue(f, sv.Text)
	}
	t.st, t.values = s.State, vals
	t.st.Connected = false
	t.place = -1
	for i := range t.cfg.Places {
		if t.cfg.Places[i].Name == t.st.Place {
			t.place = i
		}
	}
	if t.place < 0 {
		t.st.Place = ""
	}
	return nil
}

func restoreValue(f telemetry.Field, text string) telemetry.Value {
	info, _ := telemetry.Lookup(f)
	switch info.Kind {
	case telemetry.KindDoors:
		n, _ := strconv.Atoi(text)
		return telemetry.DoorsValue(telemetry.Doors(n))
	case telemetry.KindTireLocation:
		n, _ := strconv.Atoi(text)
		return telemetry.TiresValue(telemetry.Tires(n))
	}
	return telemetry.Normalize(f, telemetry.StringValue(text))
}
