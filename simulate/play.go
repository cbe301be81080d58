package simulate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Defaults of PlayConfig.
const (
	DefaultInterval = time.Second
	DefaultLogEvery = 5 * time.Second
	// minTick is the shortest real time between two records of one car;
	// at higher speed-ups each record covers more simulated time instead.
	minTick = 10 * time.Millisecond
	// flushBeforeSleep bounds how long a car waits for its last
	// acknowledgements before it falls asleep.
	flushBeforeSleep = 10 * time.Second
)

// PlayConfig says how a car plays its scenario.
type PlayConfig struct {
	// Scenario is what the car does; empty means ScenarioMixed.
	Scenario Scenario
	// Seed makes the story repeatable: the same seed plays the same
	// values (txids are random regardless).
	Seed uint64
	// Speed is the speed-up factor: 10 plays ten simulated seconds per
	// second. Zero means 1.
	Speed float64
	// Interval is the simulated time between two records; zero means one
	// second. Records are never closer than 10 ms of real time: beyond
	// that speed-up each record covers more simulated time.
	Interval time.Duration
	// Log receives what the car does; nil discards it.
	Log *slog.Logger
	// Remote returns what tells the car with this VIN from outside to
	// change (vehicle commands); nil, or a nil Remote, for none.
	Remote func(vin string) *Remote
	// LogEvery is the real time between two info lines about the records
	// a car sends (state changes are always logged); other records are
	// logged at debug level. Zero means five seconds.
	LogEvery time.Duration
}

func (p *PlayConfig) setDefaults() {
	p.Scenario = cmp.Or(p.Scenario, ScenarioMixed)
	p.Speed = cmp.Or(p.Speed, 1)
	p.Interval = cmp.Or(p.Interval, DefaultInterval)
	p.LogEvery = cmp.Or(p.LogEvery, DefaultLogEvery)
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
}

func (p *PlayConfig) validate() error {
	if _, err := ParseScenario(string(p.Scenario)); err != nil {
		return err
	}
	if !(p.Speed > 0) || p.Speed > 1e6 {
		return fmt.Errorf("speed %v: must be above 0 and at most 1000000", p.Speed)
	}
	if p.Interval < 0 {
		return fmt.Errorf("interval %v: must be positive", p.Interval)
	}
	return nil
}

// timing returns the real time between records and the simulated time
// each record covers.
func (p *PlayConfig) timing() (real, simulated time.Duration) {
	real = time.Duration(float64(p.Interval) / p.Speed)
	if real >= minTick {
		return real, p.Interval
	}
	return minTick, time.Duration(float64(minTick) * p.Speed)
}

// Play connects car and plays cfg's scenario on it until ctx ends, then
// disconnects and returns nil. A car that falls asleep first waits (a
// little) for its acknowledgements, disconnects, and reconnects when it
// wakes up. Play runs the car: do not call car.Run as well.
func Play(ctx context.Context, car *Car, cfg PlayConfig) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	p := &player{car: car, cfg: cfg, log: cfg.Log.With("vin", car.VIN(), "scenario", string(cfg.Scenario))}
	if cfg.Remote != nil {
		p.remote = cfg.Remote(car.VIN())
	}
	return p.play(ctx)
}

type player struct {
	car     *Car
	remote  *Remote // nil: nobody tells the car anything
	cfg     PlayConfig
	log     *slog.Logger
	lastLog time.Time
}

func (p *player) play(ctx context.Context) error {
	model := newVehicle(p.cfg.Scenario, p.cfg.Seed)
	every, step := p.cfg.timing()

	var (
		stop context.CancelFunc
		done chan error
	)
	connect := func() {
		var runCtx context.Context
		runCtx, stop = context.WithCancel(ctx)
		done = make(chan error, 1)
		go func() { done <- p.car.Run(runCtx) }()
	}
	disconnect := func() error {
		if done == nil {
			return nil
		}
		stop()
		err := <-done
		done = nil
		return err
	}
	connect()
	defer func() { _ = disconnect() }()

	// Spread many cars over the first interval.
	if !sleep(ctx, time.Duration(rand.Float64()*float64(every))) {
		return nil
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		var told tick
		if c, ok := p.remote.take(); ok {
			model.applyRemote(c, &told)
		}
		t := model.step(step, time.Now())
		t.notes = append(told.notes, t.notes...)
		p.remote.report(model.controls())
		if err := p.send(ctx, t); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if t.sleep > 0 {
			fctx, cancel := context.WithTimeout(ctx, flushBeforeSleep)
			_ = p.car.Flush(fctx)
			cancel()
			if err := disconnect(); err != nil {
				return err
			}
			away := time.Duration(float64(t.sleep) / p.cfg.Speed)
			p.log.Info("asleep: disconnected", "simulated", t.sleep, "real", away.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(away):
			case <-p.remote.woken():
				p.log.Info("woken by a command")
			}
			p.log.Info("woke up: reconnecting")
			connect()
			ticker.Reset(every)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			done = nil
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("car stopped running")
			}
			return err
		case <-ticker.C:
		}
	}
}

// send sends what one step produced and logs it.
func (p *player) send(ctx context.Context, t tick) error {
	for _, note := range t.notes {
		p.log.Info(note)
	}
	for _, alerts := range t.alerts {
		if _, err := p.car.SendAlerts(ctx, alerts); err != nil {
			return err
		}
	}
	for _, errs := range t.errors {
		if _, err := p.car.SendErrors(ctx, errs); err != nil {
			return err
		}
	}
	if len(t.data) == 0 {
		return nil
	}
	m, err := p.car.SendData(ctx, t.data)
	if err != nil {
		return err
	}
	level := slog.LevelDebug
	if now := time.Now(); now.Sub(p.lastLog) >= p.cfg.LogEvery {
		p.lastLog, level = now, slog.LevelInfo
	}
	if p.log.Enabled(ctx, level) {
		st := p.car.Stats()
		p.log.Log(ctx, level, "sent V", "fields", len(m.Data), "values", summary(m.Data, 6),
			"acked", st.Acked, "pending", p.car.Pending())
	}
	return nil
}

// summary renders up to max signals as "Name=value" pairs for people.
func summary(data []telemetry.Datum, max int) string {
	var b []byte
	for i, d := range data {
		if i == max {
			b = append(b, " +"...)
			b = strconv.AppendInt(b, int64(len(data)-max), 10)
			b = append(b, " more"...)
			break
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, d.Field.String()...)
		b = append(b, '=')
		b = append(b, d.Value.String()...)
	}
	return string(b)
}

// PlayFleet plays cfg on every car at once, car i with seed cfg.Seed+i,
// until ctx ends. It returns the errors of cars that stopped early.
func PlayFleet(ctx context.Context, cars []*Car, cfg PlayConfig) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, car := range cars {
		c := cfg
		c.Seed += uint64(i)
		wg.Go(func() {
			if err := Play(ctx, car, c); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("car %s: %w", car.VIN(), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
