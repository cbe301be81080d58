package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// Where the derived state lives in the data directory.
const (
	historyFile     = "history.db"  // the sessions (bbolt)
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

// derivedState is what fleet2mqtt derives from the stream: the trackers
// and their publisher and the history of sessions (nil when activity is
// off), and what each car's stream costs (streamcost.go).
type derivedState struct {
	derived *bridge.Derived
	history *history.Store
	cost    *streamCost
	// configPlaces are the configuration file's places, and loc the zone
	// of the monthly totals, for the setup page (activity_setup.go).
	configPlaces []activity.Place
	loc          *time.Location
}

// buildActivity makes the streaming cost meter, and with activity.enabled
// the derived state publisher and the history. The publisher attaches to
// the bridge, which feeds it every record and publishes what it derives
// with the record's signals, before the frame is acknowledged.
func (a *app) buildActivity() error {
	a.activity.cost = newStreamCost(a.cfg.Activity.StreamingBudgetDollars, a.metrics.Car)
	a.metrics.MustRegister(a.activity.cost)
	if err := a.bridge.RestoreValues(filepath.Join(a.cfg.DataDir, valuesFile)); err != nil {
		a.log.Warn("the state objects start without the values from before the restart", "err", err)
	}
	if !a.cfg.Activity.Enabled {
		return nil
	}
	acfg, err := a.cfg.ActivityConfig()
	if err != nil {
		return err
	}
	// The places the owner added on the setup page join the file's.
	a.activity.configPlaces, a.activity.loc = acfg.Places, acfg.Location()
	if owner, err := setup.OwnerPlaces(a.cfg.DataDir); err != nil {
		a.log.Warn("the places added on the setup page are left out", "err", err)
	} else {
		acfg.Places = mergePlaces(acfg.Places, owner, a.log)
	}
	h, err := history.Open(filepath.Join(a.cfg.DataDir, historyFile))
	if err != nil {
		return fmt.Errorf("activity history: %w", err)
	}
	d, err := bridge.NewDerived(a.bridge, bridge.DerivedOptions{
		Activity:  &acfg,
		TeslaMate: a.cfg.MQTT.TeslaMate,
		History:   h,
		StateDir:  filepath.Join(a.cfg.DataDir, activityDirName),
	})
	if err != nil {
		h.Close()
		return err
	}
	a.activity.derived, a.activity.history = d, h
	return nil
}

// saveValues keeps every car's latest values for the state object after
// a restart.
func (a *app) saveValues() {
	if err := a.bridge.SaveValues(filepath.Join(a.cfg.DataDir, valuesFile)); err != nil {
		a.log.Warn("cannot save the cars' values", "err", err)
	}
}

// activityComponent republishes the derived state after a start, ticks
// it, prunes the history daily, publishes the streaming cost estimates
// and saves the cars' values every minute; on stop it saves every
// tracker and the values and closes the history. It
// stops after the vehicle listener (the cars' last records are in) and
// before the bridge says offline.
func (a *app) activityComponent() supervise.Component {
	d, h := a.activity.derived, a.activity.history
	retention := a.cfg.Activity.Retention()
	prune := func() {
		if n, err := h.Prune(time.Now().Add(-retention)); err != nil {
			a.log.Warn("cannot prune the history", "err", err)
		} else if n > 0 {
			a.log.Info("pruned the history", "sessions", n)
		}
	}
	run := supervise.Background("activity", func(ctx context.Context) error {
		if d != nil {
			if err := d.Republish(ctx); err != nil {
				a.log.Warn("cannot republish the cars' derived state", "err", err)
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
						a.log.Warn("derived state", "err", err)
					}
				}
			case now := <-cost.C:
				a.publishStreamCost(ctx, now)
			case <-values.C:
				a.saveValues()
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
			a.saveValues()
			if d != nil {
				if serr := d.Save(); serr != nil {
					a.log.Warn("cannot save the cars' derived state", "err", serr)
				}
				if cerr := h.Close(); cerr != nil {
					a.log.Warn("cannot close the history", "err", cerr)
				}
			}
			return err
		},
	}
}

// demoActivity fits the derived state to the demo: the simulated cars
// live speed times faster than the clock their records are stamped with,
// so the rules' periods shrink by as much; without places of the owner's
// own, the simulated route's Home (with a price) and Work are the places;
// TeslaMate's topics are on.
func demoActivity(cfg *config.Config, speed float64) {
	a := &cfg.Activity
	for _, d := range []*time.Duration{&a.DriveGrace, &a.ChargeGrace, &a.DriveTimeout, &a.UpdateTimeout, &a.StaleAfter} {
		if *d > 0 {
			*d = max(time.Duration(float64(*d)/speed), time.Millisecond)
		}
	}
	if len(cfg.Places) == 0 {
		price := 0.30
		for _, p := range simulate.Places() {
			pl := activity.Place{Name: p.Name, Latitude: p.Latitude, Longitude: p.Longitude, Radius: 150}
			if p.Name == "Home" {
				pl.PricePerKWh = &price
			}
			cfg.Places = append(cfg.Places, pl)
		}
		if a.Currency == "" {
			a.Currency = "USD"
		}
	}
	if a.Enabled {
		cfg.MQTT.TeslaMate.Enabled = true
	}
}
