// Package service is the derived state inside a running fleet2mqtt: the
// trackers and their publisher (bridge.Derived) with the history of
// sessions (activity/history) when activity is on, each car's latest
// values kept for the state object across restarts, and what each car's
// stream costs (internal/streamcost): counted by a stage of the record
// path, estimated on /metrics (Collector) and on
// <prefix>/<VIN>/streaming/cost. ForSetup is what the setup page sees of
// it. cmd wires it: New when building, Stage in the record path,
// Component among the running parts.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/activity/teslamate"
	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
)

// HistoryFile is the history of sessions (bbolt) in the data directory.
const HistoryFile = "history.db"

// Where the rest of the derived state lives in the data directory.
const (
	activityDirName = "activity"    // one tracker per car, <VIN>.json
	valuesFile      = "values.json" // every car's latest values, for the state object
)

// How often the derived state is ticked (grace periods, timeouts, stale
// streams) and saved, and how often old sessions are pruned.
const (
	activityTick  = 10 * time.Second
	activityPrune = 24 * time.Hour
	valuesSave    = time.Minute
)

// Config is what the service is built from.
type Config struct {
	// Activity is the activity section with the configuration file's
	// places, validated (config.Config.ActivityConfig). Without Enabled
	// only the values and the streaming cost are kept.
	Activity activity.Config
	// TeslaMate publishes TeslaMate's topics too (mqtt.teslamate).
	TeslaMate teslamate.Config
	// DataDir holds the history, the trackers, the values and the places
	// the owner added on the setup page.
	DataDir string
	// Prefix and QoS are where and how the streaming cost estimates are
	// published; Exclusive (mqtt.compat.exclusive) publishes none.
	Prefix    string
	QoS       byte
	Exclusive bool
	// Car is the car label of the per-car metrics for a VIN
	// (metrics.Registry.Car).
	Car func(vin string) string
}

// Service is the derived state of a running fleet2mqtt.
type Service struct {
	cfg    Config
	bridge *bridge.Bridge
	pub    pubsub.Publisher
	log    *slog.Logger
	// derived and history are nil when activity is off.
	derived *bridge.Derived
	history *history.Store
	cost    *streamCost
	// places are the configuration file's places, and loc the zone of
	// the monthly totals, for the setup page (nil and time.Local when
	// activity is off).
	places []activity.Place
	loc    *time.Location
	// valuesFailing: the last save of the cars' values failed.
	valuesFailing atomic.Bool
}

// New makes the streaming cost meter, restores the cars' values into b,
// and with activity enabled opens the history and attaches the derived
// state publisher to b, which feeds it every record and publishes what it
// derives with the record's signals, before the frame is acknowledged.
// pub is where the streaming cost estimates go. Nothing runs until
// Component starts. A nil log discards.
func New(cfg Config, b *bridge.Bridge, pub pubsub.Publisher, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, bridge: b, pub: pub, log: log, loc: time.Local,
		cost: newStreamCost(cfg.Activity.StreamingBudgetDollars, cfg.Car)}
	if err := b.RestoreValues(filepath.Join(cfg.DataDir, valuesFile)); err != nil {
		log.Warn("the state objects start without the values from before the restart", "err", err)
	}
	if !cfg.Activity.Enabled {
		return s, nil
	}
	acfg := cfg.Activity
	s.places, s.loc = acfg.Places, acfg.Location()
	// The places the owner added on the setup page join the file's.
	if owner, err := setup.OwnerPlaces(cfg.DataDir); err != nil {
		log.Warn("the places added on the setup page are left out", "err", err)
	} else {
		acfg.Places = mergePlaces(acfg.Places, owner, log)
	}
	h, err := history.Open(filepath.Join(cfg.DataDir, HistoryFile))
	if err != nil {
		return nil, fmt.Errorf("activity history: %w", err)
	}
	d, err := bridge.NewDerived(b, bridge.DerivedOptions{
		Activity:  &acfg,
		TeslaMate: cfg.TeslaMate,
		History:   h,
		StateDir:  filepath.Join(cfg.DataDir, activityDirName),
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	s.derived, s.history = d, h
	return s, nil
}

// Derives reports whether the cars' status, places, drives and charges
// are derived (activity.enabled).
func (s *Service) Derives() bool { return s.derived != nil }

// saveValues keeps every car's latest values for the state object after
// a restart.
func (s *Service) saveValues() {
	err := s.bridge.SaveValues(filepath.Join(s.cfg.DataDir, valuesFile))
	s.valuesFailing.Store(err != nil)
	if err != nil {
		s.log.Warn("cannot save the cars' values", "err", err)
	}
}

// SaveFailing reports whether the last attempt to save the cars' latest
// values, or some car's derived state, failed, or sessions wait for a
// history that cannot be written (a full or read-only disk): /healthz
// says degraded until they are saved.
func (s *Service) SaveFailing() bool {
	return s.valuesFailing.Load() || s.derived != nil && (s.derived.SaveFailing() > 0 || s.derived.Unfiled() > 0)
}

// Component republishes the derived state after a start, ticks it,
// prunes the history daily, publishes the streaming cost estimates and
// saves the cars' values every minute; on stop it saves every tracker and
// the values and closes the history. It belongs after the vehicle
// listener (stopping once the cars' last records are in) and before the
// bridge says offline.
func (s *Service) Component() supervise.Component {
	d, h := s.derived, s.history
	retention := s.cfg.Activity.Retention()
	prune := func() {
		if n, err := h.Prune(time.Now().Add(-retention)); err != nil {
			s.log.Warn("cannot prune the history", "err", err)
		} else if n > 0 {
			s.log.Info("pruned the history", "sessions", n)
		}
	}
	run := supervise.Background("activity", func(ctx context.Context) error {
		if d != nil {
			if err := d.Republish(ctx); err != nil {
				s.log.Warn("cannot republish the cars' derived state", "err", err)
			}
			prune()
		}
		tick, cost, daily := time.NewTicker(activityTick), time.NewTicker(streamCostEvery), time.NewTicker(activityPrune)
		values := time.NewTicker(valuesSave)
		defer tick.Stop()
		defer cost.Stop()
		defer daily.Stop()
		defer values.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-tick.C:
				if d != nil {
					if err := d.Tick(ctx, now); err != nil {
						s.log.Warn("derived state", "err", err)
					}
				}
			case now := <-cost.C:
				s.PublishStreamCost(ctx, now)
			case <-values.C:
				s.saveValues()
			case <-daily.C:
				if h != nil {
					prune()
				}
			}
		}
	}, nil)
	return supervise.Component{
		Name:  "activity",
		Start: run.Start,
		Stop: func(ctx context.Context) error {
			err := run.Stop(ctx)
			s.saveValues()
			if d != nil {
				if serr := d.Save(); serr != nil {
					s.log.Warn("cannot save the cars' derived state", "err", serr)
				}
				if cerr := h.Close(); cerr != nil {
					s.log.Warn("cannot close the history", "err", cerr)
				}
			}
			return err
		},
	}
}
