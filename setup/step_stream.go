package setup

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Step 7: the signals, with presets and the monthly estimate.

// fieldsPageData lays out the picker for sel, with a note when a car's
// software ignores minimum deltas.
func (w *Wizard) fieldsPageData(sel *selection) *fieldsData {
	w.mu.Lock()
	if sel == nil {
		s := selectionOf(w.st.IntervalSeconds, w.st.Fields)
		if len(w.st.Fields) == 0 {
			s = presetSelection(presets[0], defaultInterval)
		}
		sel = &s
	}
	cars := len(w.st.selected())
	old := w.oldFirmwareLocked()
	w.mu.Unlock()
	d := fieldsView(*sel, cars)
	if old != "" {
		d.DeltaNote = "The software of " + old + " is older than " + fleetapi.MinimumDeltaFirmware + " and ignores minimum changes: they are left out of the config until it is updated."
	}
	return d
}

// oldFirmwareLocked names a selected car whose software does not honour
// minimum_delta ("" when none is known to be too old).
func (w *Wizard) oldFirmwareLocked() string {
	for _, v := range w.st.selected() {
		if v.Firmware != "" && !fleetapi.FirmwareAtLeast(v.Firmware, fleetapi.MinimumDeltaFirmware) {
			return v.name()
		}
	}
	return ""
}

func (w *Wizard) handleFieldsPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepFields) {
		return
	}
	w.render(rw, r, http.StatusOK, "fields", &page{Step: stepFields, Data: w.fieldsPageData(nil)})
}

func (w *Wizard) handleFields(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepFields) {
		return
	}
	// A preset button without the page script: show its selection.
	if p, ok := presetByID(r.PostFormValue("preset")); ok {
		sel, _ := parseSelection(r.PostForm)
		s := presetSelection(p, sel.Interval)
		w.render(rw, r, http.StatusOK, "fields", &page{Step: stepFields, Data: w.fieldsPageData(&s)})
		return
	}
	sel, problems := parseSelection(r.PostForm)
	if len(problems) > 0 {
		w.render(rw, r, http.StatusUnprocessableEntity, "fields", &page{Step: stepFields,
			Problem: problemText("%s", strings.Join(problems, " ")), Data: w.fieldsPageData(&sel)})
		return
	}
	w.mu.Lock()
	w.st.IntervalSeconds = sel.Interval
	w.st.Fields = sel.config()
	err := w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil {
		w.render(rw, r, http.StatusInternalServerError, "fields", &page{Step: stepFields, Problem: explain(err), Data: w.fieldsPageData(&sel)})
		return
	}
	redirect(rw, steps[stepPush].path)
}

// handleEstimate answers the page script with the estimate of the form as
// it stands.
func (w *Wizard) handleEstimate(rw http.ResponseWriter, r *http.Request) {
	sel, _ := parseSelection(r.PostForm)
	w.mu.Lock()
	cars := len(w.st.selected())
	w.mu.Unlock()
	writeJSON(rw, http.StatusOK, estimateOf(sel, cars))
}

// Step 8: the signed config, pushed to the selected cars.

type pushData struct {
	Host       string
	Port       int
	CA         []caCert
	CAProblem  string
	Exp        string
	Fields     int
	Interval   string
	AlertTypes string
	DeltaNote  string
	Cars       []pushCar
}

type caCert struct {
	Subject, Expires string
}

type pushCar struct {
	VIN, Name string
	Status    string
	Skip      string
}

// alertTypes are the alert streams every config asks for.
var alertTypes = []string{"service"}

// buildConfigLocked makes the config to push at now.
func (w *Wizard) buildConfigLocked(now time.Time) (fleetapi.TelemetryConfig, error) {
	cfg := fleetapi.TelemetryConfig{
		Hostname:       w.hostLocked(),
		Port:           w.cfg.Port,
		Exp:            now.Add(fleetapi.ConfigLifetime).Unix(),
		Fields:         maps.Clone(w.st.Fields),
		AlertTypes:     alertTypes,
		DeliveryPolicy: fleetapi.DeliveryPolicyLatest,
	}
	if w.oldFirmwareLocked() != "" {
		for name, fc := range cfg.Fields {
			fc.MinimumDelta = nil
			cfg.Fields[name] = fc
		}
	}
	ca, err := w.serverCA()
	cfg.CA = ca
	return cfg, err
}

// serverCA returns the CA chain the cars must trust.
func (w *Wizard) serverCA() (string, error) {
	if w.deps.ServerCAPEM == nil {
		return "", errNoCA
	}
	ca := w.deps.ServerCAPEM()
	if len(strings.TrimSpace(string(ca))) == 0 {
		return "", errNoCA
	}
	return string(ca), nil
}

// describeCA lists the certificates of a PEM chain.
func describeCA(ca string) []caCert {
	var out []caCert
	rest := []byte(ca)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			out = append(out, caCert{Subject: "(unreadable certificate)"})
			continue
		}
		out = append(out, caCert{Subject: cert.Subject.String(), Expires: cert.NotAfter.Local().Format("2 Jan 2006")})
	}
}

func (w *Wizard) pushData() *pushData {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	cfg, err := w.buildConfigLocked(now)
	d := &pushData{
		Host: cfg.Hostname, Port: cfg.Port, Exp: time.Unix(cfg.Exp, 0).Local().Format("2 Jan 2006"),
		Fields: len(cfg.Fields), Interval: seconds(w.st.IntervalSeconds), AlertTypes: strings.Join(cfg.AlertTypes, ", "),
	}
	if err != nil {
		d.CAProblem = explain(err).Text
	} else {
		d.CA = describeCA(cfg.CA)
	}
	if old := w.oldFirmwareLocked(); old != "" {
		d.DeltaNote = "Minimum changes are left out: the software of " + old + " is too old for them."
	}
	for _, v := range w.st.selected() {
		pc := pushCar{VIN: v.VIN, Name: v.name()}
		if c := w.st.Cars[v.VIN]; c != nil {
			pc.Status = c.Status
			if c.Status == carSkipped {
				pc.Skip = c.Skipped.Explain()
			}
		}
		d.Cars = append(d.Cars, pc)
	}
	return d
}

func (w *Wizard) handlePushPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepPush) {
		return
	}
	w.render(rw, r, http.StatusOK, "push", &page{Step: stepPush, Data: w.pushData()})
}

func (w *Wizard) handlePush(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepPush) {
		return
	}
	fail := func(status int, p *problem) {
		w.render(rw, r, status, "push", &page{Step: stepPush, Problem: p, Data: w.pushData()})
	}
	w.mu.Lock()
	now := w.now()
	cfg, err := w.buildConfigLocked(now)
	key := w.key
	var vins []string
	for _, v := range w.st.selected() {
		vins = append(vins, v.VIN)
	}
	var owner *fleetapi.Owner
	if err == nil {
		owner, err = w.ownerLocked()
	}
	w.mu.Unlock()
	if err == nil && key == nil {
		err = errNoKey
	}
	if err == nil {
		err = cfg.Validate(now)
	}
	if err != nil {
		fail(http.StatusConflict, explain(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	res, err := owner.ConfigureTelemetry(ctx, key, cfg, vins...)
	if err != nil {
		w.teslaFailed(err)
		w.log.Info("setup: config push failed", "err", err)
		fail(teslaCallStatus(err), explain(err))
		return
	}
	w.mu.Lock()
	w.noteOwnerRegionLocked(owner)
	w.recordPushLocked(&cfg, res, vins, now)
	err = w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if w.deps.Announcer != nil {
		var fields []telemetry.Field
		for _, name := range slices.Sorted(maps.Keys(cfg.Fields)) {
			if f, ok := telemetry.FieldByName(name); ok {
				fields = append(fields, f)
			}
		}
		for _, vin := range vins {
			if _, skipped := res.Skipped[vin]; !skipped {
				w.deps.Announcer.SetStreaming(vin, fields)
			}
		}
	}
	if err != nil {
		fail(http.StatusInternalServerError, explain(err))
		return
	}
	w.log.Info("setup: config pushed", "updated", res.UpdatedVehicles, "skipped", len(res.Skipped))
	if res.UpdatedVehicles == 0 || len(res.Skipped) == len(vins) {
		fail(http.StatusConflict, problemText("Tesla sent the config to none of the cars; see why below."))
		return
	}
	if len(res.Skipped) > 0 {
		w.flash(r, "Some cars were skipped; the reasons are below.")
	}
	redirect(rw, steps[stepVerify].path)
}

// recordPushLocked notes the outcome of a push for each car.
func (w *Wizard) recordPushLocked(cfg *fleetapi.TelemetryConfig, res *fleetapi.PushResult, vins []string, now time.Time) {
	if w.st.Cars == nil {
		w.st.Cars = make(map[string]*car)
	}
	for _, vin := range vins {
		if reason, skipped := res.Skipped[vin]; skipped {
			prev := w.st.Cars[vin]
			c := &car{Status: carSkipped, Skipped: reason, Explain: reason.Explain()}
			if prev != nil && prev.Status == carActive {
				// The car keeps the config it had; say so and keep it.
				c.Config, c.PushedAt, c.Status = prev.Config, prev.PushedAt, carActive
				c.Problem = "The new config was not sent: " + reason.Explain()
			}
			w.st.Cars[vin] = c
			continue
		}
		w.st.Cars[vin] = &car{Config: cfg, PushedAt: now, Status: carPending}
	}
}

// Step 9: the cars pick the config up and data arrives.

type verifyData struct {
	Host string
	Port int
	Cars []verifyCar
	Done bool
}

type verifyCar struct {
	VIN, Name string
	Config    pollItem
	Errors    pollItem
	Record    pollItem
	Exp       string
	Removable bool
}

func (w *Wizard) verifyData() *verifyData {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := &verifyData{Host: w.hostLocked(), Port: w.cfg.Port, Done: w.doneLocked(stepVerify)}
	for _, v := range w.st.selected() {
		c := w.st.Cars[v.VIN]
		if c == nil {
			continue
		}
		vc := verifyCar{VIN: v.VIN, Name: v.name(), Removable: c.Config != nil && c.Status != carRemoved}
		vc.Config, vc.Errors, vc.Record = w.carItemsLocked(v.VIN, c)
		if c.Config != nil {
			vc.Exp = time.Unix(c.Config.Exp, 0).Local().Format("2 Jan 2006")
		}
		d.Cars = append(d.Cars, vc)
	}
	return d
}

// carItemsLocked describes one car's config, errors and records.
func (w *Wizard) carItemsLocked(vin string, c *car) (cfg, errs, rec pollItem) {
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
			fmt.Fprintf(&b, "%s (%s): %s\n", msg, e.CreatedAt, e.Explain())
		}
		errs.State, errs.Text = "bad", strings.TrimSpace(b.String())
	}

	rec = pollItem{ID: "rec-" + vin, State: "wait",
		Text: "Waiting for the first record. The car connects to " + w.hostLocked() + ":" + fmt.Sprint(w.cfg.Port) + " once it holds the config and is awake; opening the Tesla app wakes it."}
	if first, last := w.seenTimes(vin); !first.IsZero() {
		rec.State = "ok"
		rec.Text = "First record arrived at " + first.Local().Format("15:04:05") + "; latest at " + last.Local().Format("15:04:05") + "."
	}
	return cfg, errs, rec
}

func (w *Wizard) handleVerifyPage(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepVerify) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	w.checkCars(ctx, false, false)
	w.render(rw, r, http.StatusOK, "verify", &page{Step: stepVerify, Data: w.verifyData()})
}

// handleVerifyStatus answers the page script while it waits.
func (w *Wizard) handleVerifyStatus(rw http.ResponseWriter, r *http.Request) {
	if w.gate(rw, r, stepVerify) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
	defer cancel()
	w.checkCars(ctx, false, false)
	d := w.verifyData()
	ans := pollAnswer{Done: d.Done}
	for _, c := range d.Cars {
		ans.Items = append(ans.Items, c.Config, c.Errors, c.Record)
	}
	writeJSON(rw, http.StatusOK, ans)
}

// checkCars asks Tesla about the config and streaming errors of each car
// with a pushed config (only pending ones when pendingOnly), at most once
// per TeslaPollInterval per car unless force is set.
func (w *Wizard) checkCars(ctx context.Context, pendingOnly, force bool) {
	w.mu.Lock()
	now := w.now()
	var due []string
	for _, v := range w.st.selected() {
		c := w.st.Cars[v.VIN]
		if c == nil || c.Config == nil || c.Status == carRemoved || c.Status == carSkipped {
			continue
		}
		if pendingOnly && c.Status != carPending {
			continue
		}
		if force || now.Sub(c.CheckedAt) >= w.deps.TeslaPollInterval {
			due = append(due, v.VIN)
			c.CheckedAt = now // one question at a time per car
		}
	}
	owner, err := w.ownerLocked()
	w.mu.Unlock()
	if err != nil || len(due) == 0 {
		return
	}
	for _, vin := range due {
		vc, err := owner.TelemetryConfig(ctx, vin)
		var streamErrs []fleetapi.StreamError
		if err == nil {
			streamErrs, err = owner.TelemetryErrors(ctx, vin)
		}
		if err != nil {
			w.teslaFailed(err)
		}
		w.mu.Lock()
		c := w.st.Cars[vin]
		if c == nil || c.Config == nil {
			w.mu.Unlock()
			continue
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
		w.noteOwnerRegionLocked(owner)
		if err := w.st.save(join(w.dir, stateFile)); err != nil {
			w.log.Error("setup: save state", "err", err)
		}
		w.mu.Unlock()
	}
}

// handleRemove deletes a car's streaming config.
func (w *Wizard) handleRemove(rw http.ResponseWriter, r *http.Request) {
	vin := r.PostFormValue("vin")
	w.mu.Lock()
	c := w.st.Cars[vin]
	var name string
	if v := w.st.vehicle(vin); v != nil {
		name = v.name()
	}
	owner, err := w.ownerLocked()
	w.mu.Unlock()
	if c == nil {
		http.Error(rw, "no config was pushed to this car", http.StatusNotFound)
		return
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), teslaTimeout)
		defer cancel()
		err = owner.DeleteTelemetryConfig(ctx, vin)
	}
	if err != nil {
		w.teslaFailed(err)
		w.render(rw, r, teslaCallStatus(err), "verify", &page{Step: stepVerify, Problem: explain(err), Data: w.verifyData()})
		return
	}
	w.mu.Lock()
	c.Config, c.Status, c.Explain, c.Problem, c.Errors = nil, carRemoved, "", "", nil
	err = w.st.save(join(w.dir, stateFile))
	w.mu.Unlock()
	if err != nil {
		w.render(rw, r, http.StatusInternalServerError, "verify", &page{Step: stepVerify, Problem: explain(err), Data: w.verifyData()})
		return
	}
	w.log.Info("setup: streaming config removed", "vin", vin)
	w.flash(r, "Streaming stopped for "+name+". Push the config again to resume.")
	redirect(rw, steps[stepVerify].path)
}

// caHash identifies a CA chain, to notice when the served chain changes.
func caHash(ca string) [32]byte { return sha256.Sum256([]byte(strings.TrimSpace(ca))) }
