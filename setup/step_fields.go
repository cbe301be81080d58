package setup

import (
	"net/http"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 7: the signals, with presets and the monthly estimate. The
// catalog, presets and estimate are in fields.go.

// fieldsView lays out the picker for sel (the saved selection, or the
// first preset, when nil), with a note when a car's software ignores
// minimum deltas.
func (f *flow) fieldsView(sel *selection) *fieldsData {
	var cars int
	var old string
	f.store.read(func(st *state) {
		if sel == nil {
			s := selectionOf(st.IntervalSeconds, st.Fields)
			if len(st.Fields) == 0 {
				s = presetSelection(presets[0], defaultInterval)
			}
			sel = &s
		}
		cars = len(st.selected())
		old = st.oldFirmware()
	})
	d := fieldsView(*sel, cars)
	d.Measured = f.measuredCosts()
	if old != "" {
		d.DeltaNote = "The software of " + old + " is older than " + fleetapi.MinimumDeltaFirmware + " and ignores minimum changes: they are left out of the config until it is updated."
	}
	return d
}

// saveFields keeps the selection.
func (f *flow) saveFields(sel selection) error {
	return f.store.update(func(st *state) error {
		st.IntervalSeconds = sel.Interval
		st.Fields = sel.config()
		return nil
	})
}

// estimate is the monthly estimate of sel for the selected cars.
func (f *flow) estimate(sel selection) estimate {
	var cars int
	f.store.read(func(st *state) { cars = len(st.selected()) })
	return estimateOf(sel, cars)
}

// fieldsStep serves step 7.
type fieldsStep struct{ *site }

func (s fieldsStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /fields", s.page)
	mux.HandleFunc("POST /fields", s.submit)
	mux.HandleFunc("POST /estimate", s.estimate)
}

func (s fieldsStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepFields) {
		return
	}
	s.render(rw, r, http.StatusOK, "fields", &page{Step: stepFields, Data: s.flow.fieldsView(nil)})
}

func (s fieldsStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepFields) {
		return
	}
	// A preset button without the page script: show its selection.
	if p, ok := presetByID(r.PostFormValue("preset")); ok {
		sel, _ := parseSelection(r.PostForm)
		ps := presetSelection(p, sel.Interval)
		ps.Resend = sel.Resend
		s.render(rw, r, http.StatusOK, "fields", &page{Step: stepFields, Data: s.flow.fieldsView(&ps)})
		return
	}
	sel, problems := parseSelection(r.PostForm)
	if len(problems) > 0 {
		s.render(rw, r, http.StatusUnprocessableEntity, "fields", &page{Step: stepFields,
			Problem: problemText("%s", strings.Join(problems, " ")), Data: s.flow.fieldsView(&sel)})
		return
	}
	if err := s.flow.saveFields(sel); err != nil {
		s.render(rw, r, http.StatusInternalServerError, "fields", &page{Step: stepFields, Problem: explain(err), Data: s.flow.fieldsView(&sel)})
		return
	}
	redirect(rw, steps[stepPush].path)
}

// estimate answers the page script with the estimate of the form as it
// stands.
func (s fieldsStep) estimate(rw http.ResponseWriter, r *http.Request) {
	sel, _ := parseSelection(r.PostForm)
	writeJSON(rw, http.StatusOK, s.flow.estimate(sel))
}

// measuredCost is one car's stream as measured, for the signal step.
type measuredCost struct {
	Name, Text, Top, Link string
}

// measuredCosts are the cars' measured streaming costs (Deps.Activity).
func (f *flow) measuredCosts() []measuredCost {
	var out []measuredCost
	for _, c := range f.historyCars() {
		e, ok := f.deps.Activity.StreamingEstimate(c.VIN)
		if !ok {
			continue
		}
		m := measuredCost{Name: c.Name, Link: c.Link,
			Text: "about " + measured(e)}
		var top []string
		for _, s := range e.Top {
			top = append(top, s.Signal)
		}
		if len(top) > 0 {
			m.Top = "Most sent: " + strings.Join(top, ", ") + "."
		}
		out = append(out, m)
	}
	return out
}
