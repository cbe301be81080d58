package announce

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// StateFile is the usual name of the state file in the data directory.
const StateFile = "homeassistant.json"

// stateVersion is the layout of the state file; a file of another
// version is ignored.
const stateVersion = 1

// errStateFormat marks a state file that cannot be read as one.
var errStateFormat = errors.New("not a discovery state file")

// state is the state file: what was announced of each car.
//
//	{"version":1,"cars":{"5YJ3…":{"name":"Ellie","version":"2025.2.6",
//	  "seen":["Soc","Gear"],"streaming":null,
//	  "topic":"homeassistant/device/fleet2mqtt_5YJ3…/config",
//	  "announced":{"Soc":"sensor","Gear":"sensor",…}}}}
type state struct {
	Version int                 `json:"version"`
	Cars    map[string]savedCar `json:"cars"`
}

// savedCar is one car of the state file. Signals are protocol names;
// streaming is null when the streaming configuration is unknown.
type savedCar struct {
	Name      string            `json:"name,omitempty"`
	Version   string            `json:"version,omitempty"`
	Seen      []string          `json:"seen"`
	Streaming []string          `json:"streaming"`
	Topic     string            `json:"topic,omitempty"`
	Announced map[string]string `json:"announced,omitempty"`
}

// save returns what the state file keeps of c. The caller holds
// Announcer.mu (for streaming).
func (c *car) save() savedCar {
	s := savedCar{Seen: fieldNames(c.seenFields()), Topic: c.topic, Announced: c.announced}
	if p := c.name.Load(); p != nil {
		s.Name = *p
	}
	if p := c.version.Load(); p != nil {
		s.Version = *p
	}
	if c.streaming != nil {
		s.Streaming = fieldNames(c.streaming)
	}
	return s
}

// car makes the car the state file describes. Signals the catalog does
// not know (any more) are left out.
func (s savedCar) car(vin string) *car {
	c := &car{vin: vin, topic: s.Topic, announced: s.Announced, removalAt: -1}
	if s.Name != "" {
		c.name.Store(&s.Name)
	}
	if s.Version != "" {
		c.version.Store(&s.Version)
	}
	for _, name := range s.Seen {
		if f, ok := telemetry.FieldByName(name); ok && f > 0 && f <= telemetry.MaxField {
			c.seen[f>>6].Or(1 << (f & 63))
		}
	}
	if s.Streaming != nil {
		c.streaming = make([]telemetry.Field, 0, len(s.Streaming))
		for _, name := range s.Streaming {
			if f, ok := telemetry.FieldByName(name); ok {
				c.streaming = append(c.streaming, f)
			}
		}
	}
	return c
}

// seenFields returns the signals c has sent, by field number.
func (c *car) seenFields() []telemetry.Field {
	var out []telemetry.Field
	for i := range c.seen {
		for w := c.seen[i].Load(); w != 0; w &= w - 1 {
			out = append(out, telemetry.Field(i*64+bits.TrailingZeros64(w)))
		}
	}
	return out
}

func fieldNames(fields []telemetry.Field) []string {
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		if info, ok := telemetry.Lookup(f); ok {
			names = append(names, info.Name)
		}
	}
	return names
}

// loadState reads the state file at path; a missing file is an empty
// state. A file that does not parse returns an error wrapping
// errStateFormat, with an empty state.
func loadState(path string) (state, error) {
	st := state{Version: stateVersion, Cars: map[string]savedCar{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read discovery state: %w", err)
	}
	var got state
	if err := json.Unmarshal(raw, &got); err != nil {
		return st, fmt.Errorf("%w: %s: %w", errStateFormat, path, err)
	}
	if got.Version != stateVersion {
		return st, fmt.Errorf("%w: %s has version %d, want %d", errStateFormat, path, got.Version, stateVersion)
	}
	for vin, c := range got.Cars {
		if vin != "" {
			st.Cars[vin] = c
		}
	}
	return st, nil
}

// saveState writes st to path atomically: into a temporary file in the
// same directory, synced, then renamed over path.
func saveState(path string, st state) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode discovery state: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write discovery state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(raw, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write discovery state: %w", err)
	}
	return nil
}

// Forget removes cars from the state file at path, so that an announcer
// started on it later does not announce them again; `fleet2mqtt discovery
// remove` calls it next to emptying their discovery topics. It reports
// which of vins the file held. A missing file holds no car.
func Forget(path string, vins ...string) (forgotten []string, err error) {
	st, err := loadState(path)
	if err != nil {
		return nil, err
	}
	for _, vin := range vins {
		if _, ok := st.Cars[vin]; ok {
			delete(st.Cars, vin)
			forgotten = append(forgotten, vin)
		}
	}
	if len(forgotten) == 0 {
		return nil, nil
	}
	return forgotten, saveState(path, st)
}

// Removal is the messages that remove the cars vins from Home Assistant:
// their discovery configs emptied, retained. `fleet2mqtt discovery
// remove` publishes them and then calls Forget.
func Removal(cfg discovery.Config, vins ...string) []pubsub.Message {
	msgs := make([]pubsub.Message, len(vins))
	for i, vin := range vins {
		m := discovery.RemoveDevice(cfg, vin)
		msgs[i] = pubsub.Message{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: true}
	}
	return msgs
}
