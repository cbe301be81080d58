package announce

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Errors.
var (
	// ErrDisabled is returned by New for a configuration with discovery
	// turned off: there is nothing to announce.
	ErrDisabled = errors.New("home assistant discovery is disabled")
)

// Defaults of the options.
const (
	// DefaultDebounce is how long a car's news must be quiet before its
	// config is published.
	DefaultDebounce = 2 * time.Second
	// maxWaitFactor bounds the debounce: a car that keeps sending news is
	// announced at the latest this many debounces after its first news.
	maxWaitFactor = 10
	// retryDelay is how long a car waits after a failed publish.
	retryDelay = 10 * time.Second
)

// States is the part of the bridge the announcer drives: bridge.Bridge
// implements it.
type States interface {
	// Republish publishes the car's current values again.
	Republish(ctx context.Context, vin string) error
	// PublishActiveAlerts publishes the car's active alerts topic.
	PublishActiveAlerts(ctx context.Context, vin string) error
}

// Handler handles vehicle records; ingest.Sink and bridge.Bridge satisfy
// it.
type Handler interface {
	Handle(ctx context.Context, rec *telemetry.Record) error
}

// Option changes how an Announcer works.
type Option func(*Announcer)

// WithStateFile keeps what was announced in path (a JSON file, see the
// package documentation). Without it nothing is kept across restarts.
func WithStateFile(path string) Option { return func(a *Announcer) { a.statePath = path } }

// Announcer publishes Home Assistant discovery for the cars the bridge
// serves. Create it with New, run it with Run, feed it records through Tee
// or Observe. Its methods are safe for concurrent use.
type Announcer struct {
	cfg        discovery.Config
	br         discovery.Bridge
	pub        pubsub.Publisher
	sub        pubsub.Subscriber
	states     States
	log        *slog.Logger
	statePath  string
	debounce   time.Duration
	birthDelay func() time.Duration

	mu   sync.RWMutex
	cars map[string]*car

	wake chan struct{} // something is new; capacity 1

	pendMu  sync.Mutex
	pending []*car        // cars with news since Run last looked (see schedule.go)
	birth   chan struct{} // Home Assistant said online; capacity 1

	evMu   sync.Mutex
	events []topicEvent // retained configs seen on the cars' discovery topics

	seed maphash.Seed
}

// topicEvent is a message on a car's discovery topic.
type topicEvent struct {
	car     *car
	payload []byte
}

// words is the length of a car's bitset of signals.
const words = int(telemetry.MaxField)/64 + 1

// car is what the announcer knows of one car. The bitset, name and
// version are written by Observe; the rest belongs to Run's goroutine,
// but streaming and dropped, which SetStreaming writes under
// Announcer.mu.
type car struct {
	vin     string
	seen    [words]atomic.Uint64
	name    atomic.Pointer[string]
	version atomic.Pointer[string]
	dirty   atomic.Bool // news not yet taken by Run

	// Guarded by Announcer.mu.
	streaming []telemetry.Field // nil: unknown
	// dropped are the signals SetStreaming forgot whose removal Home
	// Assistant has not been sent yet (see merge), and dropEpoch counts
	// the calls of SetStreaming that dropped signals.
	dropped   [words]uint64
	dropEpoch int

	// Run's goroutine only.
	fresh     bool              // not announced since it was first seen
	announced map[string]string // components that may be in Home Assistant, key → platform
	// unconfirmed are the components removed before Home Assistant first
	// said online to this run, key → platform. A Home Assistant that was
	// not connected then (the embedded broker starts with fleet2mqtt, and
	// start-up removes what the configuration no longer wants) only gets
	// the retained config that followed the removal, which does not name
	// them, and keeps their entities: the answer to its birth removes
	// them again.
	unconfirmed map[string]string
	topic       string // where the last config went
	hash        uint64 // of the last config
	sent        [sentHashes]sentPayload
	nsent       int       // payloads published so far; sent is a ring of the last ones
	removalAt   int       // the first payload that removes dropped, -1 when none is on its way
	removalOf   int       // the dropEpoch that payload removes
	first, last time.Time // unannounced news, zero when none
	retryAt     time.Time // after a failed publish
	dueAt       time.Time // when queued: when it is due
	queued      int       // index in runner.queue plus one; zero when not queued
	unsubscribe context.CancelFunc
}

// sentHashes is how many of its own payloads a car remembers, so that
// their echoes on its discovery topic are not taken for another
// replica's config. A few configs at most are on their way at once.
const sentHashes = 8

// sentPayload is a payload published for a car: its hash and its number
// among the car's payloads.
type sentPayload struct {
	hash uint64
	n    int
}

// remember notes a payload published for c and returns its number.
func (c *car) remember(h uint64) int {
	n := c.nsent
	c.sent[n%sentHashes] = sentPayload{h, n + 1} // n+1: the zero value is no payload
	c.nsent++
	return n
}

// own reports whether a payload with hash h is one this process
// published for c lately, and the number of the last such.
func (c *car) own(h uint64) (n int, ok bool) {
	n = -1
	for _, p := range c.sent {
		if p.n > 0 && p.hash == h && p.n-1 > n {
			n = p.n - 1
		}
	}
	return n, n >= 0
}

// New returns an announcer for cfg (which must be valid and enabled)
// that announces the topics of the bridge b, publishes through pub,
// listens through sub, drives states and logs to log (nil discards).
// With a state file, New reads it; a file that does not parse is logged
// and ignored.
func New(cfg discovery.Config, b discovery.Bridge, pub pubsub.Publisher, sub pubsub.Subscriber, states States, log *slog.Logger, opts ...Option) (*Announcer, error) {
	if !cfg.Enabled {
		return nil, ErrDisabled
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil || sub == nil || states == nil {
		return nil, errors.New("announce: publisher, subscriber and states are required")
	}
	if b.Availability == "" {
		return nil, errors.New("announce: the bridge's availability topic (discovery.Bridge.Availability) is required")
	}
	a := &Announcer{
		cfg: cfg, br: b, pub: pub, sub: sub, states: states,
		log:        log,
		debounce:   DefaultDebounce,
		birthDelay: func() time.Duration { return discovery.RepublishDelay(nil) },
		cars:       make(map[string]*car),
		wake:       make(chan struct{}, 1),
		birth:      make(chan struct{}, 1),
		seed:       maphash.MakeSeed(),
	}
	for _, o := range opts {
		o(a)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.statePath != "" {
		st, err := loadState(a.statePath)
		if err != nil {
			if !errors.Is(err, errStateFormat) {
				return nil, err
			}
			a.log.Warn("ignoring the discovery state file", "path", a.statePath, "err", err)
		}
		for vin, s := range st.Cars {
			a.cars[vin] = s.car(vin)
		}
	}
	return a, nil
}

// Tee returns a Handler that hands every record to next and, once next
// has handled it, to Observe. It returns next's error.
func (a *Announcer) Tee(next Handler) Handler { return tee{next, a} }

type tee struct {
	next Handler
	a    *Announcer
}

func (t tee) Handle(ctx context.Context, rec *telemetry.Record) error {
	if err := t.next.Handle(ctx, rec); err != nil {
		return err
	}
	t.a.Observe(rec)
	return nil
}

// Observe learns from a record: that its car exists, the signals it
// sends, its name and version. It never blocks; for a known car and known
// signals it does not allocate. It keeps nothing of rec.
func (a *Announcer) Observe(rec *telemetry.Record) {
	if rec.VIN == "" {
		return
	}
	c, created := a.car(rec.VIN)
	news := created
	if rec.Topic == telemetry.TopicV {
		for i := range rec.Data {
			d := &rec.Data[i]
			switch d.Field {
			case telemetry.FieldVehicleName:
				news = setText(&c.name, d.Value) || news
			case telemetry.FieldVersion:
				news = setText(&c.version, d.Value) || news
			}
			if f := d.Field; f > 0 && f <= telemetry.MaxField {
				w, bit := &c.seen[f>>6], uint64(1)<<(f&63)
				if w.Load()&bit == 0 {
					w.Or(bit)
					news = true
				}
			}
		}
	}
	if news {
		a.touch(c)
	}
}

// setText stores a string value in p when it differs, and reports whether
// it did. Values without text (invalid, empty) leave p alone.
func setText(p *atomic.Pointer[string], v telemetry.Value) bool {
	if v.Kind() != telemetry.KindStringValue || v.Str() == "" {
		return false
	}
	if old := p.Load(); old != nil && *old == v.Str() {
		return false
	}
	s := strings.Clone(v.Str())
	p.Store(&s)
	return true
}

// touch marks c as having news and wakes Run.
func (a *Announcer) touch(c *car) {
	if !c.dirty.Swap(true) {
		a.enqueue(c)
		signal(a.wake)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// car returns the car of vin, making it on first sight.
func (a *Announcer) car(vin string) (c *car, created bool) {
	a.mu.RLock()
	c = a.cars[vin]
	a.mu.RUnlock()
	if c != nil {
		return c, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c = a.cars[vin]; c != nil {
		return c, false
	}
	c = &car{vin: strings.Clone(vin), fresh: true, removalAt: -1}
	a.cars[c.vin] = c
	return c, true
}

// SetStreaming tells the announcer a car's streaming configuration, as
// pushed to the car (from the setup page); nil means unknown. The car
// announces these signals, and those it sends. Signals seen before that
// are not in fields are forgotten, so that their entities are removed; if
// the car still sends one, it comes back.
func (a *Announcer) SetStreaming(vin string, fields []telemetry.Field) {
	if vin == "" {
		return
	}
	c, _ := a.car(vin)
	a.mu.Lock()
	if fields == nil {
		c.streaming = nil
	} else {
		c.streaming = slices.Clone(fields)
		var keep [words]uint64
		for _, f := range fields {
			if f > 0 && f <= telemetry.MaxField {
				keep[f>>6] |= 1 << (f & 63)
			}
		}
		drop := false
		for i := range c.seen {
			if gone := c.seen[i].And(keep[i]) &^ keep[i]; gone != 0 {
				c.dropped[i] |= gone
				drop = true
			}
		}
		if drop {
			c.dropEpoch++
		}
	}
	a.mu.Unlock()
	a.touch(c)
}

// SetDisplayName tells the announcer the name the owner gave a car (the
// Fleet API's display_name), for a car that has not sent its VehicleName
// signal. The signal, when it comes, wins.
func (a *Announcer) SetDisplayName(vin, name string) {
	if vin == "" || name == "" {
		return
	}
	c, _ := a.car(vin)
	if setText(&c.name, telemetry.StringValue(name)) {
		a.touch(c)
	}
}

// Run announces until ctx ends, then saves the state file. It returns an
// error only when it cannot subscribe to Home Assistant's status topic;
// failed publishes are logged and tried again later.
func (a *Announcer) Run(ctx context.Context) error {
	status := a.cfg.StatusTopicOrDefault()
	err := a.sub.Subscribe(ctx, status, func(_ string, payload []byte) {
		if discovery.OnStatus(payload) {
			signal(a.birth)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", status, err)
	}
	r := a.newRunner()
	defer r.timer.Stop()
	defer func() {
		for _, c := range r.known {
			c.unsubscribe()
		}
		r.changed = true // signals seen since the last announcement
		if err := r.saveIfChanged(); err != nil {
			a.log.Warn("save discovery state", "err", err)
		}
	}()

	// The cars of the state file are announced again after one debounce,
	// which leaves the time to read the retained config of each first:
	// another replica may have announced more since this one stopped.
	now := time.Now()
	a.mu.RLock()
	for _, c := range a.cars {
		if !c.fresh {
			c.first, c.last = now, now
		}
		a.enqueue(c)
	}
	a.mu.RUnlock()
	var birthAt time.Time
	for {
		now = time.Now()
		next := r.step(ctx, now)
		if !birthAt.IsZero() && !now.Before(birthAt) {
			birthAt = time.Time{}
			r.republishAll(ctx)
			if err := r.saveIfChanged(); err != nil {
				a.log.Warn("save discovery state", "err", err)
			}
			next = r.nextDue()
		}
		if !birthAt.IsZero() && (next.IsZero() || birthAt.Before(next)) {
			next = birthAt
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			r.timer.Reset(max(next.Sub(time.Now()), 0))
			tick = r.timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		case <-tick:
		case <-a.birth:
			birthAt = time.Now().Add(a.birthDelay())
			a.log.Debug("home assistant started; announcing again", "after", time.Until(birthAt).Round(time.Millisecond))
		}
		r.timer.Stop()
	}
}

func (a *Announcer) maxWait() time.Duration { return maxWaitFactor * a.debounce }

// runner is the state of Run's goroutine.
type runner struct {
	*Announcer
	timer   *time.Timer
	known   map[string]*car // cars with a subscription to their discovery topic
	queue   dueQueue        // known cars with news, by when they are due
	spare   []*car          // the other buffer of pending
	due1    []*car          // announceDue's buffer
	changed bool            // the state file is out of date
	// heard: Home Assistant has said online since this run started, so
	// it is listening; until then a removal may go unseen (unconfirmed).
	heard bool
}

func (a *Announcer) newRunner() *runner {
	return &runner{Announcer: a, timer: time.NewTimer(time.Hour), known: make(map[string]*car)}
}

// step takes the news, publishes what is due at now and saves the state
// file; it returns when the next car is due (zero when none is).
func (r *runner) step(ctx context.Context, now time.Time) time.Time {
	r.collect(ctx, now)
	r.announceDue(ctx, now)
	if err := r.saveIfChanged(); err != nil {
		r.log.Warn("save discovery state", "err", err)
	}
	return r.nextDue()
}

// collect takes the news of the cars that have some and the messages on
// their discovery topics.
func (r *runner) collect(ctx context.Context, now time.Time) {
	for _, c := range r.takePending() {
		r.mu.RLock()
		current := r.cars[c.vin] == c
		r.mu.RUnlock()
		if !current {
			continue // forgotten meanwhile
		}
		if _, ok := r.known[c.vin]; !ok {
			r.watch(ctx, c)
		}
		if c.dirty.Swap(false) {
			if c.first.IsZero() {
				c.first = now
			}
			c.last = now
		}
		r.schedule(c)
	}

	r.evMu.Lock()
	events := r.events
	r.events = nil
	r.evMu.Unlock()
	for _, ev := range events {
		if r.known[ev.car.vin] != ev.car {
			continue // forgotten meanwhile
		}
		if len(ev.payload) == 0 {
			r.forget(ev.car)
			continue
		}
		r.merge(ev.car, ev.payload, now)
	}
}

// merge learns from a config on c's discovery topic that this process
// did not publish: one another replica published, or an earlier run
// (without a state file, it is all that is known of that run). Its
// signals become signals c has seen and its components components that
// may need removing, so that c's next config announces everything the
// other announced and removes nothing it announced; components it sent
// bare were removed by the other, and their signals are forgotten here
// too (a car that still sends one brings it back). A name or software
// version that differs from c's is taken over without announcing again,
// so that two replicas that learnt different ones converge instead of
// taking turns. When c's config would announce an entity that this one
// lacks, c is announced again after the debounce, so that the retained
// config becomes the union.
func (r *runner) merge(c *car, payload []byte, now time.Time) {
	if n, ok := c.own(maphash.Bytes(r.seed, payload)); ok {
		if c.removalAt >= 0 && n >= c.removalAt {
			// The removal has reached the broker: what comes after it
			// was published knowing it.
			r.mu.Lock()
			if c.dropEpoch == c.removalOf {
				c.dropped = [words]uint64{}
			}
			r.mu.Unlock()
			c.removalAt = -1
		}
		return
	}
	ann, err := discovery.ParseAnnouncement(payload)
	if err != nil {
		r.log.Debug("ignoring a config on a car's discovery topic", "vin", c.vin, "err", err)
		return
	}
	for _, f := range ann.RemovedFields() {
		if f > 0 && f <= telemetry.MaxField {
			c.seen[f>>6].And(^(uint64(1) << (f & 63)))
		}
	}
	// Signals that SetStreaming dropped are not learnt back from a
	// config that may have been published before their removal; the
	// removal is sent again instead.
	r.mu.RLock()
	dropped := c.dropped
	r.mu.RUnlock()
	grew, stale := false, false
	for _, f := range ann.Fields() {
		if f <= 0 || f > telemetry.MaxField {
			continue
		}
		bit := uint64(1) << (f & 63)
		if dropped[f>>6]&bit != 0 {
			stale = true
			continue
		}
		grew = c.seen[f>>6].Or(bit)&bit == 0 || grew
	}
	if ann.Name != "" && ann.Name != c.vin {
		setText(&c.name, telemetry.StringValue(ann.Name))
	}
	if ann.SoftwareVersion != "" {
		setText(&c.version, telemetry.StringValue(ann.SoftwareVersion))
	}
	if c.announced == nil {
		c.announced = make(map[string]string, len(ann.Components))
		c.topic = discovery.Topic(r.cfg, c.vin)
	}
	for key := range ann.Removed {
		delete(c.announced, key)
	}
	for key, platform := range ann.Components {
		c.announced[key] = platform
	}
	r.changed = true

	// The retained config may be c's own last one, published before this
	// one arrived: when this one taught c signals, c's last config lacks
	// them, and c is announced again.
	if stale || (grew && c.hash != 0) || r.knowsMore(c, ann) {
		c.hash = 0 // published even if unchanged: the retained config is not c's
		if c.first.IsZero() {
			c.first = now
		}
		c.last = now
		r.schedule(c)
	}
}

// knowsMore reports whether c's config would announce something ann does
// not: an entity, or a name where ann has the VIN.
func (r *runner) knowsMore(c *car, ann discovery.Announcement) bool {
	msgs := discovery.Messages(r.cfg, r.br, r.vehicle(c))
	if len(msgs) == 0 {
		return false
	}
	mine, err := discovery.ParseAnnounced(msgs[len(msgs)-1].Payload)
	if err != nil {
		return false
	}
	for key := range mine {
		if _, ok := ann.Components[key]; !ok {
			return true
		}
	}
	p := c.name.Load()
	return p != nil && ann.Name == c.vin
}

// watch subscribes to c's discovery topic, to learn what is retained
// there and when someone empties it.
func (r *runner) watch(ctx context.Context, c *car) {
	subCtx, cancel := context.WithCancel(ctx)
	c.unsubscribe = cancel
	r.known[c.vin] = c
	topic := discovery.Topic(r.cfg, c.vin)
	err := r.sub.Subscribe(subCtx, topic, func(_ string, payload []byte) {
		r.evMu.Lock()
		r.events = append(r.events, topicEvent{c, payload})
		r.evMu.Unlock()
		signal(r.wake)
	})
	if err != nil && ctx.Err() == nil {
		r.log.Warn("subscribe to a car's discovery topic", "topic", topic, "err", err)
	}
}

// forget drops a car whose discovery config someone removed.
func (r *runner) forget(c *car) {
	r.log.Info("car removed from home assistant; forgetting it until it streams again", "vin", c.vin)
	c.unsubscribe()
	delete(r.known, c.vin)
	if c.queued > 0 {
		heap.Remove(&r.queue, c.queued-1)
	}
	r.mu.Lock()
	if r.cars[c.vin] == c {
		delete(r.cars, c.vin)
	}
	r.mu.Unlock()
	r.changed = true
}

// due returns when c's config is to be published, zero when it is not.
func (r *runner) due(c *car) time.Time {
	if c.last.IsZero() {
		return time.Time{}
	}
	at := c.last.Add(r.debounce)
	if limit := c.first.Add(r.maxWait()); limit.Before(at) {
		at = limit
	}
	if at.Before(c.retryAt) {
		at = c.retryAt
	}
	return at
}

// announceDue publishes the configs that are due, in VIN order.
func (r *runner) announceDue(ctx context.Context, now time.Time) {
	due := r.popDue(r.due1[:0], now)
	slices.SortFunc(due, func(x, y *car) int { return strings.Compare(x.vin, y.vin) })
	defer func() {
		clear(due)
		r.due1 = due[:0]
	}()
	for i, c := range due {
		if ctx.Err() != nil {
			// Not announced: due again when Run comes back (it does not).
			for _, c := range due[i:] {
				r.schedule(c)
			}
			return
		}
		if err := r.announce(ctx, c, false); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("announce car to home assistant", "vin", c.vin, "err", err)
				c.retryAt = now.Add(retryDelay)
			}
			r.schedule(c)
			continue
		}
		c.first, c.last, c.retryAt = time.Time{}, time.Time{}, time.Time{}
	}
}

// republishAll answers Home Assistant's birth message: every car's config,
// then every car's values.
func (r *runner) republishAll(ctx context.Context) {
	cars := r.sortedKnown()
	for _, c := range cars {
		if err := r.announce(ctx, c, true); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("announce car to home assistant", "vin", c.vin, "err", err)
			continue
		}
		c.first, c.last, c.retryAt = time.Time{}, time.Time{}, time.Time{}
		r.schedule(c)
	}
	for _, c := range cars {
		if err := r.states.Republish(ctx, c.vin); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("republish car values", "vin", c.vin, "err", err)
		}
	}
	r.heard = true
	r.log.Info("announced to home assistant again after its start", "cars", len(cars))
}

func (r *runner) sortedKnown() []*car {
	cars := make([]*car, 0, len(r.known))
	for _, c := range r.known {
		cars = append(cars, c)
	}
	slices.SortFunc(cars, func(x, y *car) int { return strings.Compare(x.vin, y.vin) })
	return cars
}

// vehicle is what discovery needs of c now.
func (r *runner) vehicle(c *car) discovery.Vehicle {
	v := discovery.Vehicle{VIN: c.vin}
	if p := c.name.Load(); p != nil {
		v.DisplayName = *p
	}
	if p := c.version.Load(); p != nil {
		v.SoftwareVersion = *p
	}
	r.mu.RLock()
	v.Streaming = slices.Clone(c.streaming)
	r.mu.RUnlock()
	v.Seen = c.seenFields()
	return v
}

// announce publishes c's config when it changed (always with force),
// removing the components it no longer has, and the config at a topic
// that is no longer c's. A car's first config is followed by its active
// alerts.
func (r *runner) announce(ctx context.Context, c *car, force bool) error {
	v := r.vehicle(c)
	topic := discovery.Topic(r.cfg, c.vin)
	announced := c.announced
	if force && len(c.unconfirmed) > 0 {
		announced = maps.Clone(c.announced)
		if announced == nil {
			announced = make(map[string]string, len(c.unconfirmed))
		}
		for k, p := range c.unconfirmed {
			if _, ok := announced[k]; !ok {
				announced[k] = p
			}
		}
	}
	msgs := discovery.RemoveMessages(r.cfg, r.br, v, announced)
	removing := len(msgs) > 0
	if !removing {
		msgs = discovery.Messages(r.cfg, r.br, v)
	}
	if len(msgs) == 0 {
		return nil
	}
	config := msgs[len(msgs)-1].Payload
	hash := maphash.Bytes(r.seed, config)
	r.mu.RLock()
	epoch, dropping := c.dropEpoch, c.dropped != [words]uint64{}
	r.mu.RUnlock()
	if !force && !removing && hash == c.hash && topic == c.topic {
		if dropping && c.removalAt < 0 {
			// Nothing to remove after all (the dropped signals were
			// never announced).
			r.mu.Lock()
			if c.dropEpoch == epoch {
				c.dropped = [words]uint64{}
			}
			r.mu.Unlock()
		}
		return nil
	}
	out := make([]pubsub.Message, 0, len(msgs)+1)
	if c.topic != "" && c.topic != topic {
		out = append(out, pubsub.Message{Topic: c.topic, Payload: []byte{}, QoS: 1, Retain: true})
	}
	for _, m := range msgs {
		out = append(out, pubsub.Message{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: m.Retain})
	}
	for i, m := range out {
		n := c.remember(maphash.Bytes(r.seed, m.Payload))
		if i == 0 && dropping {
			c.removalAt, c.removalOf = n, epoch
		}
	}
	if err := r.pub.Publish(ctx, out); err != nil {
		return err
	}
	comps, err := discovery.ParseAnnounced(config)
	if err != nil {
		return fmt.Errorf("read back own config: %w", err)
	}
	switch {
	case force:
		c.unconfirmed = nil // Home Assistant is listening
	case removing && !r.heard:
		for k, p := range announced {
			if _, ok := comps[k]; !ok {
				if c.unconfirmed == nil {
					c.unconfirmed = make(map[string]string)
				}
				c.unconfirmed[k] = p
			}
		}
	}
	c.announced, c.topic, c.hash = comps, topic, hash
	r.changed = true
	if c.fresh {
		c.fresh = false
		r.log.Info("car announced to home assistant", "vin", c.vin, "entities", len(comps))
		if err := r.states.PublishActiveAlerts(ctx, c.vin); err != nil {
			r.log.Warn("publish active alerts", "vin", c.vin, "err", err)
		}
	} else {
		r.log.Debug("car announced to home assistant again", "vin", c.vin, "entities", len(comps), "removed", removing)
	}
	return nil
}

// saveIfChanged writes the state file when something changed.
func (r *runner) saveIfChanged() error {
	if !r.changed || r.statePath == "" {
		return nil
	}
	r.mu.RLock()
	st := state{Version: stateVersion, Cars: make(map[string]savedCar, len(r.cars))}
	for vin, c := range r.cars {
		if c.fresh && c.announced == nil {
			continue // not announced yet: nothing to remove after a restart
		}
		st.Cars[vin] = c.save()
	}
	r.mu.RUnlock()
	if err := saveState(r.statePath, st); err != nil {
		return err
	}
	r.changed = false
	return nil
}
