package setup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Step 9: the cars pick the config up and data arrives.

type verifyData struct {
	Host string
	Port int
	Cars []verifyCar
	Done bool
	// HomeAssistant says whether Home Assistant is connected to the
	// broker (state ok), not yet (wait), or that nobody can tell (none).
	HomeAssistant pollItem
}

type verifyCar struct {
	VIN, Name string
	Config    pollItem
	Errors    pollItem
	Record    pollItem
	Exp       string
	Removable bool
	// History links the car's page of drives and charges ("" until
	// there is one).
	History string
}

func (f *flow) verifyView() *verifyData {
	d := &verifyData{Port: f.cfg.Port, HomeAssistant: f.homeAssistantItem()}
	history := f.historyCars()
	f.store.read(func(st *state) {
		d.Host, d.Done = f.host(st), f.done(st, stepVerify)
		for _, v := range st.selected() {
			c := st.Cars[v.VIN]
			if c == nil {
				continue
			}
			vc := verifyCar{VIN: v.VIN, Name: v.name(), Removable: c.Config != nil && c.Status != carRemoved}
			vc.Config, vc.Errors, vc.Record = f.carItems(d.Host, v.VIN, c)
			if i := slices.IndexFunc(history, func(h historyCar) bool { return h.VIN == v.VIN }); i >= 0 {
				vc.History = history[i].Link
			}
			if c.Config != nil {
				vc.Exp = time.Unix(c.Config.Exp, 0).Local().Format("2 Jan 2006")
			}
			d.Cars = append(d.Cars, vc)
		}
	})
	return d
}

// verifyStatus asks Tesla about the cars when due and answers the page
// script.
func (f *flow) verifyStatus(ctx context.Context) pollAnswer {
	f.checkCars(ctx, false, false)
	d := f.verifyView()
	ans := pollAnswer{Done: d.Done, More: d.HomeAssistant.State == "wait", Items: []pollItem{d.HomeAssistant}}
	for _, c := range d.Cars {
		ans.Items = append(ans.Items, c.Config, c.Errors, c.Record)
	}
	return ans
}

// carItems describes one car's config, errors and records; host is the
// public hostname.
func (f *flow) carItems(host, vin string, c *car) (cfg, errs, rec pollItem) {
	cfg = pollItem{ID: "cfg-" + vin, Text: c.Explain}
	switch c.Status {
	case carActive:
		cfg.State = "ok"
	case carPending:
		cfg.State = "wait"
		if cfg.Text == "" {
			cfg.Text = "Sent to Tesla; asking whether the car has picked it up…"
		}
	case carRemoved:
		cfg.State, cfg.Text = "bad", "Streaming removed: the car no longer sends data to fleet2mqtt."
	default: // rejected, skipped
		cfg.State = "bad"
	}
	if c.Problem != "" {
		cfg.Text += " " + c.Problem
	}

	errs = pollItem{ID: "err-" + vin, State: "ok", Text: "The car reported no streaming error."}
	if len(c.Errors) > 0 {
		var b strings.Builder
		for i, e := range c.Errors {
			if i == 5 {
				fmt.Fprintf(&b, "…and %d more.", len(c.Errors)-5)
				break
			}
			msg := e.Message
			if msg == "" {
				msg = e.Name
			}
			fmt.Fprintf(&b, "%s (%s): %s\n", msg, teslaStamp(e.CreatedAt), e.Explain())
		}
		errs.State, errs.Text = "bad", strings.TrimSpace(b.String())
	}

	rec = pollItem{ID: "rec-" + vin, State: "wait",
		Text: "Waiting for the first record. The car connects to " + host + ":" + fmt.Sprint(f.cfg.Port) + " once it holds the config and is awake; opening the Tesla app wakes it."}
	if first, last := f.seen.times(vin); !first.IsZero() {
		rec.State = "ok"
		latest := stamp(last)
		if first.Local().YearDay() == last.Local().YearDay() && first.Local().Year() == last.Local().Year() {
			latest, _, _ = strings.Cut(latest, " on ") // the same day: the time says it
		}
		rec.Text = "First record arrived " + stamp(first) + "; latest " + latest + "."
	}
	return cfg, errs, rec
}

// homeAssistantItem says whether Home Assistant is connected to the
// broker, from its birth message (Deps.HomeAssistantSeen), and what to do
// when it is not.
func (f *flow) homeAssistantItem() pollItem {
	it := pollItem{ID: "home-assistant"}
	if f.deps.HomeAssistantSeen == nil {
		it.State, it.Text = "none", "fleet2mqtt cannot tell from here whether Home Assistant is connected to its MQTT broker. In Home Assistant, Settings → Devices & services should list the MQTT integration, connected to this broker, and a device for each car."
		return it
	}
	if at, ok := f.deps.HomeAssistantSeen(); ok {
		it.State, it.Text = "ok", "Home Assistant is connected to this MQTT broker: it said it was online "+stamp(at)+". Each car appears in Home Assistant as a device with its signals."
		return it
	}
	it.State, it.Text = "wait", "Home Assistant has not connected to this MQTT broker yet (no “online” on homeassistant/status since fleet2mqtt started). In Home Assistant, add the MQTT integration (Settings → Devices & services → Add integration → MQTT) with this computer's address, the broker's port (1883 unless mqtt.listen says otherwise) and a user of the broker; keep its discovery and birth message on, as they are by default. This page notices by itself once it connects."
	return it
}

// stamp is a moment as the page shows it: date, time and time zone, in
// the zone of this computer.
func stamp(t time.Time) string {
	t = t.Local()
	zone, _ := t.Zone()
	if zone == "" || zone[0] == '+' || zone[0] == '-' {
		zone = "UTC" + t.Format("-07:00")
	}
	return "at " + t.Format("15:04:05") + " " + zone + " on " + t.Format("2 Jan 2006")
}

// teslaStamp is a time Tesla sent (RFC 3339, or Unix seconds or
// milliseconds) as stamp shows it, or as Tesla sent it when it is neither.
func teslaStamp(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return strings.TrimPrefix(stamp(t), "at ")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		if n > 1e12 {
			return strings.TrimPrefix(stamp(time.UnixMilli(n)), "at ")
		}
		return strings.TrimPrefix(stamp(time.Unix(n, 0)), "at ")
	}
	return s
}

// checkCars asks Tesla about the config and streaming errors of each car
// with a pushed config (only pending ones when pendingOnly), at most once
// per Timing.TeslaPoll per car unless force is set.
func (f *flow) checkCars(ctx context.Context, pendingOnly, force bool) {
	now := f.timing.Now()
	var due []string
	f.store.update(func(st *state) error {
		for _, v := range st.selected() {
			c := st.Cars[v.VIN]
			if c == nil || c.Config == nil || c.Status == carRemoved || c.Status == carSkipped {
				continue
			}
			if pendingOnly && c.Status != carPending {
				continue
			}
			if force || now.Sub(c.CheckedAt) >= f.timing.TeslaPoll {
				due = append(due, v.VIN)
				c.CheckedAt = now // one question at a time per car
			}
		}
		return errNoSave // saved with the answers
	})
	if len(due) == 0 {
		return
	}
	owner, err := f.owner()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	for _, vin := range due {
		vc, err := owner.TelemetryConfig(ctx, vin)
		var streamErrs []fleetapi.StreamError
		if err == nil {
			streamErrs, err = owner.TelemetryErrors(ctx, vin)
		}
		if err != nil {
			f.teslaFailed(err)
		}
		f.logSaveError(f.store.update(func(st *state) error {
			c := st.Cars[vin]
			if c == nil || c.Config == nil {
				return errNoSave
			}
			if err != nil {
				c.Problem = "Could not ask Tesla about the car: " + fleetapi.Explain(err)
			} else {
				c.Problem = ""
				c.Explain = vc.Explain()
				c.Errors = streamErrs
				switch vc.State {
				case fleetapi.ConfigActive:
					c.Status = carActive
				case fleetapi.ConfigRejected:
					c.Status = carRejected
				default:
					c.Status = carPending
				}
			}
			st.noteOwnerRegion(owner)
			return nil
		}))
	}
}

// removeConfig deletes a car's streaming config at Tesla and returns the
// car's name.
func (f *flow) removeConfig(ctx context.Context, vin string) (name string, err error) {
	var pushed bool
	f.store.read(func(st *state) {
		pushed = st.Cars[vin] != nil
		if v := st.vehicle(vin); v != nil {
			name = v.name()
		}
	})
	if !pushed {
		return "", errNoConfig
	}
	owner, err := f.owner()
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
		defer cancel()
		err = owner.DeleteTelemetryConfig(ctx, vin)
	}
	if err != nil {
		f.teslaFailed(err)
		return "", err
	}
	err = f.store.update(func(st *state) error {
		if c := st.Cars[vin]; c != nil {
			c.Config, c.Status, c.Explain, c.Problem, c.Errors = nil, carRemoved, "", "", nil
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	f.log.Info("setup: streaming config removed", "vin", vin)
	return name, nil
}

// verifyStep serves step 9, and stopping a car's streaming.
type verifyStep struct{ *site }

func (s verifyStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /verify", s.page)
	mux.HandleFunc("GET /verify-status", s.status)
	mux.HandleFunc("POST /remove", s.remove)
}

func (s verifyStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepVerify) {
		return
	}
	s.flow.checkCars(r.Context(), false, false)
	s.render(rw, r, http.StatusOK, "verify", &page{Step: stepVerify, Data: s.flow.verifyView()})
}

// status answers the page script while it waits.
func (s verifyStep) status(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepVerify) {
		return
	}
	writeJSON(rw, http.StatusOK, s.flow.verifyStatus(r.Context()))
}

// remove deletes a car's streaming config.
func (s verifyStep) remove(rw http.ResponseWriter, r *http.Request) {
	name, err := s.flow.removeConfig(r.Context(), r.PostFormValue("vin"))
	switch {
	case errors.Is(err, errNoConfig):
		http.Error(rw, "no config was pushed to this car", http.StatusNotFound)
	case err != nil:
		s.render(rw, r, statusOf(err), "verify", &page{Step: stepVerify, Problem: problemOf(err), Data: s.flow.verifyView()})
	default:
		s.flash(r, "Streaming stopped for "+name+". Push the config again to resume.")
		redirect(rw, steps[stepVerify].path)
	}
}
