package setup

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 3: partner registration in the chosen regions, each verified by
// reading back the key Tesla holds for the domain.

type regionView struct {
	Region  fleetapi.Region
	Name    string
	Chosen  bool
	Done    bool
	Problem string
}

type registerData struct {
	Host    string
	Regions []regionView
	AllDone bool
}

// registerView is the step with chosen ticked (the saved choice when nil)
// and each region's problem.
func (f *flow) registerView(chosen []fleetapi.Region, problems map[fleetapi.Region]string) *registerData {
	d := &registerData{}
	f.store.read(func(st *state) {
		if chosen == nil {
			chosen = f.regions(st)
			// Offer the owner's region when the login found it unregistered.
			if o := st.Owner; o != nil && !containsRegion(chosen, o.Region) {
				chosen = append(slices.Clone(chosen), o.Region)
			}
		}
		d.Host = f.host(st)
		for _, r := range fleetapi.Regions {
			d.Regions = append(d.Regions, regionView{
				Region: r, Name: r.Name(), Chosen: containsRegion(chosen, r),
				Done: f.registered(st, r), Problem: problems[r],
			})
		}
		d.AllDone = f.done(st, stepRegister)
	})
	return d
}

// register registers the application in the chosen regions and reads
// back the key Tesla holds in each. problems says, per region, what went
// wrong there.
func (f *flow) register(ctx context.Context, chosen []fleetapi.Region) (problems map[fleetapi.Region]string, err error) {
	if len(chosen) == 0 {
		return nil, refuse("Choose at least one region: the one where your Tesla account and cars are.")
	}
	var host, id string
	f.store.update(func(st *state) error {
		// Saved with the registrations below; the client is built for
		// the chosen regions.
		st.Regions = chosen
		host = f.host(st)
		id, _ = f.credentials(st)
		return errNoSave
	})
	client, err := f.client()
	key := f.store.appKey()
	if err == nil && key == nil {
		err = errNoKey
	}
	if err != nil {
		return nil, unready(err)
	}

	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	problems = make(map[fleetapi.Region]string)
	done := make(map[fleetapi.Region]*registration)
	var failures []error
	for _, region := range chosen {
		_, err := client.RegisterPartner(ctx, region, host)
		if err == nil {
			err = client.CheckPartnerKey(ctx, region, host, &key.private.PublicKey)
		}
		if err != nil {
			problems[region] = fleetapi.Explain(err)
			failures = append(failures, err)
			f.log.Info("setup: partner registration failed", "region", region, "err", err)
			continue
		}
		done[region] = &registration{Domain: host, ClientID: id, PublicKey: key.hex, At: f.timing.Now()}
	}
	err = f.store.update(func(st *state) error {
		if st.Registered == nil {
			st.Registered = make(map[fleetapi.Region]*registration)
		}
		for region, reg := range done {
			st.Registered[region] = reg
		}
		return nil
	})
	switch {
	case err != nil:
		// The page has no place for it below the regions, and Tesla may
		// have registered them all: the local failure is what to fix
		// first.
		return problems, err
	case len(failures) > 0:
		return problems, &stepError{text: "Registration did not succeed in every chosen region; see below.", err: errors.Join(failures...)}
	}
	return problems, nil
}

// registerStep serves step 3.
type registerStep struct{ *site }

func (s registerStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /register", s.page)
	mux.HandleFunc("POST /register", s.submit)
}

func (s registerStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepRegister) {
		return
	}
	s.render(rw, r, http.StatusOK, "register", &page{Step: stepRegister, Data: s.flow.registerView(nil, nil)})
}

func (s registerStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepRegister) {
		return
	}
	chosen, err := parseRegions(r.PostForm["region"])
	if err != nil {
		chosen = nil
	}
	problems, err := s.flow.register(r.Context(), chosen)
	if err != nil {
		s.render(rw, r, statusOf(err), "register", &page{Step: stepRegister,
			Problem: problemOf(err), Data: s.flow.registerView(chosen, problems)})
		return
	}
	redirect(rw, steps[stepOwner].path)
}
