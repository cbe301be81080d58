package setup

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/internal/streamcost"
)

// A page per car, off the steps, once fleet2mqtt has something of it: its
// last drives and charging sessions, its totals per month, downloads of
// its history, its places (places.go), and what its stream costs as
// measured next to the signal step's estimate. It needs Deps.Activity.

// sessionsShown is how many drives, and how many charges, the page lists.
const sessionsShown = 20

type historyData struct {
	// Cars are the cars to choose from when no car is chosen.
	Cars []historyCar
	// VIN and Name are the car shown ("" on the list of cars).
	VIN, Name string
	// Zone names the time zone of the times shown.
	Zone string
	// Off says why there is no history ("" when there is).
	Off      string
	Drives   []sessionRow
	Charges  []sessionRow
	Months   []monthRow
	Currency string
	// CSV and JSON are the downloads' addresses (relative).
	CSV, JSON string
	Cost      costView
	Places    placesData
}

type historyCar struct{ VIN, Name, Link string }

// sessionRow is one drive or charge as the page shows it; figures the car
// did not send are "–".
type sessionRow struct {
	When, Route, Distance, Duration, Energy, Cost string
}

type monthRow struct {
	Month, Drives, Distance, DriveEnergy, Charges, EnergyAdded, Cost string
}

// costView is what the car's stream costs: measured from what it sent,
// and the signal step's bound for the saved selection.
type costView struct {
	Measured   string
	Over       bool
	Top        []signalCost
	Configured string
}

type signalCost struct{ Signal, PerDay, Monthly string }

// historyCars returns the cars the page has something of: the ones with
// sessions or a stream, and the setup's cars that sent a record.
func (f *flow) historyCars() []historyCar {
	a := f.deps.Activity
	if a == nil {
		return nil
	}
	vins := a.Cars()
	names := map[string]string{}
	f.store.read(func(st *state) {
		for _, v := range st.Vehicles {
			names[v.VIN] = v.name()
			if first, _ := f.seen.times(v.VIN); v.Selected && !first.IsZero() {
				vins = append(vins, v.VIN)
			}
		}
	})
	slices.Sort(vins)
	vins = slices.Compact(vins)
	cars := make([]historyCar, 0, len(vins))
	for _, vin := range vins {
		name := names[vin]
		if name == "" {
			name = vin
		}
		cars = append(cars, historyCar{VIN: vin, Name: name, Link: "history?vin=" + url.QueryEscape(vin)})
	}
	return cars
}

// historyCar returns the car vin among historyCars.
func (f *flow) historyCar(vin string) (historyCar, bool) {
	for _, c := range f.historyCars() {
		if c.VIN == vin {
			return c, true
		}
	}
	return historyCar{}, false
}

// historyView lays out car's page; in is the add-place form as sent, or
// nil.
func (f *flow) historyView(car historyCar, in *placeInput) (*historyData, error) {
	a := f.deps.Activity
	loc := a.TimeZone()
	q := "?vin=" + url.QueryEscape(car.VIN)
	d := &historyData{VIN: car.VIN, Name: car.Name, Zone: loc.String(), CSV: "history.csv" + q, JSON: "history.json" + q}
	if d.Zone == "Local" {
		d.Zone = "this computer's time zone"
	}
	drives, err := a.Sessions(car.VIN, activity.KindDrive, sessionsShown)
	var charges []activity.Session
	var months []history.Month
	if err == nil {
		charges, err = a.Sessions(car.VIN, activity.KindCharge, sessionsShown)
	}
	if err == nil {
		months, err = a.Monthly(car.VIN)
	}
	switch {
	case errors.Is(err, ErrHistoryOff):
		d.Off = ErrHistoryOff.Error() + "."
	case err != nil:
		return nil, &stepError{kind: localFault, text: "The history cannot be read: " + err.Error(), err: err}
	}
	for _, s := range charges {
		if s.Currency != "" {
			d.Currency = s.Currency
			break
		}
	}
	for _, s := range drives {
		d.Drives = append(d.Drives, sessionRowOf(s, loc))
	}
	for _, s := range charges {
		d.Charges = append(d.Charges, sessionRowOf(s, loc))
	}
	for i := len(months) - 1; i >= 0; i-- { // newest first
		m := months[i]
		d.Months = append(d.Months, monthRow{
			Month: monthName(m.Month), Drives: strconv.Itoa(m.Drives), Distance: km(m.DistanceKm),
			DriveEnergy: kwh(m.DriveEnergyKWh), Charges: strconv.Itoa(m.Charges), EnergyAdded: kwh(m.EnergyAddedKWh),
			Cost: money(m.Cost, d.Currency),
		})
	}
	d.Cost = f.costView(car.VIN)
	if d.Off == "" {
		d.Places = f.placesView(car.VIN, in)
	}
	return d, nil
}

// costView measures car's stream against the saved selection's bound.
func (f *flow) costView(vin string) costView {
	var v costView
	if e, ok := f.deps.Activity.StreamingEstimate(vin); ok {
		v.Measured = "About " + measured(e)
		if e.OverBudget {
			v.Over = true
			v.Measured += fmt.Sprintf(" That is more than your budget of $%.2f a month (activity.streaming_budget_dollars).", e.BudgetDollars)
		}
		for _, s := range e.Top {
			v.Top = append(v.Top, signalCost{Signal: s.Signal, PerDay: thousands(int64(s.PerDay)), Monthly: fmt.Sprintf("$%.2f", s.MonthlyDollars)})
		}
	} else {
		v.Measured = "The car has sent nothing since fleet2mqtt started: no measurement yet."
	}
	f.store.read(func(st *state) {
		if len(st.Fields) > 0 {
			v.Configured = estimateOf(selectionOf(st.IntervalSeconds, st.Fields), 1).Text
		}
	})
	return v
}

// measured is an estimate in words, after "about".
func measured(e streamcost.Estimate) string {
	return fmt.Sprintf("$%.2f a month (%s signals a day, measured over the last %s).",
		e.MonthlyDollars, thousands(int64(e.SignalsPerDay)), hours(e.ObservedHours))
}

// hours is an observation time in words.
func hours(h float64) string {
	switch {
	case h >= 23.95:
		return "24 hours"
	case h < 1:
		return strconv.Itoa(max(int(math.Round(h*60)), 1)) + " min"
	}
	return strconv.FormatFloat(h, 'f', 1, 64) + " hours"
}

func sessionRowOf(s activity.Session, loc *time.Location) sessionRow {
	r := sessionRow{When: when(s.Start, loc), Duration: duration(s.DurationMin), Distance: "–", Energy: "–", Cost: "–"}
	from, to := placeName(s.StartPlace), placeName(s.EndPlace)
	r.Route = from + " → " + to
	if s.Kind == activity.KindCharge && s.StartPlace == s.EndPlace {
		r.Route = from
	}
	if s.DistanceKm != nil {
		r.Distance = km(*s.DistanceKm)
	}
	energy := s.EnergyUsedKWh
	if s.Kind == activity.KindCharge && s.EnergyAddedKWh != nil {
		energy = s.EnergyAddedKWh
	}
	if energy != nil {
		r.Energy = kwh(*energy)
	}
	if s.Cost != nil {
		r.Cost = money(*s.Cost, s.Currency)
	}
	return r
}

func placeName(p string) string {
	if p == "" {
		return "elsewhere"
	}
	return p
}

// when is a moment as the page lists sessions: day, date, time and zone.
func when(t time.Time, loc *time.Location) string {
	t = t.In(loc)
	zone, _ := t.Zone()
	if zone == "" || zone[0] == '+' || zone[0] == '-' {
		zone = "UTC" + t.Format("-07:00")
	}
	return t.Format("Mon 2 Jan 2006, 15:04") + " " + zone
}

func duration(min float64) string {
	m := int(math.Round(min))
	if m < 60 {
		return strconv.Itoa(m) + " min"
	}
	return fmt.Sprintf("%d h %02d min", m/60, m%60)
}

func km(v float64) string  { return strconv.FormatFloat(v, 'f', 1, 64) + " km" }
func kwh(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " kWh" }

func money(v float64, currency string) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if currency != "" {
		s += " " + currency
	}
	return s
}

// monthName turns "2026-03" into "March 2026".
func monthName(m string) string {
	t, err := time.Parse("2006-01", m)
	if err != nil {
		return m
	}
	return t.Format("January 2006")
}

// historyStep serves the cars' pages, their downloads and the places.
type historyStep struct{ *site }

func (s historyStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /history", s.page)
	mux.HandleFunc("GET /history.csv", s.export(ExportCSV, "text/csv; charset=utf-8"))
	mux.HandleFunc("GET /history.json", s.export(ExportJSON, "application/json"))
	mux.HandleFunc("POST /places", s.places)
}

// car returns the car the request names, after answering 404 when the
// page has nothing of it.
func (s historyStep) car(rw http.ResponseWriter, r *http.Request) (historyCar, bool) {
	if s.flow.deps.Activity == nil {
		s.notFound(rw, r)
		return historyCar{}, false
	}
	car, ok := s.flow.historyCar(r.FormValue("vin"))
	if !ok {
		s.notFound(rw, r)
	}
	return car, ok
}

func (s historyStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.flow.deps.Activity == nil {
		s.notFound(rw, r)
		return
	}
	if r.URL.Query().Get("vin") == "" {
		s.render(rw, r, http.StatusOK, "history", &page{Title: "Drives and charges", Step: -1,
			Data: &historyData{Cars: s.flow.historyCars()}})
		return
	}
	car, ok := s.car(rw, r)
	if !ok {
		return
	}
	s.show(rw, r, http.StatusOK, car, nil, nil)
}

// show renders car's page with status, a problem and the add form as
// sent.
func (s historyStep) show(rw http.ResponseWriter, r *http.Request, status int, car historyCar, prob *problem, in *placeInput) {
	d, err := s.flow.historyView(car, in)
	if err != nil {
		s.render(rw, r, statusOf(err), "history", &page{Title: car.Name, Step: -1, Problem: problemOf(err), Data: &historyData{VIN: car.VIN, Name: car.Name}})
		return
	}
	s.render(rw, r, status, "history", &page{Title: car.Name + ": drives and charges", Step: -1, Problem: prob, Data: d})
}

// export serves the car's history as a download.
func (s historyStep) export(format ExportFormat, contentType string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		car, ok := s.car(rw, r)
		if !ok {
			return
		}
		var buf bytes.Buffer
		if err := s.flow.deps.Activity.Export(&buf, car.VIN, format); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrHistoryOff) {
				status = http.StatusConflict
			}
			http.Error(rw, "The history cannot be downloaded: "+err.Error(), status)
			return
		}
		rw.Header().Set("Content-Type", contentType)
		rw.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="fleet2mqtt-%s-history.%s"`, car.VIN, format))
		rw.Header().Set("Cache-Control", "no-store")
		rw.Write(buf.Bytes())
	}
}

// places adds (action add) or removes (action remove) an owner's place.
func (s historyStep) places(rw http.ResponseWriter, r *http.Request) {
	car, ok := s.car(rw, r)
	if !ok {
		return
	}
	back := "history?vin=" + url.QueryEscape(car.VIN)
	switch r.PostFormValue("action") {
	case "add":
		in := placeInput{Name: r.PostFormValue("name"), Radius: r.PostFormValue("radius"), Price: r.PostFormValue("price"),
			Latitude: r.PostFormValue("latitude"), Longitude: r.PostFormValue("longitude")}
		name, err := s.flow.addPlace(r.Context(), in)
		if err != nil {
			s.show(rw, r, statusOf(err), car, problemOf(err), &in)
			return
		}
		s.flash(r, "“"+name+"” is a place now: the car's place is looked up again at once.")
	case "remove":
		name := r.PostFormValue("name")
		if err := s.flow.removePlace(r.Context(), name); err != nil {
			s.show(rw, r, statusOf(err), car, problemOf(err), nil)
			return
		}
		s.flash(r, "“"+name+"” is no longer a place.")
	default:
		http.Error(rw, "unknown action: use add or remove", http.StatusBadRequest)
		return
	}
	redirect(rw, back)
}

// Links to the cars' pages from elsewhere on the page.

// historyShown reports whether the page has cars to show (the nav
// link).
func (f *flow) historyShown() bool { return len(f.historyCars()) > 0 }
