package setup

import (
	"context"
	"net/http"
	"slices"
)

// Step 5: the account's cars; the owner chooses which ones stream.

type vehiclesData struct {
	Vehicles []vehicleView
}

type vehicleView struct {
	VIN, Name, State string
	Driver           bool
	Selected         bool
}

func (f *flow) vehiclesView() *vehiclesData {
	d := &vehiclesData{}
	f.store.read(func(st *state) {
		anySelected := len(st.selected()) > 0
		for _, v := range st.Vehicles {
			d.Vehicles = append(d.Vehicles, vehicleView{
				VIN: v.VIN, Name: v.name(), State: v.State, Driver: v.AccessType == "DRIVER",
				Selected: v.Selected || !anySelected,
			})
		}
	})
	return d
}

// listVehicles asks Tesla for the account's cars and merges them into the
// state, keeping what is known about cars seen before.
func (f *flow) listVehicles(ctx context.Context) error {
	owner, err := f.owner()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	list, err := owner.Vehicles(ctx)
	if err != nil {
		f.teslaFailed(err)
		return err
	}
	type named struct{ vin, name string }
	var names []named
	err = f.store.update(func(st *state) error {
		st.noteOwnerRegion(owner)
		merged := make([]*vehicle, 0, len(list))
		for _, tv := range list {
			v := st.vehicle(tv.VIN)
			if v == nil {
				v = &vehicle{VIN: tv.VIN}
			}
			v.DisplayName, v.State, v.AccessType = tv.DisplayName, tv.State, tv.AccessType
			merged = append(merged, v)
			if v.DisplayName != "" {
				names = append(names, named{v.VIN, v.DisplayName})
			}
		}
		st.Vehicles = merged
		return nil
	})
	if f.deps.Announcer != nil {
		for _, n := range names {
			f.deps.Announcer.SetDisplayName(n.vin, n.name)
		}
	}
	return err
}

// selectVehicles chooses the cars that stream.
func (f *flow) selectVehicles(vins []string) error {
	n := 0
	err := f.store.update(func(st *state) error {
		for _, v := range st.Vehicles {
			v.Selected = slices.Contains(vins, v.VIN)
			if v.Selected {
				n++
			}
		}
		return nil
	})
	if err == nil && n == 0 {
		return refuse("Choose at least one car.")
	}
	return err
}

// vehiclesStep serves step 5.
type vehiclesStep struct{ *site }

func (s vehiclesStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /vehicles", s.page)
	mux.HandleFunc("POST /vehicles", s.submit)
}

// page lists the cars afresh from Tesla.
func (s vehiclesStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepVehicles) {
		return
	}
	var prob *problem
	status := http.StatusOK
	err := s.flow.listVehicles(r.Context())
	d := s.flow.vehiclesView()
	switch {
	case err != nil:
		prob, status = problemOf(err), statusOf(err)
	case len(d.Vehicles) == 0:
		prob = problemText("Tesla lists no car on this account. Log in with the Tesla account that owns the car (or to which it is shared).")
	}
	s.render(rw, r, status, "vehicles", &page{Step: stepVehicles, Problem: prob, Data: d})
}

func (s vehiclesStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepVehicles) {
		return
	}
	if err := s.flow.selectVehicles(r.PostForm["vin"]); err != nil {
		s.render(rw, r, statusOf(err), "vehicles", &page{Step: stepVehicles, Problem: problemOf(err), Data: s.flow.vehiclesView()})
		return
	}
	redirect(rw, steps[stepPairing].path)
}
