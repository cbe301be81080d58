package setup

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/discovery"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// The field picker: the telemetry catalog grouped by category, presets, and
// a minimum delta for numeric signals so that noise does not cost money.

// defaultInterval is the interval_seconds of a new selection.
const defaultInterval = 60

// categoryOrder is the order and naming of the catalog's categories on the
// page.
var categoryOrder = []struct{ id, label string }{
	{"battery", "Battery"},
	{"charging", "Charging"},
	{"drive", "Driving"},
	{"location", "Location"},
	{"climate", "Climate"},
	{"doors_windows", "Doors and windows"},
	{"security", "Security"},
	{"tires", "Tires"},
	{"software", "Software"},
	{"media", "Media"},
	{"other", "Other"},
	{"diagnostic", "Diagnostics"},
}

// essentials are the signals most Home Assistant dashboards show: charge,
// range, position, charging, locks, doors, windows, climate and tires.
var essentials = []string{
	"Soc", "BatteryLevel", "EstBatteryRange", "RatedRange", "EnergyRemaining",
	"Odometer", "Location", "Gear", "VehicleSpeed",
	"DetailedChargeState", "ChargeLimitSoc", "ChargeAmps", "ACChargingPower", "DCChargingPower",
	"TimeToFullCharge", "ChargePortDoorOpen",
	"Locked", "DoorState", "FdWindow", "FpWindow", "RdWindow", "RpWindow", "SentryMode",
	"InsideTemp", "OutsideTemp", "HvacPower",
	"TpmsPressureFl", "TpmsPressureFr", "TpmsPressureRl", "TpmsPressureRr",
	"Version",
}

// defaultDeltas are the minimum deltas offered for numeric signals, in the
// car's units: changes smaller than these are not worth a signal.
var defaultDeltas = map[string]float64{
	"Soc": 1, "BatteryLevel": 1, "ChargeLimitSoc": 1,
	"EstBatteryRange": 1, "RatedRange": 1, "IdealBatteryRange": 1, "Odometer": 1,
	"EnergyRemaining": 0.1, "VehicleSpeed": 1,
	"ACChargingPower": 0.5, "DCChargingPower": 0.5, "ChargeAmps": 1, "TimeToFullCharge": 0.1,
	"InsideTemp": 0.5, "OutsideTemp": 0.5,
	"TpmsPressureFl": 0.05, "TpmsPressureFr": 0.05, "TpmsPressureRl": 0.05, "TpmsPressureRr": 0.05,
	"MilesToArrival": 1, "MinutesToArrival": 1,
}

// preset is a ready-made selection.
type preset struct {
	ID, Label, Description string
	names                  []string
}

// presets lists the selections offered, built from the catalog once.
var presets = buildPresets()

func buildPresets() []preset {
	var charging, driving, everything []string
	for _, info := range selectable() {
		everything = append(everything, info.Name)
		if info.Diagnostic {
			continue
		}
		switch info.Category {
		case "charging", "battery":
			charging = append(charging, info.Name)
		case "drive", "location", "tires":
			driving = append(driving, info.Name)
		}
	}
	driving = append(driving, "Soc", "EstBatteryRange")
	return []preset{
		{"essentials", "Home Assistant essentials", "Charge, range, position, charging, locks, doors, windows, climate and tires.", essentials},
		{"charging", "Charging", "Everything about the battery and charging.", charging},
		{"driving", "Driving", "Speed, gear, position, navigation and tires.", driving},
		{"everything", "Everything", "Every signal the car knows. Costs the most.", everything},
	}
}

func presetByID(id string) (preset, bool) {
	for _, p := range presets {
		if p.ID == id {
			return p, true
		}
	}
	return preset{}, false
}

// selectable returns the catalog's signals that a config may name.
func selectable() []telemetry.FieldInfo {
	var out []telemetry.FieldInfo
	for _, info := range telemetry.Catalog() {
		if info.Field != telemetry.FieldUnknown {
			out = append(out, info)
		}
	}
	return out
}

// takesDelta reports whether a signal accepts minimum_delta.
func takesDelta(info telemetry.FieldInfo) bool {
	return info.Kind.Numeric() || info.Kind == telemetry.KindLocation
}

// selection is a field picker form, read or about to be shown.
type selection struct {
	Interval int
	// Resend is resend_interval_seconds for every chosen signal: the car
	// sends a signal again this often even when it did not change (0:
	// only changes).
	Resend int
	// Fields maps chosen signals to their minimum delta (nil for none).
	Fields map[string]*float64
}

// config turns the selection into the fields of a streaming config.
func (s selection) config() map[string]fleetapi.FieldConfig {
	out := make(map[string]fleetapi.FieldConfig, len(s.Fields))
	for name, d := range s.Fields {
		out[name] = fleetapi.FieldConfig{IntervalSeconds: s.Interval, MinimumDelta: d, ResendIntervalSeconds: s.Resend}
	}
	return out
}

// selectionOf reads a stored selection.
func selectionOf(interval int, fields map[string]fleetapi.FieldConfig) selection {
	s := selection{Interval: interval, Fields: make(map[string]*float64, len(fields))}
	if s.Interval < 1 {
		s.Interval = defaultInterval
	}
	for name, fc := range fields {
		s.Fields[name] = fc.MinimumDelta
		s.Resend = max(s.Resend, fc.ResendIntervalSeconds)
	}
	return s
}

// is reports whether the selection's signals are exactly p's.
func (s selection) is(p preset) bool {
	if len(s.Fields) != len(p.names) {
		return false
	}
	for _, n := range p.names {
		if _, ok := s.Fields[n]; !ok {
			return false
		}
	}
	return true
}

// presetSelection is a preset with the default deltas.
func presetSelection(p preset, interval int) selection {
	s := selection{Interval: interval, Fields: make(map[string]*float64, len(p.names))}
	for _, name := range p.names {
		s.Fields[name] = defaultDelta(name)
	}
	return s
}

func defaultDelta(name string) *float64 {
	if d, ok := defaultDeltas[name]; ok {
		return &d
	}
	return nil
}

// parseSelection reads the field picker form: interval, the ticked field
// names and their delta.<Name> inputs. It returns every problem found.
func parseSelection(form map[string][]string) (selection, []string) {
	var problems []string
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	s := selection{Fields: make(map[string]*float64)}
	iv, err := strconv.Atoi(get("interval"))
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("The interval %q is not a whole number of seconds.", get("interval")))
	case iv < 1 || iv > 86400:
		problems = append(problems, fmt.Sprintf("The interval must be from 1 to 86400 seconds, not %d.", iv))
	}
	s.Interval = max(iv, 1)
	if raw := get("resend"); raw != "" && raw != "0" {
		rs, err := strconv.Atoi(raw)
		switch {
		case err != nil || rs < 1 || rs > 86400:
			problems = append(problems, fmt.Sprintf("Resend unchanged values every … seconds must be empty (never) or a whole number from 1 to 86400, not %q.", raw))
		case rs < s.Interval:
			problems = append(problems, fmt.Sprintf("Resending unchanged values every %d s is more often than the interval (%d s); a car sends a signal at most once per interval. Leave it empty or use at least %d.", rs, s.Interval, s.Interval))
		default:
			s.Resend = rs
		}
	}
	for _, name := range form["field"] {
		f, ok := telemetry.FieldByName(name)
		if !ok || f == telemetry.FieldUnknown {
			problems = append(problems, fmt.Sprintf("%q is not a signal of the catalog.", name))
			continue
		}
		info, _ := telemetry.Lookup(f)
		s.Fields[name] = nil
		raw := get("delta." + name)
		if raw == "" || !takesDelta(info) {
			continue
		}
		d, err := strconv.ParseFloat(strings.ReplaceAll(raw, ",", "."), 64)
		if err != nil || d < 0 || math.IsInf(d, 0) || math.IsNaN(d) {
			problems = append(problems, fmt.Sprintf("The minimum change of %s must be a number of at least 0, not %q.", name, raw))
			continue
		}
		if d > 0 {
			s.Fields[name] = &d
		}
	}
	if len(s.Fields) == 0 && len(problems) == 0 {
		problems = append(problems, "Choose at least one signal, or one of the presets.")
	}
	return s, problems
}

// estimateNote says what the estimate's bound means; the page shows it
// once, under the picker.
const estimateNote = "The estimate is a bound: it assumes every signal changes all the time. Real cars send far less, since a signal goes out only when it changes (by its minimum change, where set) and a parked car sends almost nothing."

// estimate is the monthly cost of a selection, for the page.
type estimate struct {
	Text string `json:"text"`
	// Over is set when the bound exceeds Tesla's monthly credit.
	Over bool `json:"over"`
}

// estimateOf bounds the signals cars send with sel in a month, against
// Tesla's monthly credit.
func estimateOf(sel selection, cars int) estimate {
	signals, dollars := fleetapi.EstimateMonthlySignals(sel.config())
	cars = max(cars, 1)
	total := signals * int64(cars)
	totalDollars := dollars * float64(cars)
	var b strings.Builder
	fmt.Fprintf(&b, "%d signals at most every %s: up to %s signals a month per car", len(sel.Fields), seconds(sel.Interval), thousands(signals))
	if cars > 1 {
		fmt.Fprintf(&b, " (%d cars: %s)", cars, thousands(total))
	}
	fmt.Fprintf(&b, ", worth $%.2f against Tesla's $%.2f monthly credit.", totalDollars, fleetapi.MonthlyCreditDollars)
	// The page says once, next to it, that this is a bound (estimateNote).
	return estimate{Text: b.String(), Over: totalDollars > fleetapi.MonthlyCreditDollars}
}

func seconds(n int) string {
	switch {
	case n == 1:
		return "second"
	case n%3600 == 0:
		return strconv.Itoa(n/3600) + " h"
	case n%60 == 0:
		return strconv.Itoa(n/60) + " min"
	}
	return strconv.Itoa(n) + " s"
}

// thousands writes n with thousands separators: 1,296,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fieldsData is the field picker page.
type fieldsData struct {
	Interval int
	Resend   string // as shown in the input; "" for never
	// EstimateNote says what the estimate's bound means.
	EstimateNote string
	Presets      []presetView
	Groups       []fieldGroup
	Estimate     estimate
	Cars         int
	DeltaNote    string
	// Measured is what each car's stream costs as measured (next to
	// Estimate, the bound of the selection).
	Measured []measuredCost
}

type presetView struct {
	ID, Label, Description string
	// Active: the selection is exactly this preset's signals.
	Active bool
	// Names is the preset's JSON list of signals and Deltas its default
	// deltas, for the page script.
	Names, Deltas string
}

type fieldGroup struct {
	Label    string
	Fields   []fieldView
	Selected int
}

type fieldView struct {
	// Name is the protocol name (the MQTT topic's last part), Label the
	// entity name Home Assistant shows (discovery.EntityName).
	Name, Label, Description, Unit string
	Checked                        bool
	Delta                          bool   // takes a minimum delta
	DeltaValue                     string // as shown in the input
}

// fieldsView lays out the picker for sel.
func fieldsView(sel selection, cars int) *fieldsData {
	d := &fieldsData{Interval: sel.Interval, Estimate: estimateOf(sel, cars), Cars: cars, EstimateNote: estimateNote}
	if sel.Resend > 0 {
		d.Resend = strconv.Itoa(sel.Resend)
	}
	for _, p := range presets {
		deltas := make(map[string]float64)
		for _, n := range p.names {
			if v := defaultDelta(n); v != nil {
				deltas[n] = *v
			}
		}
		d.Presets = append(d.Presets, presetView{ID: p.ID, Label: p.Label, Description: p.Description,
			Active: sel.is(p), Names: jsonText(p.names), Deltas: jsonText(deltas)})
	}
	byCat := make(map[string][]telemetry.FieldInfo)
	for _, info := range selectable() {
		byCat[info.Category] = append(byCat[info.Category], info)
	}
	for _, c := range categoryOrder {
		infos := byCat[c.id]
		delete(byCat, c.id)
		d.addGroup(c.label, infos, sel)
	}
	// Categories the catalog may add later land at the end.
	var rest []string
	for cat := range byCat {
		rest = append(rest, cat)
	}
	slices.Sort(rest)
	for _, cat := range rest {
		d.addGroup(cat, byCat[cat], sel)
	}
	return d
}

func (d *fieldsData) addGroup(label string, infos []telemetry.FieldInfo, sel selection) {
	if len(infos) == 0 {
		return
	}
	g := fieldGroup{Label: label}
	for _, info := range infos {
		delta, checked := sel.Fields[info.Name]
		v := fieldView{Name: info.Name, Label: discovery.EntityName(info.Name), Description: info.Description, Unit: info.Unit, Checked: checked, Delta: takesDelta(info)}
		if checked {
			g.Selected++
		}
		if v.Delta {
			if !checked {
				delta = defaultDelta(info.Name)
			}
			if delta != nil {
				v.DeltaValue = strconv.FormatFloat(*delta, 'f', -1, 64)
			}
		}
		g.Fields = append(g.Fields, v)
	}
	d.Groups = append(d.Groups, g)
}
