package setup

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The Commands section: which cars can be commanded (the key paired, the
// protocol they speak, from fleet_status), the command categories as the
// configuration sets them, a "flash the lights" test per car through the
// command engine, and what commands and wake-ups cost this month next to
// the streaming estimate. It is not a step of the wizard: it opens once
// the cars are chosen, from the pairing step on.
//
// Whether fleet2mqtt may command the cars is a decision of the
// configuration file (the commands section), not of this page: the
// broker's ACL for the command topics and Home Assistant's controls are
// made from it at the start, and the add-on's options write it. The page
// shows it and names the keys that change it.

// commandsWho is the engine's log name for commands sent from this page.
const commandsWho = "setup page"

// flashTimeout bounds the test command, a wake-up included.
const flashTimeout = 2 * time.Minute

type commandsData struct {
	// On: commands are on (Deps.Commands set and commands.enabled).
	On bool
	// Wired: fleet2mqtt runs a command engine (Deps.Commands set).
	Wired bool
	// MissingScopes are the command scopes the owner's login lacks.
	MissingScopes []string
	Categories    []commandCategory
	Cars          []commandsCar
	// FlashAllowed: the alerts category is on, so the test may run.
	FlashAllowed bool
	// Month is the calendar month (UTC) of the usage, "2026-03".
	Month string
	// UsageText sums the cars' command costs against Tesla's credit;
	// Streaming is the streaming estimate of the chosen signals.
	UsageText, Streaming string
}

type commandCategory struct {
	Name, Commands string
	On             bool
	// Key is the configuration key that turns it on or off.
	Key string
}

type commandsCar struct {
	VIN, Name string
	Key       pollItem
	// Protocol says how the car is commanded.
	Protocol string
	// Flashable: paired, so a test command can reach the car.
	Flashable       bool
	Commands, Wakes int
	// Cost is what Commands and Wakes cost, "$0.03".
	Cost                string
	ProtocolID, UsageID string
}

// commandCategoryOrder is the order of the categories on the page.
var commandCategoryOrder = []string{command.CategoryCharging, command.CategoryClimate, command.CategorySecurity, command.CategoryAccess, command.CategoryAlerts}

// categoryCommands lists a category's commands for the page.
func categoryCommands(cat string) string {
	var names []string
	for _, n := range command.Names() {
		if command.CategoryOf(n) == cat {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// missingCommandScopes names the command scopes the stored owner token
// was not granted (nil when it has them, there is none, or it does not
// say).
func (f *flow) missingCommandScopes() []string {
	tok, err := f.store.tokens().LoadToken()
	if err != nil || tok == nil {
		return nil
	}
	return fleetapi.MissingScopes(tok, fleetapi.CommandScopes)
}

// commandCost is what Tesla bills for u, in US$.
func commandCost(u command.Usage) float64 {
	return float64(u.Commands)/fleetapi.CommandsPerDollar + float64(u.Wakes)/fleetapi.WakesPerDollar
}

func (f *flow) commandsView() *commandsData {
	d := &commandsData{Wired: f.deps.Commands != nil, MissingScopes: f.missingCommandScopes(),
		Month: command.Month(f.timing.Now())}
	settings := command.DefaultSettings()
	var usage map[string]command.Usage
	if d.Wired {
		settings = f.deps.Commands.Settings()
		usage = f.deps.Commands.Usage(d.Month)
	}
	d.On = d.Wired && settings.Enabled
	d.FlashAllowed = d.On && settings.Allows("flash_lights") == nil
	for _, cat := range commandCategoryOrder {
		d.Categories = append(d.Categories, commandCategory{Name: cat, Commands: categoryCommands(cat),
			On: settings.Categories.On(cat), Key: "commands.categories." + cat})
	}
	var total command.Usage
	var cars int
	f.store.read(func(st *state) {
		for _, v := range st.selected() {
			cars++
			u := usage[v.VIN]
			total.Commands += u.Commands
			total.Wakes += u.Wakes
			c := commandsCar{VIN: v.VIN, Name: v.name(), Key: commandKeyItem(v), Flashable: v.Paired,
				Commands: u.Commands, Wakes: u.Wakes, Cost: fmt.Sprintf("$%.2f", commandCost(u)),
				ProtocolID: "cmd-proto-" + v.VIN, UsageID: "cmd-usage-" + v.VIN}
			switch {
			case v.ProtocolRequired == nil:
				c.Protocol = "Not known yet: fleet2mqtt finds out with the first command."
			case *v.ProtocolRequired:
				c.Protocol = "Signed commands (the Vehicle Command Protocol), end to end from fleet2mqtt to the car."
			default:
				c.Protocol = "This car predates the Vehicle Command Protocol: fleet2mqtt sends it Tesla's REST commands."
			}
			d.Cars = append(d.Cars, c)
		}
		if len(st.Fields) > 0 {
			d.Streaming = "Streaming, for comparison: " + estimateOf(selectionOf(st.IntervalSeconds, st.Fields), cars).Text
		}
	})
	d.UsageText = fmt.Sprintf("This month so far (%s, UTC): %d commands and %d wake-ups, worth $%.2f against Tesla's $%.2f monthly credit. Tesla bills 1,000 commands per $1 (session handshakes included) and 50 wake-ups per $1.",
		d.Month, total.Commands, total.Wakes, commandCost(total), fleetapi.MonthlyCreditDollars)
	return d
}

// commandKeyItem says whether a car holds the key commands are signed
// with.
func commandKeyItem(v *vehicle) pollItem {
	it := pollItem{ID: "cmd-key-" + v.VIN}
	if v.Paired {
		it.State, it.Text = "ok", "Key paired: the car accepts commands signed by fleet2mqtt."
	} else {
		it.State, it.Text = "bad", "The key is not paired with this car: commands are refused until it is (see the pairing step)."
	}
	return it
}

// flashLights runs the test command on a car: flash_lights, through the
// engine and its rules.
func (f *flow) flashLights(ctx context.Context, vin string) (string, error) {
	if f.deps.Commands == nil {
		return "", &stepError{kind: notReady, text: "Vehicle commands are off: set commands.enabled: true in the configuration and restart fleet2mqtt."}
	}
	var known bool
	var name string
	f.store.read(func(st *state) {
		if v := st.vehicle(vin); v != nil && v.Selected {
			known, name = true, v.name()
		}
	})
	if !known {
		return "", &stepError{kind: badRequest, text: "That car is not one of the cars chosen in step 5."}
	}
	if err := f.deps.Commands.Settings().Allows("flash_lights"); err != nil {
		return "", &stepError{kind: notReady, text: "The test was not sent: " + err.Error() + "."}
	}
	ctx, cancel := context.WithTimeout(ctx, flashTimeout)
	defer cancel()
	res := f.deps.Commands.Execute(ctx, command.Request{VIN: vin, Name: "flash_lights", Who: commandsWho})
	if !res.OK {
		return "", &stepError{kind: remoteFault, text: "The lights of " + name + " did not flash: " + res.Reason, err: res.Err}
	}
	msg := fmt.Sprintf("%s flashed its lights (%s", name, res.Duration.Round(time.Millisecond))
	if res.Woken {
		msg += ", woken for it"
	}
	return msg + "). Commands reach the car.", nil
}

// tellCommands passes on to the command engine which cars predate the
// command protocol.
func (f *flow) tellCommands(status *fleetapi.FleetStatus) {
	if f.deps.Commands == nil || status == nil {
		return
	}
	for vin, info := range status.VehicleInfo {
		f.deps.Commands.SetProtocolRequired(vin, info.VehicleCommandProtocolRequired)
	}
}

// commandsStep serves the Commands section.
type commandsStep struct{ *site }

func (s commandsStep) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /commands", s.page)
	mux.HandleFunc("POST /commands", s.submit)
}

func (s commandsStep) page(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPairing) {
		return
	}
	err := s.flow.pollPairing(r.Context(), false)
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
	}
	s.render(rw, r, status, "commands", &page{Step: -1, Title: "Commands", Problem: explain(err), Data: s.flow.commandsView()})
}

// submit runs the test button: POST action=flash, vin.
func (s commandsStep) submit(rw http.ResponseWriter, r *http.Request) {
	if s.gate(rw, r, stepPairing) {
		return
	}
	if r.PostForm.Get("action") != "flash" {
		err := &stepError{kind: badRequest, text: "Unknown action."}
		s.render(rw, r, statusOf(err), "commands", &page{Step: -1, Title: "Commands", Problem: problemOf(err), Data: s.flow.commandsView()})
		return
	}
	msg, err := s.flow.flashLights(r.Context(), r.PostForm.Get("vin"))
	if err != nil {
		s.render(rw, r, statusOf(err), "commands", &page{Step: -1, Title: "Commands", Problem: problemOf(err), Data: s.flow.commandsView()})
		return
	}
	s.flash(r, msg)
	redirect(rw, "commands")
}
