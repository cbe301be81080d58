package bridge

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// carState is what the bridge keeps of a car beyond its signals, for the
// active alerts topic and for Republish. It is read and written with the
// vehicle's mu held; records of the other topics (alerts, connectivity)
// are rare, so it lives apart from the signal slots.
type carState struct {
	activeTopic string // <prefix>/<VIN>/active_alerts
	// active are the active alerts by name: the current alert of each
	// name (the one started last, as on the alert's own topic) while it
	// has no end time. At most maxNameTopics names.
	active map[string]activeAlert
	// alertsKnown is set once the active alerts were published: before,
	// the bridge does not know them (a restart forgets them) and leaves
	// the retained topic alone.
	alertsKnown bool
	// connected is whether the car streams: 0 unknown, 1 yes (at least
	// one connection open), -1 no.
	connected int8
	// open are the IDs of the car's open connections, oldest first. A car
	// that changes networks opens its next connection before the old one
	// ends (that one may only end at the idle timeout), so the car is
	// connected until the last of them closes. At most maxOpenConns: past
	// that the oldest, most likely dead, is forgotten.
	open []string
}

// maxOpenConns bounds the connections remembered per car.
const maxOpenConns = 16

// opened notes that connection id of the car opened.
func (c *carState) opened(id string) {
	if !slices.Contains(c.open, id) {
		if len(c.open) >= maxOpenConns {
			c.open = slices.Delete(c.open, 0, 1)
		}
		c.open = append(c.open, strings.Clone(id))
	}
	c.connected = 1
}

// closed notes that connection id of the car closed: the car stays
// connected while another of its connections is open.
func (c *carState) closed(id string) {
	if i := slices.Index(c.open, id); i >= 0 {
		c.open = slices.Delete(c.open, i, i+1)
	}
	if len(c.open) == 0 {
		c.connected = -1
	}
}

// activeAlert is one active alert, kept without memory of the record.
type activeAlert struct {
	name      string
	startedAt time.Time
	audiences []telemetry.Audience
}

// car returns the state of v, making it on first need.
func (b *Bridge) car(v *vehicle) *carState {
	b.mu.RLock()
	c := b.cars[v.vin]
	b.mu.RUnlock()
	if c != nil {
		return c
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c = b.cars[v.vin]; c == nil {
		if b.cars == nil {
			b.cars = make(map[string]*carState)
		}
		c = &carState{activeTopic: v.native + "active_alerts"}
		b.cars[v.vin] = c
	}
	return c
}

// setAlert records a's state as the current alert of its name.
func (c *carState) setAlert(a *telemetry.Alert) {
	if !a.Active() {
		delete(c.active, a.Name)
		return
	}
	if c.active == nil {
		c.active = make(map[string]activeAlert)
	}
	if old, ok := c.active[a.Name]; ok {
		old.startedAt = a.StartedAt
		old.audiences = append(old.audiences[:0], a.Audiences...)
		c.active[old.name] = old
		return
	}
	if len(c.active) >= maxNameTopics {
		return // a misbehaving car: the list stops growing
	}
	name := strings.Clone(a.Name)
	c.active[name] = activeAlert{name: name, startedAt: a.StartedAt, audiences: slices.Clone(a.Audiences)}
}

// appendActiveAlerts adds the active alerts message to bt:
// {"count":N,"alerts":[{"name":…,"started_at":…,"audiences":[…]},…]},
// ordered by start time, then name.
func (b *Bridge) appendActiveAlerts(c *carState, bt *batch) {
	list := make([]activeAlert, 0, len(c.active))
	for _, a := range c.active {
		list = append(list, a)
	}
	slices.SortFunc(list, func(x, y activeAlert) int {
		if n := x.startedAt.Compare(y.startedAt); n != 0 {
			return n
		}
		return cmp.Compare(x.name, y.name)
	})
	bt.begin(c.activeTopic, b.cfg.QoS, b.cfg.Retain)
	bt.buf = append(bt.buf, `{"count":`...)
	bt.buf = strconv.AppendInt(bt.buf, int64(len(list)), 10)
	bt.buf = append(bt.buf, `,"alerts":[`...)
	for i, a := range list {
		if i > 0 {
			bt.buf = append(bt.buf, ',')
		}
		bt.buf = append(bt.buf, `{"name":`...)
		bt.buf = telemetry.AppendJSONString(bt.buf, a.name)
		bt.buf = append(bt.buf, `,"started_at":`...)
		bt.buf = telemetry.AppendJSONTime(bt.buf, a.startedAt)
		bt.buf = append(bt.buf, `,"audiences":[`...)
		for j, au := range a.audiences {
			if j > 0 {
				bt.buf = append(bt.buf, ',')
			}
			bt.buf = telemetry.AppendJSONString(bt.buf, au.String())
		}
		bt.buf = append(bt.buf, "]}"...)
	}
	bt.buf = append(bt.buf, "]}"...)
	c.alertsKnown = true
}

// PublishActiveAlerts publishes <prefix>/<VIN>/active_alerts (retained, see
// the package documentation) with the car's active alerts as far as the
// bridge knows them: {"count":0,"alerts":[]} before the car sent any. The
// announcer calls it when it first sees a car, so that Home Assistant's
// alerts entity has a value. It does nothing when the native layout is off.
func (b *Bridge) PublishActiveAlerts(ctx context.Context, vin string) error {
	if !b.native {
		return nil
	}
	v, err := b.vehicle(vin)
	if err != nil {
		return err
	}
	c := b.car(v)
	bt := getBatch()
	defer putBatch(bt)
	v.mu.Lock()
	defer v.mu.Unlock()
	b.appendActiveAlerts(c, bt)
	if err := b.pub.Publish(ctx, bt.seal()); err != nil {
		return fmt.Errorf("publish active alerts: %w", err)
	}
	return nil
}

// Republish publishes again what the bridge last published of vin in the
// native layout, with the current values: every signal topic that has a
// value, the state object, connected and active_alerts (each when known
// since the bridge started). Home Assistant's birth message calls for it:
// retained messages reach Home Assistant anyway, but not with retain
// turned off. It publishes nothing for a car the bridge has not seen, or
// when the native layout is off. Records of the car wait meanwhile, so
// that an older value never follows a newer one.
func (b *Bridge) Republish(ctx context.Context, vin string) error {
	b.mu.RLock()
	v, c := b.vehicles[vin], b.cars[vin]
	b.mu.RUnlock()
	if v == nil || !b.native {
		return nil
	}
	bt := getBatch()
	defer putBatch(bt)
	v.mu.Lock()
	defer v.mu.Unlock()

	qos, retain := b.cfg.QoS, b.cfg.Retain
	signals := false
	for i := range v.slots {
		s := &v.slots[i]
		if s.json == nil {
			continue // never published a value
		}
		bt.begin(s.topic, qos, retain)
		bt.buf = appendNative(bt.buf, s.value)
		signals = true
	}
	if signals && b.cfg.StateTopic {
		bt.begin(v.stateTopic, qos, retain)
		bt.buf = v.appendState(bt.buf)
	}
	if c != nil {
		if c.connected != 0 {
			bt.begin(v.connectedTopic, qos, retain)
			if c.connected > 0 {
				bt.buf = append(bt.buf, "true"...)
			} else {
				bt.buf = append(bt.buf, "false"...)
			}
		}
		if c.alertsKnown {
			b.appendActiveAlerts(c, bt)
		}
	}
	if len(bt.msgs) == 0 {
		return nil
	}
	if err := b.pub.Publish(ctx, bt.seal()); err != nil {
		return fmt.Errorf("republish %s: %w", vin, err)
	}
	return nil
}
