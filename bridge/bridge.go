package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Errors of the bridge.
var (
	// ErrInvalidVIN means a record's VIN cannot be a topic level: empty,
	// longer than 64 bytes, or holding '/', '+', '#', NUL or invalid UTF-8.
	ErrInvalidVIN = errors.New("vin cannot be used in a topic")
)

// Bridge turns records into MQTT messages and publishes them. It is safe
// for concurrent use.
type Bridge struct {
	cfg    Config
	pub    pubsub.Publisher
	log    *slog.Logger
	native bool // publish the native layout
	compat bool // publish the compatibility layout

	bridgeState string
	rep         *replicas // nil for a single instance (replicas.go)

	clock clock // measures the state interval (state.go)

	refused refusedCounts // items left out past a car's limits (limits.go)

	// derived derives each car's status, place and sessions from its
	// records (derived.go); nil when off.
	derived *Derived

	mu       sync.RWMutex
	vehicles map[string]*vehicle
	cars     map[string]*carState // alerts and connectivity by VIN (republish.go)
}

// New returns a bridge that publishes through pub. cfg must be valid (see
// Config.Validate); logger may be nil.
func New(cfg Config, pub pubsub.Publisher, logger *slog.Logger) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("bridge: no publisher")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{
		cfg:         cfg,
		pub:         pub,
		log:         logger,
		native:      !cfg.Compat.Exclusive,
		compat:      cfg.Compat.Enabled,
		bridgeState: cfg.BridgeStateTopic(),
		rep:         newReplicas(cfg),
		vehicles:    make(map[string]*vehicle),
	}, nil
}

// Online publishes "online" on the bridge state topic (retained; see
// Config.BridgeStateTopic), and for a replica on <prefix>/bridge/state
// too. Call it once the broker is reachable.
func (b *Bridge) Online(ctx context.Context) error {
	msgs := []pubsub.Message{{Topic: b.bridgeState, Payload: []byte(PayloadOnline), QoS: b.cfg.QoS, Retain: true}}
	if r := b.rep; r != nil {
		r.mu.Lock()
		r.stopping = false
		r.mu.Unlock()
		msgs = append(msgs, pubsub.Message{Topic: r.shared, Payload: []byte(PayloadOnline), QoS: b.cfg.QoS, Retain: true})
	}
	if err := b.pub.Publish(ctx, msgs); err != nil {
		return fmt.Errorf("publish bridge state %s: %w", PayloadOnline, err)
	}
	return nil
}

// Offline publishes the state objects that wait for the end of their
// interval (see Config.StateInterval), then "offline" on the bridge state
// topic (retained). A replica then publishes "offline" on
// <prefix>/bridge/state too when no other replica runs (see
// RunReplicas). Call it on a clean shutdown, before the broker connection
// closes; when the process dies instead, the external client's last will
// says offline on the bridge state topic.
func (b *Bridge) Offline(ctx context.Context) error {
	err := b.flushStates(ctx)
	if b.rep != nil {
		return errors.Join(err, b.replicaOffline(ctx))
	}
	return errors.Join(err, b.publishBridgeState(ctx, b.bridgeState, PayloadOffline))
}

// publishBridgeState publishes a bridge state, retained.
func (b *Bridge) publishBridgeState(ctx context.Context, topic, state string) error {
	msgs := []pubsub.Message{{Topic: topic, Payload: []byte(state), QoS: b.cfg.QoS, Retain: true}}
	if err := b.pub.Publish(ctx, msgs); err != nil {
		return fmt.Errorf("publish bridge state %s on %s: %w", state, topic, err)
	}
	return nil
}

// Streams reports whether vin's car streams to this bridge now: its last
// connectivity record said connected. Replicas use it to leave a car that
// moved to another replica to that one (see Config.Replica).
func (b *Bridge) Streams(vin string) bool {
	b.mu.RLock()
	v, c := b.vehicles[vin], b.cars[vin]
	b.mu.RUnlock()
	if v == nil || c == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return c.connected > 0
}

// Handle publishes the messages of one record and returns nil once the
// broker accepted all of them; only then may the record's frame be
// acknowledged to the car. A record with nothing to publish (a data record
// without data, an unknown topic) returns nil at once. Handle keeps nothing
// of rec after it returns.
func (b *Bridge) Handle(ctx context.Context, rec *telemetry.Record) error {
	v, err := b.vehicle(rec.VIN)
	if err != nil {
		return err
	}
	bt := getBatch()
	defer putBatch(bt)

	v.mu.Lock()
	defer v.mu.Unlock()
	switch rec.Topic {
	case telemetry.TopicV:
		b.data(v, bt, rec.Data)
	case telemetry.TopicAlerts:
		b.alerts(v, bt, rec.Alerts)
	case telemetry.TopicErrors:
		b.errs(v, bt, rec.Errors)
	case telemetry.TopicConnectivity:
		b.connectivity(v, bt, &rec.Connectivity)
	default:
		b.log.Debug("record topic has no MQTT layout", "vin", rec.VIN, "topic", string(rec.Topic), "txid", rec.TxID)
		return nil
	}
	if d := b.derived; d != nil {
		c, ch, err := d.observe(v, bt, rec)
		if c == nil { // no tracker for this car: the signals still go out
			d.b.log.Warn("cannot derive a car's state", "vin", rec.VIN, "err", err)
			return b.publish(ctx, v, bt, rec)
		}
		if err == nil {
			err = b.publish(ctx, v, bt, rec)
		}
		d.finish(c, ch, err)
		c.mu.Unlock()
		return err
	}
	return b.publish(ctx, v, bt, rec)
}

// publish publishes a record's batch.
func (b *Bridge) publish(ctx context.Context, v *vehicle, bt *batch, rec *telemetry.Record) error {
	if len(bt.msgs) == 0 {
		return nil
	}
	if err := b.pub.Publish(ctx, bt.seal()); err != nil {
		if rec.Topic == telemetry.TopicV {
			v.stateUnsent()
		}
		return fmt.Errorf("publish %s record: %w", rec.Topic, err)
	}
	return nil
}

// vehicle returns the state of vin, making it on first sight.
func (b *Bridge) vehicle(vin string) (*vehicle, error) {
	b.mu.RLock()
	v, ok := b.vehicles[vin]
	b.mu.RUnlock()
	if ok {
		return v, nil
	}
	if !validVIN(vin) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidVIN, vin)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.vehicles[vin]; ok {
		return v, nil
	}
	v = newVehicle(&b.cfg, vin)
	b.vehicles[v.vin] = v
	return v, nil
}

// data builds the messages of a V record: per datum its native and
// compatibility message, then the state object when it is due (see
// stateDue). A field that appears more than once is published once, with
// its last value.
func (b *Bridge) data(v *vehicle, bt *batch, data []telemetry.Datum) {
	if len(data) == 0 {
		return
	}
	v.seq++
	seq := v.seq
	firstLocation := -1
	bt.slots = bt.slots[:0]
	v.reserveSlots(len(data))
	for i := range data {
		d := &data[i]
		if d.Field == telemetry.FieldLocation && firstLocation < 0 {
			firstLocation = i
		}
		si := v.slot(d.Field)
		bt.slots = append(bt.slots, si)
		if si < 0 {
			b.refuseField(v)
			continue
		}
		s := &v.slots[si]
		if s.seq != seq {
			s.seq, s.last, s.lastValue = seq, -1, -1
		}
		s.last = int32(i)
		if d.Value.Kind() != telemetry.KindNone {
			s.lastValue = int32(i)
		}
	}

	qos, retain := b.cfg.QoS, b.cfg.Retain
	published := false
	for i := range data {
		d := &data[i]
		si := bt.slots[i]
		if si < 0 {
			continue // past maxSlots: left out (see refuseField)
		}
		s := &v.slots[si]
		if b.native && d.Value.Kind() != telemetry.KindNone && s.lastValue == int32(i) {
			if s.json == nil || !s.value.Equal(d.Value) {
				s.value = d.Value.Detach()
				s.json = appendStateValue(s.json[:0], s.value)
				v.stateChanged()
			}
			bt.begin(s.topic, qos, retain)
			if sameText(d.Value) {
				bt.buf = append(bt.buf, s.json...) // the payload is the state entry
			} else {
				bt.buf = appendNative(bt.buf, d.Value)
			}
			published = true
		}
		if b.compat && s.last == int32(i) {
			bt.begin(v.compatTopic(si), qos, b.cfg.Compat.Retain)
			bt.buf = appendCompatValue(bt.buf, d.Value, d.Field == telemetry.FieldLocation && i == firstLocation)
		}
	}
	b.logRefused(v)
	if published && b.cfg.StateTopic {
		b.stateDue(v, bt)
	}
}

// appendState appends the state object: every field with a value, ordered
// by field number (fields past the index come last, in order of arrival).
func (v *vehicle) appendState(dst []byte) []byte {
	dst = append(dst, '{')
	n := 0
	add := func(s *slot) {
		if s.json == nil {
			return
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = appendStateKey(dst, s.field)
		dst = append(dst, s.json...)
	}
	for _, i := range v.index {
		if i > 0 {
			add(&v.slots[i-1])
		}
	}
	if len(v.extra) > 0 {
		for i := range v.slots {
			if f := v.slots[i].field; f < 0 || f >= maxIndexed {
				add(&v.slots[i])
			}
		}
	}
	return append(dst, '}')
}

// alerts builds the messages of an alerts record: per alert name the
// current alert (the one started last) on the native topic, and the
// reference server's current and history topics.
func (b *Bridge) alerts(v *vehicle, bt *batch, alerts []telemetry.Alert) {
	if len(alerts) == 0 {
		return
	}
	bt.groupAlerts(alerts)
	qos, retain := b.cfg.QoS, b.cfg.Retain
	var car *carState
	if b.native {
		car = b.car(v)
	}
	for start := 0; start < len(bt.order); {
		end := start + 1
		for end < len(bt.order) && bt.group[bt.order[end]] == bt.group[bt.order[start]] {
			end++
		}
		run := bt.order[start:end] // indexes of one name, in record order
		start = end

		first := &alerts[run[0]]
		t := v.nameTopics(first.Name)
		if t == nil {
			b.refuseNames(v, len(run))
			continue
		}
		if b.native {
			// The alert started last is current; of equal starts, the later one.
			cur := run[0]
			for _, j := range run[1:] {
				if !alerts[j].StartedAt.Before(alerts[cur].StartedAt) {
					cur = j
				}
			}
			bt.begin(v.alertTopic(t), qos, retain)
			bt.buf = appendNativeAlert(bt.buf, &alerts[cur])
			car.setAlert(&alerts[cur])
		}
		if b.compat {
			current, history := v.compatAlertTopics(t)
			// The reference: only alerts with a start time can be current,
			// and a later one replaces it only when strictly later.
			cur := int32(-1)
			for _, j := range run {
				a := &alerts[j]
				if !a.StartedAt.IsZero() && (cur < 0 || a.StartedAt.After(alerts[cur].StartedAt)) {
					cur = j
				}
			}
			if cur >= 0 {
				bt.begin(current, qos, b.cfg.Compat.Retain)
				bt.buf = appendCompatAlert(bt.buf, &alerts[cur])
			}
			bt.begin(history, qos, b.cfg.Compat.Retain)
			bt.buf = append(bt.buf, '[')
			for k, j := range run {
				if k > 0 {
					bt.buf = append(bt.buf, ',')
				}
				bt.buf = appendCompatAlert(bt.buf, &alerts[j])
			}
			bt.buf = append(bt.buf, ']')
		}
	}
	if b.native {
		b.appendActiveAlerts(car, bt)
	}
	b.logRefused(v)
}

// groupAlerts fills bt.group with, for each alert, the index of the first
// alert of the same name, and bt.order with the alert indexes grouped by
// name: groups in order of their first alert, each group in record order.
func (bt *batch) groupAlerts(alerts []telemetry.Alert) {
	bt.group = bt.group[:0]
	bt.order = bt.order[:0]
	const quadraticLimit = 32
	if len(alerts) <= quadraticLimit {
		for i := range alerts {
			g := int32(i)
			for j := range i {
				if alerts[j].Name == alerts[i].Name {
					g = int32(j)
					break
				}
			}
			bt.group = append(bt.group, g)
		}
	} else {
		first := make(map[string]int32, len(alerts))
		for i := range alerts {
			g, ok := first[alerts[i].Name]
			if !ok {
				g = int32(i)
				first[alerts[i].Name] = g
			}
			bt.group = append(bt.group, g)
		}
	}
	for i := range alerts {
		bt.order = append(bt.order, int32(i))
	}
	group := bt.group
	slices.SortStableFunc(bt.order, func(a, b int32) int { return cmp.Compare(group[a], group[b]) })
}

// errs builds the messages of an errors record: one per error, in order.
func (b *Bridge) errs(v *vehicle, bt *batch, errs []telemetry.VehicleError) {
	qos, retain := b.cfg.QoS, b.cfg.Retain
	for i := range errs {
		e := &errs[i]
		t := v.nameTopics(e.Name)
		if t == nil {
			b.refuseNames(v, 1)
			continue
		}
		if b.native {
			bt.begin(v.errorTopic(t), qos, retain)
			bt.buf = appendNativeError(bt.buf, e, &bt.keys)
		}
		if b.compat {
			bt.begin(v.compatErrorTopic(t), qos, b.cfg.Compat.Retain)
			bt.buf = appendCompatError(bt.buf, e, &bt.keys)
		}
	}
	b.logRefused(v)
}

// connectivity builds the messages of a connectivity record. The native
// connected topic says whether any of the car's connections is open, so a
// connection that ends while a newer one streams leaves it true.
func (b *Bridge) connectivity(v *vehicle, bt *batch, c *telemetry.Connectivity) {
	if b.native {
		car := b.car(v)
		switch c.Status {
		case telemetry.StatusConnected:
			car.opened(c.ConnectionID)
		case telemetry.StatusDisconnected:
			car.closed(c.ConnectionID)
		}
		if c.Status == telemetry.StatusConnected || c.Status == telemetry.StatusDisconnected {
			bt.begin(v.connectedTopic, b.cfg.QoS, b.cfg.Retain)
			bt.buf = strconv.AppendBool(bt.buf, car.connected > 0)
		}
	}
	if b.compat {
		bt.begin(v.connectivityTopic, b.cfg.QoS, b.cfg.Compat.Retain)
		bt.buf = appendCompatConnectivity(bt.buf, c)
	}
}
