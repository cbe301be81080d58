package setup

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

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

// buildConfig makes the config to push at now.
func (f *flow) buildConfig(st *state, now time.Time) (fleetapi.TelemetryConfig, error) {
	cfg := fleetapi.TelemetryConfig{
		Hostname:       f.host(st),
		Port:           f.cfg.Port,
		Exp:            now.Add(fleetapi.ConfigLifetime).Unix(),
		Fields:         maps.Clone(st.Fields),
		AlertTypes:     alertTypes,
		DeliveryPolicy: fleetapi.DeliveryPolicyLatest,
	}
	if st.oldFirmware() != "" {
		for name, fc := range cfg.Fields {
			fc.MinimumDelta = nil
			cfg.Fields[name] = fc
		}
	}
	ca, err := f.serverCA()
	cfg.CA = ca
	return cfg, err
}

// serverCA returns the CA chain the cars must trust.
func (f *flow) serverCA() (string, error) {
	if f.deps.ServerCAPEM == nil {
		return "", errNoCA
	}
	ca := f.deps.ServerCAPEM()
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

// pushView shows the config as it would be pushed now, and each car's
// last push.
func (f *flow) pushView() *pushData {
	now := f.timing.Now()
	d := &pushData{}
	f.store.read(func(st *state) {
		cfg, err := f.buildConfig(st, now)
		d.Host, d.Port, d.Exp = cfg.Hostname, cfg.Port, time.Unix(cfg.Exp, 0).Local().Format("2 Jan 2006")
		d.Fields, d.Interval, d.AlertTypes = len(cfg.Fields), seconds(st.IntervalSeconds), strings.Join(cfg.AlertTypes, ", ")
		if err != nil {
			d.CAProblem = explain(err).Text
		} else {
			d.CA = describeCA(cfg.CA)
		}
		if old := st.oldFirmware(); old != "" {
			d.DeltaNote = "Minimum changes are left out: the software of " + old + " is too old for them."
		}
		for _, v := range st.selected() {
			pc := pushCar{VIN: v.VIN, Name: v.name()}
			if c := st.Cars[v.VIN]; c != nil {
				pc.Status = c.Status
				if c.Status == carSkipped {
					pc.Skip = c.Skipped.Explain()
				}
			}
			d.Cars = append(d.Cars, pc)
		}
	})
	return d
}

// push signs the config and sends it to the selected cars. It reports
// whether Tesla skipped some of them (not all: that is an error).
func (f *flow) push(ctx context.Context) (skippedSome bool, err error) {
	now := f.timing.Now()
	var cfg fleetapi.TelemetryConfig
	var vins []string
	f.store.read(func(st *state) {
		cfg, err = f.buildConfig(st, now)
		for _, v := range st.selected() {
			vins = append(vins, v.VIN)
		}
	})
	key := f.store.appKey()
	var owner *fleetapi.Owner
	if err == nil {
		owner, err = f.owner()
	}
	if err == nil && key == nil {
		err = errNoKey
	}
	if err == nil {
		err = cfg.Validate(now)
	}
	if err != nil {
		return false, unready(err)
	}
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	res, err := owner.ConfigureTelemetry(ctx, key.private, cfg, vins...)
	if err != nil {
		f.teslaFailed(err)
		f.log.Info("setup: config push failed", "err", err)
		return false, err
	}
	err = f.store.update(func(st *state) error {
		st.noteOwnerRegion(owner)
		st.recordPush(&cfg, res, vins, now)
		return nil
	})
	if f.deps.Announcer != nil {
		var fields []telemetry.Field
		for _, name := range slices.Sorted(maps.Keys(cfg.Fields)) {
			if field, ok := telemetry.FieldByName(name); ok {
				fields = append(fields, field)
			}
		}
		for _, vin := range vins {
			if _, skipped := res.Skipped[vin]; !skipped {
				f.deps.Announcer.SetStreaming(vin, fields)
			}
		}
	}
	if err != nil {
		return false, err
	}
	f.log.Info("setup: config pushed", "updated", res.UpdatedVehicles, "skipped", len(res.Skipped))
	if res.UpdatedVehicles == 0 || len(res.Skipped) == len(vins) {
		return false, &stepError{kind: notReady, text: "Tesla sent the config to none of the cars; see why below."}
	}
	return len(res.Skipped) > 0, nil
}

// pushStep serves step 8.
type pushStep struct{ *site }

func (s pushStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /push", s.page)
	mux.HandleFunc("POST /push", s.submit)
}

func (s pushStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPush) {
		return
	}
	s.render(rw, r, http.StatusOK, "push", &page{Step: stepPush, Data: s.flow.pushView()})
}

func (s pushStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPush) {
		return
	}
	skippedSome, err := s.flow.push(r.Context())
	if err != nil {
		s.render(rw, r, statusOf(err), "push", &page{Step: stepPush, Problem: problemOf(err), Data: s.flow.pushView()})
		return
	}
	if skippedSome {
		s.flash(r, "Some cars were skipped; the reasons are below.")
	}
	redirect(rw, steps[stepVerify].path)
}
