package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Errors.
var (
	// ErrNoComponents is returned by ParseAnnounced for a payload that is
	// not a device discovery config with components.
	ErrNoComponents = errors.New("discovery config has no components")
)

// Message is one MQTT message to publish.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// Bridge is what discovery needs to know of the bridge whose topics it
// announces.
type Bridge struct {
	// Prefix is the bridge's topic prefix (mqtt.prefix, default "tesla"):
	// values are at <Prefix>/<VIN>/<Field>.
	Prefix string
	// Availability is the topic on which the bridge says whether it runs,
	// online or offline, which every entity follows: the bridge's
	// bridge.Config.AvailabilityTopic (<Prefix>/bridge/state). Required.
	Availability string
	// Version is fleet2mqtt's version, announced as the origin's sw
	// version. Optional.
	Version string
	// Activity announces the derived state: status, place, drive and
	// charge events, the last sessions' figures (see activity.go).
	Activity bool
	// Currency is the unit of the last charge's cost (ISO 4217, such as
	// EUR); empty announces the cost without a unit.
	Currency string
	// StreamingCost announces the estimate of the car's monthly
	// streaming bill.
	StreamingCost bool
}

// Origin of the discovery messages, shown in Home Assistant's logs.
const (
	OriginName = "fleet2mqtt"
	OriginURL  = "https://github.com/fleet2mqtt/fleet2mqtt"
)

// Topic levels under <bridge prefix>/<VIN>/ that discovery announces
// besides the signal topics. The bridge publishes them (see the package
// documentation).
const (
	// ConnectedLevel is true or false: whether the car streams right now.
	ConnectedLevel = "connected"
	// ActiveAlertsLevel is the car's active alerts as one JSON object:
	// {"count":1,"alerts":[{"name":…,"started_at":…,"audiences":[…]}]}.
	ActiveAlertsLevel = "active_alerts"
)

// Keys of the entities that are not signals. Signal keys are protocol
// names, which start with an upper-case letter, so these cannot clash.
const (
	streamingKey = "streaming"
	alertsKey    = "alerts"
)

// DeviceID returns the id of a car's device: fleet2mqtt_<VIN>, or
// fleet2mqtt_<instance>_<VIN> with an instance. It names the discovery
// topic and starts every unique_id. Characters of the VIN outside
// [A-Za-z0-9] are written as -XX (hex), so that distinct VINs always make
// distinct ids.
func DeviceID(cfg Config, vin string) string {
	b := make([]byte, 0, len(OriginName)+len(cfg.Instance)+len(vin)+2)
	b = append(b, OriginName...)
	b = append(b, '_')
	if cfg.Instance != "" {
		b = append(b, cfg.Instance...)
		b = append(b, '_')
	}
	for i := 0; i < len(vin); i++ {
		c := vin[i]
		if isUpper(c) || isLower(c) || isDigit(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '-', hexUpper[c>>4], hexUpper[c&0xf])
	}
	return string(b)
}

const hexUpper = "0123456789ABCDEF"

// Topic returns the discovery topic of a car: <prefix>/device/<id>/config.
func Topic(cfg Config, vin string) string {
	return cfg.Prefix + "/device/" + DeviceID(cfg, vin) + "/config"
}

// Owns reports whether topic is the discovery topic of some car under cfg
// (Topic for any VIN): the topics this bridge writes and no one else may.
// Other devices' configs, another installation's (another Instance) and
// the status topic are not.
func Owns(cfg Config, topic string) bool {
	rest, ok := strings.CutPrefix(topic, cfg.Prefix+"/device/"+OriginName+"_")
	if !ok {
		return false
	}
	if cfg.Instance != "" {
		if rest, ok = strings.CutPrefix(rest, cfg.Instance+"_"); !ok {
			return false
		}
	}
	id, ok := strings.CutSuffix(rest, "/config")
	if !ok || id == "" {
		return false
	}
	for i := 0; i < len(id); i++ { // what DeviceID writes for a VIN
		if c := id[i]; !isUpper(c) && !isLower(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// Messages returns the discovery message of a car: one retained
// device-based discovery config announcing the car as a device with one
// component per selected signal (see the package documentation). It
// returns nil when discovery is disabled or the VIN is empty.
func Messages(cfg Config, b Bridge, v Vehicle) []Message {
	if !cfg.Enabled || v.VIN == "" {
		return nil
	}
	return []Message{{Topic: Topic(cfg, v.VIN), Payload: render(cfg, b, v, nil), Retain: true}}
}

// RemoveMessages returns what removes the components a car no longer has:
// announced are the components announced before (component key →
// platform, from ParseAnnounced of the retained config). When some of
// them are not selected any more, it returns two retained messages: the
// current config with each of those as a bare {"p":…}, which makes Home
// Assistant delete their entities, then the current config alone. It
// returns nil when nothing is to be removed or discovery is disabled.
func RemoveMessages(cfg Config, b Bridge, v Vehicle, announced map[string]string) []Message {
	if !cfg.Enabled || v.VIN == "" || len(announced) == 0 {
		return nil
	}
	current := make(map[string]bool)
	for _, e := range selectedEntities(cfg, v) {
		current[e.key] = true
	}
	current[streamingKey] = true
	current[alertsKey] = true
	for _, k := range controlKeys(cfg, v) {
		current[k] = true
	}
	for _, e := range derivedEntities(b) {
		current[e.key] = true
	}
	var stale []staleComponent
	for key, platform := range announced {
		if !current[key] && platform != "" {
			stale = append(stale, staleComponent{key, platform})
		}
	}
	if len(stale) == 0 {
		return nil
	}
	sortStale(stale)
	topic := Topic(cfg, v.VIN)
	return []Message{
		{Topic: topic, Payload: render(cfg, b, v, stale), Retain: true},
		{Topic: topic, Payload: render(cfg, b, v, nil), Retain: true},
	}
}

// RemoveDevice returns the message that removes a car and all its
// entities from Home Assistant: an empty retained payload on its
// discovery topic, which also clears the retained config.
func RemoveDevice(cfg Config, vin string) Message {
	return Message{Topic: Topic(cfg, vin), Payload: []byte{}, Retain: true}
}

// ParseAnnounced returns the components of a retained discovery config,
// component key → platform, so that RemoveMessages can find those no
// longer selected. An empty payload announces nothing.
func ParseAnnounced(payload []byte) (map[string]string, error) {
	if len(payload) == 0 {
		return map[string]string{}, nil
	}
	type comp struct {
		P        string `json:"p"`
		Platform string `json:"platform"`
	}
	var cfg struct {
		Cmps       map[string]comp `json:"cmps"`
		Cmp        map[string]comp `json:"cmp"`
		Components map[string]comp `json:"components"`
	}
	if err := json.Unmarshal(payload, &cfg); err != nil {
		return nil, fmt.Errorf("parse discovery config: %w", err)
	}
	out := make(map[string]string, len(cfg.Components)+len(cfg.Cmp)+len(cfg.Cmps))
	known := knownNames()
	for _, m := range []map[string]comp{cfg.Components, cfg.Cmp, cfg.Cmps} {
		for k, c := range m {
			p := c.P
			if p == "" {
				p = c.Platform
			}
			out[intern(known, k)] = intern(known, p)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoComponents
	}
	return out, nil
}

// knownNames are the component keys and platforms this package announces,
// each mapped to itself. The announcer keeps the result of ParseAnnounced
// for every car; with the strings of the table instead of those JSON
// decoding made, the cars share them.
var knownNames = sync.OnceValue(func() map[string]string {
	names := map[string]string{streamingKey: streamingKey, alertsKey: alertsKey}
	for _, entities := range specs() {
		for i := range entities {
			e := &entities[i]
			names[e.key], names[e.platform] = e.key, e.platform
		}
	}
	for _, p := range []string{"binary_sensor", "sensor", "event"} {
		names[p] = p
	}
	for _, e := range append(activityEntities, streamingCostEntity) {
		names[e.key] = e.key
	}
	return names
})

// intern returns known's copy of s, or s when known lacks it.
func intern(known map[string]string, s string) string {
	if k, ok := known[s]; ok {
		return k
	}
	return s
}

// staleComponent is a component to remove.
type staleComponent struct{ key, platform string }

func sortStale(s []staleComponent) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].key < s[j-1].key; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// selectedEntities returns the entities of the signals a car announces:
// those it streams or has sent, without the excluded, only the included
// when an include list is set, and the Semi's extra tires only on a Semi.
// They are ordered by field number.
func selectedEntities(cfg Config, v Vehicle) []*entity {
	all := specs()
	want := make([]bool, len(all))
	for _, list := range [2][]telemetry.Field{v.Streaming, v.Seen} {
		for _, f := range list {
			if f >= 0 && int(f) < len(want) {
				want[f] = true
			}
		}
	}
	if len(cfg.Include) > 0 {
		keep := make([]bool, len(all))
		for _, name := range cfg.Include {
			if f, ok := telemetry.FieldByName(name); ok {
				keep[f] = true
			}
		}
		for i := range want {
			want[i] = want[i] && keep[i]
		}
	}
	for _, name := range cfg.Exclude {
		if f, ok := telemetry.FieldByName(name); ok {
			want[f] = false
		}
	}
	model, _ := ModelFromVIN(v.VIN)
	semi := model.Name == "Semi"
	n := 0
	for f, ok := range want {
		if ok {
			n += len(all[f])
		}
	}
	out := make([]*entity, 0, n)
	for f, ok := range want {
		if !ok {
			continue
		}
		for i := range all[f] {
			if e := &all[f][i]; !e.semi || semi {
				out = append(out, e)
			}
		}
	}
	return out
}

// deviceSlug starts the suggested entity ids of a car: its display name,
// else its VIN, as an entity id slug.
func deviceSlug(v Vehicle) string {
	if s := slug(v.DisplayName); s != "" {
		return s
	}
	if s := slug(v.VIN); s != "" {
		return s
	}
	return "tesla"
}

// render builds a car's device discovery config; stale components are
// added as bare {"p":…} entries that remove them.
func render(cfg Config, b Bridge, v Vehicle, stale []staleComponent) []byte {
	entities := selectedEntities(cfg, v)
	devID := DeviceID(cfg, v.VIN)
	devSlug := deviceSlug(v)
	buf := make([]byte, 0, 1024+len(entities)*400)

	buf = append(buf, `{"dev":{"ids":[`...)
	buf = telemetry.AppendJSONString(buf, devID)
	buf = append(buf, `],"name":`...)
	name := v.DisplayName
	if name == "" {
		name = v.VIN
	}
	buf = telemetry.AppendJSONString(buf, name)
	buf = append(buf, `,"mf":"Tesla"`...)
	if m, ok := ModelFromVIN(v.VIN); ok {
		buf = append(buf, `,"mdl":`...)
		buf = telemetry.AppendJSONString(buf, m.String())
	}
	if v.SoftwareVersion != "" {
		buf = append(buf, `,"sw":`...)
		buf = telemetry.AppendJSONString(buf, v.SoftwareVersion)
	}
	buf = append(buf, `,"sn":`...)
	buf = telemetry.AppendJSONString(buf, v.VIN)
	buf = append(buf, `},"o":{"name":"`+OriginName+`"`...)
	if b.Version != "" {
		buf = append(buf, `,"sw":`...)
		buf = telemetry.AppendJSONString(buf, b.Version)
	}
	buf = append(buf, `,"url":"`+OriginURL+`"},"availability":[{"topic":`...)
	buf = appendJSONJoin(buf, b.Availability)
	buf = append(buf, `,"payload_available":"online","payload_not_available":"offline"}],"qos":1,"cmps":{`...)

	// The entities that are not signals come first.
	buf = appendHead(buf, streamingKey, "binary_sensor", devID, devSlug, streamingKey)
	buf = append(buf, `,"state_topic":`...)
	buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/"+ConnectedLevel)
	buf = append(buf, `,"name":"Streaming","device_class":"connectivity","payload_on":"true","payload_off":"false","entity_category":"diagnostic"}`...)

	buf = append(buf, ',')
	buf = appendHead(buf, alertsKey, "sensor", devID, devSlug, "active_alerts")
	buf = append(buf, `,"state_topic":`...)
	buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/"+ActiveAlertsLevel)
	buf = append(buf, `,"json_attributes_topic":`...)
	buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/"+ActiveAlertsLevel)
	buf = append(buf, `,"name":"Active alerts","value_template":"{{ value_json.count }}","state_class":"measurement","icon":"mdi:alert-circle-outline"}`...)

	buf = appendDerived(buf, b, v, devID, devSlug)

	for _, e := range entities {
		buf = append(buf, ',')
		buf = appendHead(buf, e.key, e.platform, devID, devSlug, e.objectID)
		buf = append(buf, ',', '"')
		buf = append(buf, e.topicKey...)
		buf = append(buf, '"', ':')
		buf = appendJSONJoin(buf, b.Prefix, "/", v.VIN, "/", e.field.String())
		buf = append(buf, e.static...)
		if e.obscure && !cfg.EnableObscure {
			buf = append(buf, `,"enabled_by_default":false`...)
		}
		buf = append(buf, '}')
	}
	buf = appendControls(buf, cfg, b, v, devID, devSlug)
	for _, s := range stale {
		buf = append(buf, ',')
		buf = telemetry.AppendJSONString(buf, s.key)
		buf = append(buf, `:{"p":`...)
		buf = telemetry.AppendJSONString(buf, s.platform)
		buf = append(buf, '}')
	}
	return append(buf, "}}"...)
}

// appendHead appends `"<key>":{"p":"<platform>","unique_id":"<dev>_<key>",
// "default_entity_id":"<platform>.<slug>_<object>"`, the component left
// open.
func appendHead(buf []byte, key, platform, devID, devSlug, objectID string) []byte {
	buf = append(buf, '"')
	buf = append(buf, key...)
	buf = append(buf, `":{"p":"`...)
	buf = append(buf, platform...)
	buf = append(buf, `","unique_id":"`...)
	buf = append(buf, devID...)
	buf = append(buf, '_')
	buf = append(buf, key...)
	buf = append(buf, `","default_entity_id":"`...)
	buf = append(buf, platform...)
	buf = append(buf, '.')
	buf = append(buf, devSlug...)
	buf = append(buf, '_')
	buf = append(buf, objectID...)
	return append(buf, '"')
}

// appendJSONJoin appends the concatenation of parts as one JSON string.
func appendJSONJoin(dst []byte, parts ...string) []byte {
	dst = append(dst, '"')
	for _, p := range parts {
		n := len(dst)
		dst = telemetry.AppendJSONString(dst, p)
		// Drop the quotes AppendJSONString put around p.
		copy(dst[n:], dst[n+1:len(dst)-1])
		dst = dst[:len(dst)-2]
	}
	return append(dst, '"')
}
