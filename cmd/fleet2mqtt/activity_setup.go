package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/internal/streamcost"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// setupActivity is the derived state as the setup page sees it
// (setup.Activity): the history, each car's position, the places and the
// streaming cost meter. The history and the derived state are nil when
// activity is off.
type setupActivity struct {
	derived *derivedState
	// config are the configuration file's places, validated.
	config []activity.Place
	loc    *time.Location
	budget float64
	log    *slog.Logger
}

// setupActivity returns the setup page's view of a.activity; call it
// after buildActivity.
func (a *app) setupActivity() setup.Activity {
	loc := time.Local
	if a.activity.loc != nil {
		loc = a.activity.loc
	}
	return &setupActivity{derived: &a.activity, config: a.activity.configPlaces,
		loc: loc, budget: a.cfg.Activity.StreamingBudgetDollars, log: a.log}
}

// mergePlaces returns the configuration's places followed by the owner's
// (added on the setup page); an owner's place that cannot join them (its
// name is taken by the configuration file, which was edited since) is
// left out with a warning.
func mergePlaces(config, owner []activity.Place, log *slog.Logger) []activity.Place {
	all := slices.Clone(config)
	for _, p := range owner {
		next := append(slices.Clone(all), p)
		if err := activity.ValidatePlaces(next); err != nil {
			log.Warn("a place added on the setup page is left out: remove it there, or rename the configuration file's place",
				"place", p.Name, "err", err)
			continue
		}
		all = next
	}
	return all
}

func (s *setupActivity) Cars() []string {
	var vins []string
	if h := s.derived.history; h != nil {
		if list, err := h.Cars(); err == nil {
			vins = list
		} else {
			s.log.Warn("cannot read the cars of the history", "err", err)
		}
	}
	for _, e := range s.derived.cost.meter.Estimates(time.Now(), s.budget) {
		vins = append(vins, e.VIN)
	}
	slices.Sort(vins)
	return slices.Compact(vins)
}

func (s *setupActivity) Sessions(vin string, kind activity.Kind, limit int) ([]activity.Session, error) {
	if s.derived.history == nil {
		return nil, setup.ErrHistoryOff
	}
	return s.derived.history.List(vin, history.Filter{Kind: kind, Limit: limit})
}

func (s *setupActivity) Monthly(vin string) ([]history.Month, error) {
	if s.derived.history == nil {
		return nil, setup.ErrHistoryOff
	}
	return s.derived.history.Monthly(vin, s.loc)
}

func (s *setupActivity) Export(w io.Writer, vin string, format setup.ExportFormat) error {
	h := s.derived.history
	if h == nil {
		return setup.ErrHistoryOff
	}
	switch format {
	case setup.ExportCSV:
		return h.WriteCSV(w, vin, history.Filter{})
	case setup.ExportJSON:
		return h.WriteJSON(w, vin, history.Filter{})
	}
	return fmt.Errorf("no export format %q: use csv or json", format)
}

func (s *setupActivity) TimeZone() *time.Location { return s.loc }

func (s *setupActivity) Position(vin string) (setup.Position, bool) {
	var pos setup.Position
	var ok bool
	if d := s.derived.derived; d != nil {
		d.Tracker(vin, func(tr *activity.Tracker) {
			v := tr.Values().Get(telemetry.FieldLocation)
			if v.Kind() != telemetry.KindLocationValue {
				return
			}
			pos.Latitude, pos.Longitude = v.Location()
			pos.Place, ok = tr.Place(), true
		})
	}
	return pos, ok
}

func (s *setupActivity) ConfigPlaces() []activity.Place { return slices.Clone(s.config) }

func (s *setupActivity) SetOwnerPlaces(ctx context.Context, owner []activity.Place) error {
	d := s.derived.derived
	if d == nil {
		return setup.ErrHistoryOff
	}
	all := append(slices.Clone(s.config), owner...)
	if err := activity.ValidatePlaces(slices.Clone(all)); err != nil {
		return err
	}
	if err := d.SetPlaces(ctx, all); err != nil {
		// The places are set; what could not be published goes out with
		// the car's next record or tick.
		s.log.Warn("cannot publish the cars' places after a change of places", "err", err)
	}
	return nil
}

func (s *setupActivity) StreamingEstimate(vin string) (streamcost.Estimate, bool) {
	for _, e := range s.derived.cost.meter.Estimates(time.Now(), s.budget) {
		if e.VIN == vin {
			return e, true
		}
	}
	return streamcost.Estimate{}, false
}
