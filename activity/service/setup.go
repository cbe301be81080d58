package service

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

// ForSetup is the derived state as the setup page sees it: the history,
// each car's position, the places and the streaming cost estimates.
func (s *Service) ForSetup() setup.Activity { return forSetup{s} }

// forSetup implements setup.Activity; without activity there is no
// history and no derived state (setup.ErrHistoryOff).
type forSetup struct{ *Service }

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

func (s forSetup) Cars() []string {
	var vins []string
	if h := s.history; h != nil {
		if list, err := h.Cars(); err == nil {
			vins = list
		} else {
			s.log.Warn("cannot read the cars of the history", "err", err)
		}
	}
	for _, e := range s.cost.meter.Estimates(time.Now(), s.cost.budget) {
		vins = append(vins, e.VIN)
	}
	slices.Sort(vins)
	return slices.Compact(vins)
}

func (s forSetup) Sessions(vin string, kind activity.Kind, limit int) ([]activity.Session, error) {
	if s.history == nil {
		return nil, setup.ErrHistoryOff
	}
	return s.history.List(vin, history.Filter{Kind: kind, Limit: limit})
}

func (s forSetup) Monthly(vin string) ([]history.Month, error) {
	if s.history == nil {
		return nil, setup.ErrHistoryOff
	}
	return s.history.Monthly(vin, s.loc)
}

func (s forSetup) Export(w io.Writer, vin string, format setup.ExportFormat) error {
	h := s.history
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

func (s forSetup) TimeZone() *time.Location { return s.loc }

func (s forSetup) Position(vin string) (setup.Position, bool) {
	var pos setup.Position
	var ok bool
	if d := s.derived; d != nil {
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

func (s forSetup) ConfigPlaces() []activity.Place { return slices.Clone(s.places) }

func (s forSetup) SetOwnerPlaces(ctx context.Context, owner []activity.Place) error {
	d := s.derived
	if d == nil {
		return setup.ErrHistoryOff
	}
	all := append(slices.Clone(s.places), owner...)
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

func (s forSetup) StreamingEstimate(vin string) (streamcost.Estimate, bool) {
	for _, e := range s.cost.meter.Estimates(time.Now(), s.cost.budget) {
		if e.VIN == vin {
			return e, true
		}
	}
	return streamcost.Estimate{}, false
}
