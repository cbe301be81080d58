package bridge

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Limits on what one vehicle can make the bridge remember, and publish.
// The catalog has a few hundred fields and cars a few dozen alert names;
// the limits only stop a misbehaving car from growing memory, and the
// broker's retained messages, without bound. Past them the bridge leaves
// the car's new fields and names out (the fields and names it already
// knows go on as before), counts them (Stats) and logs them once a minute
// per car; the records are still acknowledged, so that the car does not
// send them again and again.
const (
	maxSlots      = 1024 // distinct fields per vehicle
	maxIndexed    = 4096 // fields numbered below this are found by index
	maxNameTopics = 256  // distinct alert and error names per vehicle
)

// vehicle is what the bridge keeps of one car: the topics of its fields,
// made once, and the latest value of each for the state object. mu is held
// while a record of the vehicle is built and published, so that the
// vehicle's records are published in the order they arrive.
type vehicle struct {
	mu sync.Mutex

	vin    string
	native string // "<prefix>/<VIN>/"
	compat string // "<base>/<VIN>/"

	stateTopic        string
	connectedTopic    string
	connectivityTopic string // compatibility layout

	index []uint16                  // slot index+1 by field number, below maxIndexed
	extra map[telemetry.Field]int32 // slot index+1 of fields numbered otherwise
	slots []slot
	// compatTopics are the compatibility topics of the slots, by slot
	// index, made when first needed: most bridges never publish them.
	compatTopics []string
	names        map[string]*nameTopics

	seq uint32 // numbers data records, to find the last datum of each field

	state stateSchedule // when the state object goes out (state.go)

	refused refusedItems // left out past the limits, not logged yet (limits.go)

	derived *derivedCar // the car's derived state (derived.go), set on its first record
	unsaved bool        // a value changed since SaveValues (values.go)
}

// slot is one field of a vehicle. A car keeps one per field it sent, so
// the slot holds only what differs from car to car: the field's key in
// the state object is shared (see stateKey), its compatibility topic
// lives in vehicle.compatTopics.
type slot struct {
	field telemetry.Field
	topic string // native topic
	// value is the latest value that carried something, KindNone until
	// one arrives. Its strings do not share memory with any record. json
	// is its entry in the state object, nil until a value arrives.
	value telemetry.Value
	json  []byte

	// Marks for the record numbered seq: the index of the field's last
	// datum, and of its last datum whose value has a member set.
	seq       uint32
	last      int32
	lastValue int32
}

// nameTopics are the topics of one alert or error name, made when first
// needed.
type nameTopics struct {
	level         string // the name as a topic level
	alert, err    string
	compatCurrent string
	compatHistory string
	compatErr     string
}

func newVehicle(cfg *Config, vin string) *vehicle {
	v := &vehicle{
		vin:    vin,
		native: cfg.Prefix + "/" + vin + "/",
		compat: cfg.Compat.Base + "/" + vin + "/",
	}
	v.stateTopic = v.native + "state"
	v.connectedTopic = v.native + "connected"
	v.connectivityTopic = v.compat + "connectivity"
	return v
}

// slot returns the index of f's slot, making the slot on first sight, or
// -1 past maxSlots.
func (v *vehicle) slot(f telemetry.Field) int32 {
	if f >= 0 && f < maxIndexed {
		if int(f) < len(v.index) {
			if i := v.index[f]; i > 0 {
				return int32(i) - 1
			}
		}
	} else if i, ok := v.extra[f]; ok {
		return i - 1
	}
	if len(v.slots) >= maxSlots {
		return -1
	}
	i := int32(len(v.slots))
	v.slots = append(v.slots, slot{field: f, topic: v.native + fieldName(f)})
	if f >= 0 && f < maxIndexed {
		if int(f) >= len(v.index) {
			// The catalog's fields fit in the first growth; later
			// ones are rare.
			n := max(int(f)+1, len(v.index)*2, int(telemetry.MaxField)+1)
			v.index = append(v.index, make([]uint16, min(n, maxIndexed)-len(v.index))...)
		}
		v.index[f] = uint16(i + 1)
	} else {
		if v.extra == nil {
			v.extra = make(map[telemetry.Field]int32)
		}
		v.extra[f] = i + 1
	}
	return i
}

// reserveSlots makes room for n more slots at once, so that a car's first
// record, which brings most of the fields it will ever send, sizes the
// slots to fit instead of doubling them on the way.
func (v *vehicle) reserveSlots(n int) {
	if v.slots == nil {
		v.slots = make([]slot, 0, min(n, maxSlots))
	}
}

// fieldName is a field's name in topics and in the state object.
func fieldName(f telemetry.Field) string { return f.String() }

// stateKeys are the state object's keys (`"Name":`) of the catalog's
// fields, by field number, shared by every vehicle.
var stateKeys = sync.OnceValue(func() []string {
	keys := make([]string, telemetry.MaxField+1)
	for f := range keys {
		keys[f] = string(telemetry.AppendJSONString(nil, fieldName(telemetry.Field(f)))) + ":"
	}
	return keys
})

// appendStateKey appends f's key in the state object: its name as a JSON
// string and a colon.
func appendStateKey(dst []byte, f telemetry.Field) []byte {
	if f >= 0 && f <= telemetry.MaxField {
		return append(dst, stateKeys()[f]...)
	}
	return append(telemetry.AppendJSONString(dst, fieldName(f)), ':')
}

// compatFieldName is a field's name in the reference server's topics: the
// protocol enum's name, or its number when unknown.
func compatFieldName(f telemetry.Field) string {
	if info, ok := telemetry.Lookup(f); ok {
		return info.Name
	}
	return strconv.Itoa(int(f))
}

// compatTopic returns the compatibility topic of slot i.
func (v *vehicle) compatTopic(i int32) string {
	if int(i) >= len(v.compatTopics) {
		v.compatTopics = append(v.compatTopics, make([]string, len(v.slots)-len(v.compatTopics))...)
	}
	if v.compatTopics[i] == "" {
		v.compatTopics[i] = v.compat + "v/" + compatFieldName(v.slots[i].field)
	}
	return v.compatTopics[i]
}

// nameTopics returns the topics of an alert or error name, or nil for a
// new name once the vehicle has maxNameTopics of them.
func (v *vehicle) nameTopics(name string) *nameTopics {
	if t, ok := v.names[name]; ok {
		return t
	}
	if len(v.names) >= maxNameTopics {
		return nil
	}
	if v.names == nil {
		v.names = make(map[string]*nameTopics)
	}
	t := &nameTopics{level: topicLevel(name)}
	// The key must not share memory with the record.
	v.names[strings.Clone(name)] = t
	return t
}

func (v *vehicle) alertTopic(t *nameTopics) string {
	if t.alert == "" {
		t.alert = v.native + "alerts/" + t.level
	}
	return t.alert
}

func (v *vehicle) errorTopic(t *nameTopics) string {
	if t.err == "" {
		t.err = v.native + "errors/" + t.level
	}
	return t.err
}

func (v *vehicle) compatAlertTopics(t *nameTopics) (current, history string) {
	if t.compatCurrent == "" {
		t.compatCurrent = v.compat + "alerts/" + t.level + "/current"
		t.compatHistory = v.compat + "alerts/" + t.level + "/history"
	}
	return t.compatCurrent, t.compatHistory
}

func (v *vehicle) compatErrorTopic(t *nameTopics) string {
	if t.compatErr == "" {
		t.compatErr = v.compat + "errors/" + t.level
	}
	return t.compatErr
}

// topicLevel makes name usable as one topic level: MQTT forbids the level
// separator and the wildcards in a topic name, and NUL anywhere; topics
// must be valid UTF-8. Such characters become '_'; an empty name becomes
// "_". The result never shares memory with name.
func topicLevel(name string) string {
	if name == "" {
		return "_"
	}
	if strings.ContainsAny(name, "/+#\x00") || !utf8.ValidString(name) {
		name = strings.ToValidUTF8(name, "_")
		return strings.Map(func(r rune) rune {
			switch r {
			case '/', '+', '#', 0:
				return '_'
			}
			return r
		}, name)
	}
	return strings.Clone(name)
}

// validVIN reports whether vin can be a topic level.
func validVIN(vin string) bool {
	return vin != "" && len(vin) <= 64 && !strings.ContainsAny(vin, "/+#\x00") && utf8.ValidString(vin)
}
