package setup

import (
	"context"
	"html/template"
	"net/http"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/internal/qrcode"
)

// Step 6: the virtual key. The owner opens the pairing link on the phone
// with the Tesla app (a QR code carries it there) and approves the key in
// the car; the page polls fleet_status until the car reports it.

type pairingData struct {
	Host string
	Cars []pairingCar
	Done bool
}

type pairingCar struct {
	VIN, Name string
	Link      string
	QR        template.HTML
	Status    pollItem
}

func (f *flow) pairingView() *pairingData {
	d := &pairingData{}
	f.store.read(func(st *state) {
		d.Host, d.Done = f.host(st), f.done(st, stepPairing)
		for _, v := range st.selected() {
			d.Cars = append(d.Cars, pairingCar{VIN: v.VIN, Name: v.name(), Status: pairingItem(v)})
		}
	})
	for i := range d.Cars {
		c := &d.Cars[i]
		c.Link = fleetapi.PairingURL(d.Host, c.VIN)
		if code, err := qrcode.Encode(c.Link); err == nil {
			// The SVG comes from our encoder, with the title escaped there.
			c.QR = template.HTML(code.SVG(4, "QR code of the pairing link for "+c.Name))
		}
	}
	return d
}

// pairingStatus is what the page script shows while it waits.
func (f *flow) pairingStatus(ctx context.Context) pollAnswer {
	err := f.pollPairing(ctx, false)
	var ans pollAnswer
	f.store.read(func(st *state) {
		ans.Done = f.done(st, stepPairing)
		for _, v := range st.selected() {
			ans.Items = append(ans.Items, pairingItem(v))
		}
	})
	if err != nil {
		ans.Problem = fleetapi.Explain(err)
	}
	return ans
}

// pairingItem is one car's pairing status for the page.
func pairingItem(v *vehicle) pollItem {
	item := pollItem{ID: "pair-" + v.VIN}
	switch {
	case v.Paired:
		item.Text, item.State = "Paired: the car holds fleet2mqtt's key.", "ok"
	case v.SafetyToggle != nil && *v.SafetyToggle:
		item.Text, item.State = "This car streams without a virtual key: third-party data streaming is allowed on its safety screen.", "ok"
	case v.SafetyToggle != nil:
		item.Text, item.State = "This older Model S/X needs no virtual key but must allow it: in the car, Controls → Safety → “Allow Third-Party App Data Streaming”.", "wait"
	default:
		item.Text, item.State = "Waiting for the car to report the key (approve it on the car's screen with your key card).", "wait"
	}
	if v.Firmware != "" {
		item.Text += " Software " + v.Firmware + "."
	}
	return item
}

// pollPairing asks Tesla which selected cars hold the key, at most once
// per Timing.TeslaPoll unless force is set.
func (f *flow) pollPairing(ctx context.Context, force bool) error {
	f.pairMu.Lock()
	if !force && f.timing.Now().Sub(f.pairPoll) < f.timing.TeslaPoll {
		err := f.pairErr
		f.pairMu.Unlock()
		return err
	}
	f.pairPoll = f.timing.Now()
	f.pairMu.Unlock()

	var vins []string
	f.store.read(func(st *state) {
		for _, v := range st.selected() {
			vins = append(vins, v.VIN)
		}
	})
	owner, err := f.owner()
	if err != nil || len(vins) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, teslaTimeout)
	defer cancel()
	status, err := owner.FleetStatus(ctx, vins...)
	f.pairMu.Lock()
	f.pairErr = err
	f.pairMu.Unlock()
	if err != nil {
		f.teslaFailed(err)
		return err
	}
	err = f.store.update(func(st *state) error {
		st.noteOwnerRegion(owner)
		for _, vin := range vins {
			v := st.vehicle(vin)
			if v == nil {
				continue
			}
			v.Paired = status.Paired(vin)
			if info, ok := status.VehicleInfo[vin]; ok {
				v.Firmware = info.FirmwareVersion
				v.SafetyToggle = info.SafetyScreenStreamingToggleEnabled
				required := info.VehicleCommandProtocolRequired
				v.ProtocolRequired = &required
			}
		}
		return nil
	})
	f.tellCommands(status)
	return err
}

// pairingStep serves step 6.
type pairingStep struct{ *site }

func (s pairingStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /pairing", s.page)
	mux.HandleFunc("GET /pairing-status", s.status)
}

func (s pairingStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPairing) {
		return
	}
	err := s.flow.pollPairing(r.Context(), true)
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
	}
	s.render(rw, r, status, "pairing", &page{Step: stepPairing, Problem: explain(err), Data: s.flow.pairingView()})
}

// status answers the page script while it waits.
func (s pairingStep) status(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPairing) {
		return
	}
	writeJSON(rw, http.StatusOK, s.flow.pairingStatus(r.Context()))
}
