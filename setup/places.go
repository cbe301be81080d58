package setup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
)

// The places the owner adds on the page: the car's current position, named,
// with a radius and optionally a price per kWh. They are kept in the setup
// state (state.json), applied at once through Deps.Activity, and merged
// with the configuration file's places at every start (OwnerPlaces). The
// configuration file's places are shown but not changed here.

// placeInput is the form that adds a place, as typed.
type placeInput struct {
	Name, Radius, Price, Latitude, Longitude string
}

// placeView is one place as the page lists it.
type placeView struct {
	Name, Centre, Radius, Price string
}

// placesData is the places part of a car's page.
type placesData struct {
	// Form is the add form, prefilled with the car's position when
	// Position is set.
	Form     placeInput
	Position bool
	// At is the place the car is at, "" elsewhere.
	At     string
	Owner  []placeView
	Config []placeView
}

// Limits of a place's radius, as package activity takes them.
const (
	minRadius     = 1
	maxRadius     = 100_000
	defaultRadius = activity.DefaultRadius
)

// placesView lays out the places and the add form for vin's page; in,
// when set, is the form as the owner sent it (after a refusal).
func (f *flow) placesView(vin string, in *placeInput) placesData {
	a := f.deps.Activity
	var d placesData
	var owner []activity.Place
	f.store.read(func(st *state) { owner = slices.Clone(st.Places) })
	for _, p := range owner {
		d.Owner = append(d.Owner, viewPlace(p))
	}
	for _, p := range a.ConfigPlaces() {
		d.Config = append(d.Config, viewPlace(p))
	}
	pos, ok := a.Position(vin)
	d.Position, d.At = ok, pos.Place
	switch {
	case in != nil:
		d.Form = *in
	case ok:
		d.Form = placeInput{Radius: strconv.Itoa(defaultRadius),
			Latitude: coordinate(pos.Latitude), Longitude: coordinate(pos.Longitude)}
	}
	return d
}

func viewPlace(p activity.Place) placeView {
	v := placeView{Name: p.Name, Centre: coordinate(p.Latitude) + ", " + coordinate(p.Longitude),
		Radius: strconv.FormatFloat(cmpOr(p.Radius, defaultRadius), 'f', -1, 64) + " m"}
	if p.PricePerKWh != nil {
		v.Price = strconv.FormatFloat(*p.PricePerKWh, 'f', -1, 64) + " per kWh"
	}
	if len(p.Tariffs) > 0 {
		v.Price = strings.TrimSpace(v.Price + " (time-of-use prices)")
	}
	return v
}

func cmpOr(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// coordinate is a latitude or longitude as the form shows it: six
// decimals, about 10 cm.
func coordinate(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }

// addPlace adds the place of in, applies every place at once and keeps
// it. It returns the place's name.
func (f *flow) addPlace(ctx context.Context, in placeInput) (string, error) {
	a := f.deps.Activity
	f.placesMu.Lock()
	defer f.placesMu.Unlock()
	var owner []activity.Place
	f.store.read(func(st *state) { owner = slices.Clone(st.Places) })
	p, err := parsePlace(in, a.ConfigPlaces(), owner)
	if err != nil {
		return "", err
	}
	next := append(owner, p)
	if err := f.applyPlaces(ctx, next); err != nil {
		return "", err
	}
	return p.Name, f.store.update(func(st *state) error {
		st.Places = next
		return nil
	})
}

// removePlace removes the owner's place name and applies the rest.
func (f *flow) removePlace(ctx context.Context, name string) error {
	f.placesMu.Lock()
	defer f.placesMu.Unlock()
	var owner []activity.Place
	f.store.read(func(st *state) { owner = slices.Clone(st.Places) })
	i := slices.IndexFunc(owner, func(p activity.Place) bool { return p.Name == name })
	if i < 0 {
		return refuse("There is no place called “%s” among the places added on this page (places in the configuration file are changed there).", name)
	}
	next := slices.Delete(owner, i, i+1)
	if err := f.applyPlaces(ctx, next); err != nil {
		return err
	}
	return f.store.update(func(st *state) error {
		st.Places = next
		return nil
	})
}

// applyPlaces hands owner to Deps.Activity, which looks every car's
// place up again.
func (f *flow) applyPlaces(ctx context.Context, owner []activity.Place) error {
	err := f.deps.Activity.SetOwnerPlaces(ctx, owner)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrHistoryOff):
		return &stepError{kind: notReady, text: "Places cannot be added: " + ErrHistoryOff.Error() + ".", err: err}
	default:
		return &stepError{kind: badInput, text: "The places cannot be used: " + err.Error(), err: err}
	}
}

// parsePlace checks the form in plain words against the places there
// are, and returns the place with its defaults filled.
func parsePlace(in placeInput, config, owner []activity.Place) (activity.Place, error) {
	var p activity.Place
	p.Name = strings.TrimSpace(in.Name)
	if p.Name == "" {
		return p, refuse("Give the place a name, such as Home or Work.")
	}
	if len(p.Name) > 64 {
		return p, refuse("The name is too long: use at most 64 characters.")
	}
	for _, c := range config {
		if strings.EqualFold(c.Name, p.Name) {
			return p, refuse("The configuration file already has a place called “%s”: choose another name.", c.Name)
		}
	}
	for _, o := range owner {
		if strings.EqualFold(o.Name, p.Name) {
			return p, refuse("There is already a place called “%s”: choose another name, or remove that place first.", o.Name)
		}
	}
	var err error
	if p.Latitude, err = number(in.Latitude); err != nil || p.Latitude < -90 || p.Latitude > 90 {
		return p, refuse("The latitude must be a number of degrees between -90 and 90, such as 52.520008.")
	}
	if p.Longitude, err = number(in.Longitude); err != nil || p.Longitude < -180 || p.Longitude > 180 {
		return p, refuse("The longitude must be a number of degrees between -180 and 180, such as 13.404954.")
	}
	if p.Latitude == 0 && p.Longitude == 0 {
		return p, refuse("The position 0, 0 is in the sea off Africa: use the car's position, or the place's coordinates.")
	}
	p.Radius = defaultRadius
	if strings.TrimSpace(in.Radius) != "" {
		if p.Radius, err = number(in.Radius); err != nil || p.Radius < minRadius || p.Radius > maxRadius {
			return p, refuse("The radius must be a number of metres between %d and %d, such as %d.", minRadius, maxRadius, defaultRadius)
		}
	}
	if strings.TrimSpace(in.Price) != "" {
		price, err := number(in.Price)
		if err != nil || price < 0 {
			return p, refuse("The price per kWh must be a number of 0 or more, such as 0.30, or empty when charging here has no price of its own.")
		}
		p.PricePerKWh = &price
	}
	// The rules of package activity have the last word.
	all := append(slices.Clone(config), owner...)
	all = append(all, p)
	if err := activity.ValidatePlaces(all); err != nil {
		return p, refuse("The place cannot be used: %v.", err)
	}
	return all[len(all)-1], nil
}

// number reads a decimal number as people type it: a comma works as the
// decimal point.
func number(s string) (float64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ",", ".")
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}
