package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/internal/streamcost"
)

// fakeActivity is Deps.Activity with sessions, positions and estimates
// of the test's choosing; it keeps the owner's places it is given.
type fakeActivity struct {
	mu       sync.Mutex
	off      bool
	loc      *time.Location
	sessions []activity.Session // newest first
	months   []history.Month
	pos      map[string]Position
	config   []activity.Place
	owner    []activity.Place
	setErr   error
	sets     int
	est      map[string]streamcost.Estimate
}

func (f *fakeActivity) Cars() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var vins []string
	for _, s := range f.sessions {
		vins = append(vins, s.VIN)
	}
	for vin := range f.est {
		vins = append(vins, vin)
	}
	slices.Sort(vins)
	return slices.Compact(vins)
}

func (f *fakeActivity) Sessions(vin string, kind activity.Kind, limit int) ([]activity.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, ErrHistoryOff
	}
	var out []activity.Session
	for _, s := range f.sessions {
		if s.VIN == vin && s.Kind == kind && len(out) < limit {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeActivity) Monthly(vin string) ([]history.Month, error) {
	if f.off {
		return nil, ErrHistoryOff
	}
	return f.months, nil
}

func (f *fakeActivity) Export(w io.Writer, vin string, format ExportFormat) error {
	if f.off {
		return ErrHistoryOff
	}
	for _, s := range f.sessions {
		if s.VIN == vin {
			fmt.Fprintf(w, "%s %s %s>%s\n", format, s.Kind, s.StartPlace, s.EndPlace)
		}
	}
	return nil
}

func (f *fakeActivity) TimeZone() *time.Location { return f.loc }

func (f *fakeActivity) Position(vin string) (Position, bool) {
	p, ok := f.pos[vin]
	return p, ok
}

func (f *fakeActivity) ConfigPlaces() []activity.Place { return f.config }

func (f *fakeActivity) SetOwnerPlaces(_ context.Context, places []activity.Place) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return ErrHistoryOff
	}
	if f.setErr != nil {
		return f.setErr
	}
	f.owner = slices.Clone(places)
	f.sets++
	return nil
}

func (f *fakeActivity) ownerPlaces() []activity.Place {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.owner)
}

func (f *fakeActivity) StreamingEstimate(vin string) (streamcost.Estimate, bool) {
	e, ok := f.est[vin]
	return e, ok
}

func fp(v float64) *float64 { return &v }

// newFakeActivity has one car (testVIN) with a drive Home → Work and a
// charge at Home in March 2026, parked at Work, in Europe/Berlin.
func newFakeActivity(t *testing.T) *fakeActivity {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	price := 0.3
	return &fakeActivity{
		loc: loc,
		sessions: []activity.Session{
			{Kind: activity.KindCharge, VIN: testVIN, Start: time.Date(2026, 3, 14, 20, 1, 0, 0, time.UTC), End: time.Date(2026, 3, 14, 23, 0, 0, 0, time.UTC),
				DurationMin: 179, StartPlace: "Home", EndPlace: "Home", EnergyUsedKWh: fp(30), EnergyAddedKWh: fp(27.6), Cost: fp(5), Currency: "EUR"},
			{Kind: activity.KindDrive, VIN: testVIN, Start: time.Date(2026, 3, 14, 7, 1, 0, 0, time.UTC), End: time.Date(2026, 3, 14, 7, 13, 0, 0, time.UTC),
				DurationMin: 12, StartPlace: "Home", EndPlace: "Work", DistanceKm: fp(9.98), EnergyUsedKWh: fp(2)},
		},
		months: []history.Month{{Month: "2026-03", Drives: 1, DistanceKm: 9.98, DriveMinutes: 12, DriveEnergyKWh: 2, Charges: 1, EnergyAddedKWh: 27.6, EnergyUsedKWh: 30, Cost: 5}},
		pos:    map[string]Position{testVIN: {Latitude: 52.52, Longitude: 13.552, Place: "Work"}},
		config: []activity.Place{{Name: "Home", Latitude: 52.52, Longitude: 13.405, Radius: 150, PricePerKWh: &price}},
		est: map[string]streamcost.Estimate{testVIN: {VIN: testVIN, MonthlyDollars: 1.23, SignalsPerDay: 5000, ObservedHours: 5.5,
			Top: []streamcost.SignalCount{{Signal: "Location", PerDay: 3000, MonthlyDollars: 0.74}, {Signal: "VehicleSpeed", PerDay: 2000, MonthlyDollars: 0.49}}}},
	}
}

// TestHistoryPage: the car's page lists its drive and charge with times
// in the activity's zone, places, figures and cost, the month's totals,
// the downloads, the measured streaming cost and the places; only for a
// logged-in owner.
func TestHistoryPage(t *testing.T) {
	fa := newFakeActivity(t)
	h := newHarness(t, harnessOptions{activity: fa})

	// Behind the password, like every page.
	h.expectRedirect(h.get("/history?vin="+testVIN), "login")
	if r := h.get("/history.csv?vin=" + testVIN); r.status == http.StatusOK || strings.Contains(r.body, "drive") {
		t.Fatalf("the download without logging in: %d %s", r.status, r.body)
	}
	h.login()

	// The nav leads there, and the list of cars to the car.
	r := h.get("/app")
	h.expectPage(r, http.StatusOK, `href="history">Drives &amp; charges</a>`)
	h.expectPage(h.get("/history"), http.StatusOK, `href="history?vin=`+testVIN+`"`)

	r = h.get("/history?vin=" + testVIN)
	h.expectPage(r, http.StatusOK,
		"times in Europe/Berlin",
		"Sat 14 Mar 2026, 08:01 CET", "Home → Work", "10.0 km", "12 min", "2.0 kWh", // the drive
		"Sat 14 Mar 2026, 21:01 CET", "2 h 59 min", "27.6 kWh", "5.00 EUR", // the charge
		"March 2026",
		`href="history.csv?vin=`+testVIN+`"`, `href="history.json?vin=`+testVIN+`"`,
		"About $1.23 a month (5,000 signals a day, measured over the last 5.5 hours).", "<code>Location</code>", "3,000", "$0.74",
		"The car is at <b>Work</b> now.", `value="52.520000"`, `value="13.552000"`, // the add form, prefilled
		"From the configuration file", "52.520000, 13.405000 · 150 m · 0.3 per kWh",
	)
	if strings.Contains(r.body, `data-label="From → to">Home → Home`) {
		t.Error("a charge at one place reads as a trip")
	}

	// A car the page knows nothing of.
	h.expectPage(h.get("/history?vin=5YJ3E1EA7KF999999"), http.StatusNotFound)
}

// TestHistoryExport: the downloads carry a file name and the car's
// sessions in the format asked for.
func TestHistoryExport(t *testing.T) {
	fa := newFakeActivity(t)
	h := newHarness(t, harnessOptions{activity: fa})
	h.login()
	for format, ctype := range map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"} {
		r := h.get("/history." + format + "?vin=" + testVIN)
		h.expectPage(r, http.StatusOK, format+" drive Home>Work", format+" charge Home>Home")
		if got := r.header.Get("Content-Type"); got != ctype {
			t.Errorf("%s: Content-Type %q", format, got)
		}
		if got, want := r.header.Get("Content-Disposition"), `attachment; filename="fleet2mqtt-`+testVIN+`-history.`+format+`"`; got != want {
			t.Errorf("%s: Content-Disposition %q, want %q", format, got, want)
		}
	}
	if r := h.get("/history.csv?vin=5YJ3E1EA7KF999999"); r.status != http.StatusNotFound {
		t.Errorf("download of an unknown car: %d", r.status)
	}
}

// TestHistoryOff: without activity the page says so, offers no places
// and no download, and still shows the streaming cost.
func TestHistoryOff(t *testing.T) {
	fa := newFakeActivity(t)
	fa.off = true
	h := newHarness(t, harnessOptions{activity: fa})
	h.login()
	r := h.get("/history?vin=" + testVIN)
	h.expectPage(r, http.StatusOK, "activity.enabled is false", "About $1.23 a month")
	for _, absent := range []string{"Last drives", "Add the car", "history.csv"} {
		if strings.Contains(r.body, absent) {
			t.Errorf("page with activity off shows %q", absent)
		}
	}
	if r := h.get("/history.csv?vin=" + testVIN); r.status != http.StatusConflict || !strings.Contains(r.body, "activity.enabled is false") {
		t.Errorf("download with activity off: %d %s", r.status, r.body)
	}
}

// TestNoActivity: without Deps.Activity there is no page and no link.
func TestNoActivity(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.login()
	if r := h.get("/app"); strings.Contains(r.body, "Drives &amp; charges") {
		t.Error("nav links a page that does not exist")
	}
	h.expectPage(h.get("/history?vin="+testVIN), http.StatusNotFound)
	h.expectPage(h.get("/history"), http.StatusNotFound)
}

// TestAddPlace: the car's position becomes a place: applied at once,
// kept in the setup state (0600) for the next start, listed with a
// remove button; refusals are in plain words and change nothing.
func TestAddPlace(t *testing.T) {
	fa := newFakeActivity(t)
	h := newHarness(t, harnessOptions{activity: fa})
	h.login()
	h.get("/history?vin=" + testVIN)
	add := func(form url.Values) response {
		form.Set("action", "add")
		if form.Get("latitude") == "" {
			form.Set("latitude", "52.520000")
			form.Set("longitude", "13.552000")
		}
		return h.post("/places?vin="+testVIN, form)
	}
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"name": {"  "}}, "Give the place a name, such as Home or Work."},
		{url.Values{"name": {"home"}}, "The configuration file already has a place called “Home”: choose another name."},
		{url.Values{"name": {"Work"}, "radius": {"-5"}}, "The radius must be a number of metres between 1 and 100000, such as 100."},
		{url.Values{"name": {"Work"}, "radius": {"lots"}}, "The radius must be a number of metres between 1 and 100000, such as 100."},
		{url.Values{"name": {"Work"}, "price": {"-0.1"}}, "The price per kWh must be a number of 0 or more"},
		{url.Values{"name": {"Work"}, "latitude": {"91"}, "longitude": {"13"}}, "The latitude must be a number of degrees between -90 and 90"},
		{url.Values{"name": {"Work"}, "latitude": {"0"}, "longitude": {"0"}}, "The position 0, 0 is in the sea off Africa"},
	} {
		r := add(c.form)
		h.expectPage(r, http.StatusUnprocessableEntity, c.want, `value="`+c.form.Get("name")+`"`)
	}
	if fa.sets != 0 || len(h.statePlaces()) != 0 {
		t.Fatalf("refused places were applied (%d) or kept (%v)", fa.sets, h.statePlaces())
	}

	h.expectRedirect(add(url.Values{"name": {" Work "}, "radius": {"200"}, "price": {"0,25"}}), "history?vin="+testVIN)
	want := activity.Place{Name: "Work", Latitude: 52.52, Longitude: 13.552, Radius: 200, PricePerKWh: fp(0.25)}
	if got := fa.ownerPlaces(); len(got) != 1 || !samePlace(got[0], want) {
		t.Fatalf("applied places %+v", got)
	}
	if got := h.statePlaces(); len(got) != 1 || !samePlace(got[0], want) {
		t.Fatalf("kept places %+v", got)
	}
	info, err := os.Stat(filepath.Join(h.dir, "setup", stateFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", info.Mode(), err)
	}
	r := h.get("/history?vin=" + testVIN)
	h.expectPage(r, http.StatusOK, "“Work” is a place now", "Added here", "52.520000, 13.552000 · 200 m · 0.25 per kWh",
		`name="name" value="Work"`, "Remove")
	// The default radius, and a second place with the same name refused.
	h.expectPage(add(url.Values{"name": {"WORK"}}), http.StatusUnprocessableEntity, "There is already a place called “Work”")
	h.expectRedirect(add(url.Values{"name": {"Gym"}}), "history?vin="+testVIN)
	if got := h.statePlaces(); len(got) != 2 || got[1].Radius != activity.DefaultRadius || got[1].PricePerKWh != nil {
		t.Fatalf("kept places %+v", got)
	}

	// What fleet2mqtt refuses is said and not kept.
	fa.setErr = errors.New("places[3].name: too odd")
	h.expectPage(add(url.Values{"name": {"Odd"}}), http.StatusUnprocessableEntity, "The places cannot be used: places[3].name: too odd")
	fa.setErr = nil
	if got := h.statePlaces(); len(got) != 2 {
		t.Fatalf("a refused place was kept: %+v", got)
	}

	// Removing.
	h.expectRedirect(h.post("/places?vin="+testVIN, url.Values{"action": {"remove"}, "name": {"Work"}}), "history?vin="+testVIN)
	if got := fa.ownerPlaces(); len(got) != 1 || got[0].Name != "Gym" {
		t.Fatalf("applied after remove %+v", got)
	}
	h.expectPage(h.post("/places?vin="+testVIN, url.Values{"action": {"remove"}, "name": {"Home"}}), http.StatusUnprocessableEntity,
		"There is no place called “Home” among the places added on this page")

	// The next start reads them back.
	got, err := OwnerPlaces(h.dir)
	if err != nil || len(got) != 1 || got[0].Name != "Gym" {
		t.Fatalf("OwnerPlaces: %+v %v", got, err)
	}
}

// TestAddPlaceWithoutPosition: a car that sent no location gets no form,
// but a word on how to get one.
func TestAddPlaceWithoutPosition(t *testing.T) {
	fa := newFakeActivity(t)
	fa.pos = nil
	h := newHarness(t, harnessOptions{activity: fa})
	h.login()
	r := h.get("/history?vin=" + testVIN)
	h.expectPage(r, http.StatusOK, "fleet2mqtt has no position of this car yet")
	if strings.Contains(r.body, "Add the car's current position") {
		t.Error("the add form shows without a position")
	}
}

// TestOwnerPlacesFresh: no setup state yet is no places; a broken one is
// an error that names the file.
func TestOwnerPlacesFresh(t *testing.T) {
	dir := t.TempDir()
	if p, err := OwnerPlaces(dir); err != nil || p != nil {
		t.Fatalf("fresh: %v %v", p, err)
	}
	os.MkdirAll(filepath.Join(dir, "setup"), 0o700)
	os.WriteFile(filepath.Join(dir, "setup", stateFile), []byte("{"), 0o600)
	if _, err := OwnerPlaces(dir); err == nil || !strings.Contains(err.Error(), stateFile) {
		t.Fatalf("broken state: %v", err)
	}
}

// TestMeasuredCost: the signal step shows each car's measured cost next
// to the bound of the selection.
func TestMeasuredCost(t *testing.T) {
	fa := newFakeActivity(t)
	h := newHarness(t, harnessOptions{activity: fa})
	d := h.w.flow.fieldsView(nil)
	if len(d.Measured) != 1 || d.Measured[0].Text != "about $1.23 a month (5,000 signals a day, measured over the last 5.5 hours)." ||
		d.Measured[0].Top != "Most sent: Location, VehicleSpeed." {
		t.Fatalf("measured %+v", d.Measured)
	}
	// And the car's page the bound of the saved selection for one car.
	h.w.flow.store.update(func(st *state) error {
		st.IntervalSeconds, st.Fields = 60, presetSelection(presets[0], 60).config()
		return nil
	})
	if v := h.w.flow.costView(testVIN); !strings.Contains(v.Configured, "a month per car") || strings.Contains(v.Configured, "cars:") {
		t.Fatalf("configured %q", v.Configured)
	}
}

// statePlaces reads the places from the state file as the next start
// would.
func (h *harness) statePlaces() []activity.Place {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.dir, "setup", stateFile))
	if err != nil {
		return nil
	}
	var st struct {
		Places []activity.Place `json:"places"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		h.t.Fatal(err)
	}
	return st.Places
}

func samePlace(a, b activity.Place) bool {
	ap, bp := -1.0, -1.0
	if a.PricePerKWh != nil {
		ap = *a.PricePerKWh
	}
	if b.PricePerKWh != nil {
		bp = *b.PricePerKWh
	}
	return a.Name == b.Name && a.Latitude == b.Latitude && a.Longitude == b.Longitude && a.Radius == b.Radius && ap == bp
}

// TestBrowserHistory walks a car's page on a phone in Chromium: from the
// nav to the car, its tables laid out one card per row without sideways
// scrolling, and the car's position added as a place.
func TestBrowserHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	fa := newFakeActivity(t)
	h := newHarness(t, harnessOptions{activity: fa})
	ctx := newBrowser(t)
	b := &browserRun{t: t, ctx: ctx, h: h, base: h.srv.URL + "/"}
	b.do("log in", chromedp.Navigate(b.base+"history"), chromedp.WaitVisible(chromedp.CSS("#password")),
		chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
		chromedp.Click(chromedp.CSS("main form button")),
		chromedp.WaitVisible(chromedp.CSS("nav.links a")))
	b.do("the nav", chromedp.Click(chromedp.CSS("nav.links a")), chromedp.WaitVisible(chromedp.CSS(`main a[href^="history?vin="]`)))
	b.do("the car", chromedp.Click(chromedp.CSS(`main a[href^="history?vin="]`)), chromedp.WaitVisible(chromedp.CSS("#drives")))
	b.screenshot("history")
	if got := b.text("#drives td[data-label='From → to']"); got != "Home → Work" {
		t.Errorf("drive's route %q", got)
	}
	layout, err := chromedp.Run(ctx, chromedp.Evaluate[[]any](`[document.documentElement.scrollWidth, window.innerWidth,
		getComputedStyle(document.querySelector('#drives thead')).position,
		getComputedStyle(document.querySelector('#drives td'), '::before').content]`))
	if err != nil {
		t.Fatal(err)
	}
	if layout[0].(float64) > layout[1].(float64) || layout[2] != "absolute" || layout[3] != `"Started"` {
		t.Errorf("phone layout (scroll width, width, header position, label): %v", layout)
	}
	b.do("add a place", chromedp.SendKeys(chromedp.CSS("#place-name"), "Office"),
		chromedp.Click(chromedp.CSS("#places form button")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.waitText(".flash", "“Office” is a place now")
	b.waitText("#places", "Added here")
	b.screenshot("history-place-added")
	if got := fa.ownerPlaces(); len(got) != 1 || got[0].Name != "Office" || got[0].Latitude != 52.52 || got[0].Longitude != 13.552 {
		t.Errorf("applied places %+v", got)
	}
	t.Logf("screenshots in %s", t.ArtifactDir())
}

// TestVerifyLinksHistory: once a chosen car has sent a record, the last
// step links its page, and the car is named as on the account.
func TestVerifyLinksHistory(t *testing.T) {
	fa := newFakeActivity(t)
	fa.sessions, fa.est = nil, nil // nothing kept or measured yet
	h := newHarness(t, harnessOptions{activity: fa})
	h.w.flow.store.update(func(st *state) error {
		st.Vehicles = []*vehicle{{VIN: testVIN, DisplayName: "Red Rocket", Selected: true}}
		st.Cars = map[string]*car{testVIN: {Status: carActive}}
		return nil
	})
	if d := h.w.flow.verifyView(); len(d.Cars) != 1 || d.Cars[0].History != "" {
		t.Fatalf("before a record: %+v", d.Cars)
	}
	if h.w.flow.historyShown() {
		t.Error("the nav links the cars' page before any car streamed")
	}
	h.w.RecordSeen(testVIN, time.Now())
	if d := h.w.flow.verifyView(); len(d.Cars) != 1 || d.Cars[0].History != "history?vin="+testVIN {
		t.Fatalf("after a record: %+v", d.Cars)
	}
	if c, ok := h.w.flow.historyCar(testVIN); !ok || c.Name != "Red Rocket" {
		t.Errorf("car %+v %v", c, ok)
	}
}
