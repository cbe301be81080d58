package setup

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// testCommands is the real command engine as Deps.Commands, built on
// first use (the key and the login come from the wizard's steps), sending
// through the wizard's owner session as serve wires it.
type testCommands struct {
	settings command.Settings
	counters *command.Counters

	mu       sync.Mutex
	w        *Wizard
	dir      string
	engine   *command.Engine
	protocol map[string]bool // what SetProtocolRequired was told
}

func newTestCommands(enabled bool) *testCommands {
	s := command.DefaultSettings()
	s.Enabled = enabled
	return &testCommands{settings: s, counters: command.NewCounters(nil), protocol: map[string]bool{}}
}

// attach gives it the harness's wizard and data directory.
func (c *testCommands) attach(h *harness) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w, c.dir = h.w, h.dir
}

func (c *testCommands) get() (*command.Engine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine != nil {
		return c.engine, nil
	}
	key, err := fleetapi.LoadPrivateKey(KeyPath(c.dir))
	if err != nil {
		return nil, err
	}
	e, err := command.New(command.Config{Key: key, Transport: c.w.CommandTransport(nil), PairingDomain: testHost, Metrics: c.counters}, nil)
	if err != nil {
		return nil, err
	}
	for vin, req := range c.protocol {
		e.SetProtocolRequired(vin, req)
	}
	c.engine = e
	return e, nil
}

func (c *testCommands) Execute(ctx context.Context, req command.Request) command.Result {
	e, err := c.get()
	if err != nil {
		return command.Result{VIN: req.VIN, Command: req.Name, Reason: err.Error(), Err: err}
	}
	return e.Execute(ctx, req)
}

func (c *testCommands) Usage(month string) map[string]command.Usage { return c.counters.Usage(month) }

func (c *testCommands) SetProtocolRequired(vin string, required bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.protocol[vin] = required
	if c.engine != nil {
		c.engine.SetProtocolRequired(vin, required)
	}
}

func (c *testCommands) Settings() command.Settings { return c.settings }

func (c *testCommands) told(vin string) (required, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	required, ok = c.protocol[vin]
	return required, ok
}

// commandsHarness is a harness whose wizard has a command engine.
func commandsHarness(t *testing.T, cmds *testCommands, o harnessOptions) *harness {
	t.Helper()
	o.commands = cmds
	h := newHarness(t, o)
	cmds.attach(h)
	return h
}

func (h *harness) flashes(vin string) int {
	h.t.Helper()
	car := h.fake.Car(vin)
	if car == nil {
		h.t.Fatalf("the fake has no car %s", vin)
	}
	return car.State().Flashes
}

// TestCommandsSection: the paired car, its protocol, the categories with
// their keys, the flash test through the engine reaching the fake car,
// and the usage it cost.
func TestCommandsSection(t *testing.T) {
	cmds := newTestCommands(true)
	h := commandsHarness(t, cmds, harnessOptions{})
	h.throughPairing()

	r := h.get("/commands")
	h.expectPage(r, http.StatusOK, "Key paired", `id="flash-`+testVIN+`"`, "Signed commands", "commands.categories.access",
		`<li id="cat-access"><b>access</b>: off`, "Tesla bills 1,000 commands per $1")
	if strings.Contains(r.body, `id="scopes-missing"`) || strings.Contains(r.body, `id="commands-off"`) {
		t.Errorf("a fresh login has the command scopes and commands are on:\n%s", excerpt(r.body))
	}
	if strings.Contains(r.body, `id="flash-`+testVIN+`" disabled`) {
		t.Error("the flash button is disabled")
	}
	if !strings.Contains(r.body, `<li id="cat-access"><b>access</b>: off (<code>commands.categories.access</code>)<br><small>door_unlock, actuate_trunk, window_control</small>`) {
		t.Errorf("access is not shown off:\n%s", excerpt(r.body))
	}
	if req, ok := cmds.told(testVIN); !ok || !req {
		t.Errorf("the engine was not told that the car requires the protocol (%v %v)", req, ok)
	}

	h.expectRedirect(h.post("/commands", url.Values{"action": {"flash"}, "vin": {testVIN}}), "commands")
	if n := h.flashes(testVIN); n != 1 {
		t.Fatalf("the fake car flashed %d times, want 1", n)
	}
	u := cmds.Usage(command.Month(time.Now()))[testVIN]
	if u.Commands < 1 {
		t.Fatalf("usage %+v", u)
	}
	r = h.get("/commands")
	h.expectPage(r, http.StatusOK, "Red Rocket flashed its lights",
		`<tr id="cmd-usage-`+testVIN+`"><td>Red Rocket</td><td>`+strconv.Itoa(u.Commands)+`</td><td>0</td>`)

	// A car not chosen in the setup is refused without a command.
	h.expectPage(h.post("/commands", url.Values{"action": {"flash"}, "vin": {"5YJ3E1EA7KF999999"}}), http.StatusBadRequest, "not one of the cars")
}

// TestCommandsOff: without an engine the section says how to turn
// commands on and the test sends nothing; with alerts off it refuses.
func TestCommandsOff(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.throughPairing()
	r := h.get("/commands")
	h.expectPage(r, http.StatusOK, `id="commands-off"`, "enabled: true", `id="flash-`+testVIN+`" disabled`)
	h.expectPage(h.post("/commands", url.Values{"action": {"flash"}, "vin": {testVIN}}), http.StatusConflict, "commands.enabled")

	cmds := newTestCommands(true)
	cmds.settings.Categories.Alerts = false
	h2 := commandsHarness(t, cmds, harnessOptions{})
	h2.throughPairing()
	h2.expectPage(h2.get("/commands"), http.StatusOK, `id="flash-`+testVIN+`" disabled`, "commands.categories.alerts: true")
	h2.expectPage(h2.post("/commands", url.Values{"action": {"flash"}, "vin": {testVIN}}), http.StatusConflict, "alerts commands are off")
	if n := h2.flashes(testVIN); n != 0 {
		t.Errorf("the car flashed %d times with alerts off", n)
	}
}

// TestCommandsReconsent: a login made before fleet2mqtt asked for the
// command scopes is told so on the owner and commands pages; Tesla
// refuses its commands (403); logging in again asks Tesla for the
// missing scopes (prompt_missing_scopes=true), and then commands work.
func TestCommandsReconsent(t *testing.T) {
	cmds := newTestCommands(true)
	h := commandsHarness(t, cmds, harnessOptions{})
	h.throughPairing()

	// The login of an earlier version: the scopes it asked for then.
	old := []string{"openid", "offline_access", "user_data", "vehicle_device_data", "vehicle_location"}
	client, err := fleetapi.New(fleetapi.Config{ClientID: h.fake.ClientID(), ClientSecret: h.fake.ClientSecret(),
		RedirectURL: testRedirect, AuthRegion: fleetapi.RegionNA, Endpoints: h.fake.Endpoints(), Scopes: old}, nil)

	if err != nil {
		t.Fatal(err)
	}
	cb, err := h.fake.Login(t.Context(), client.AuthCodeURL("st", "nonce", fleetapi.AuthURLOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Exchange(t.Context(), cb.Query().Get("code"), "nonce", fleetapi.FileTokenStore{Path: TokenPath(h.dir)}); err != nil {
		t.Fatal(err)
	}
	// As after a restart: the page's session reads the stored token.
	h.w.flow.tesla.mu.Lock()
	h.w.flow.tesla.owner = nil
	h.w.flow.tesla.mu.Unlock()

	h.expectPage(h.get("/owner"), http.StatusOK, `id="scopes-missing"`, "<code>vehicle_cmds</code>, <code>vehicle_charging_cmds</code>", "Log in again")
	h.expectPage(h.get("/commands"), http.StatusOK, `id="scopes-missing"`, "Allow commands at Tesla", `action="owner" target="_blank"`)

	// Tesla refuses the command for the missing scope, and the page says
	// what to do.
	h.expectPage(h.post("/commands", url.Values{"action": {"flash"}, "vin": {testVIN}}), http.StatusBadGateway, "did not flash", "Log in again")
	if n := h.flashes(testVIN); n != 0 {
		t.Fatalf("the car flashed %d times for a token without vehicle_cmds", n)
	}

	// Logging in again asks Tesla for the missing scopes only.
	r := h.post("/owner", nil)
	if r.status != http.StatusSeeOther {
		t.Fatalf("owner login: %d", r.status)
	}
	auth, err := url.Parse(r.location)
	if err != nil {
		t.Fatal(err)
	}
	if q := auth.Query(); q.Get("prompt_missing_scopes") != "true" || !strings.Contains(q.Get("scope"), "vehicle_cmds") || !strings.Contains(q.Get("scope"), "vehicle_charging_cmds") {
		t.Fatalf("the login does not ask for the missing scopes: %s", r.location)
	}
	cb, err = h.fake.Login(t.Context(), r.location)
	if err != nil {
		t.Fatal(err)
	}
	h.expectPage(h.publicGet(cb.Path+"?"+cb.RawQuery), http.StatusOK, "Logged in as")

	r = h.get("/commands")
	if strings.Contains(r.body, `id="scopes-missing"`) {
		t.Errorf("the notice stays after the new login:\n%s", excerpt(r.body))
	}
	h.expectRedirect(h.post("/commands", url.Values{"action": {"flash"}, "vin": {testVIN}}), "commands")
	if n := h.flashes(testVIN); n != 1 {
		t.Fatalf("the car flashed %d times after the new login, want 1", n)
	}
	// A fresh login asks nothing again.
	r = h.post("/owner", nil)
	if strings.Contains(r.location, "prompt_missing_scopes") {
		t.Errorf("a login with every scope asks again: %s", r.location)
	}
}

// TestLoadCredentials: what the command line and serve read of the setup
// page's data.
func TestLoadCredentials(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	empty, err := LoadCredentials(Config{}, t.TempDir())
	if err != nil || empty.ClientID != "" || empty.LoggedIn || empty.Region != fleetapi.RegionNA {
		t.Errorf("nothing set up: %+v %v", empty, err)
	}
	h.throughPairing()
	c, err := LoadCredentials(Config{}, h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientID != h.fake.ClientID() || !c.LoggedIn || c.Domain != testHost || c.Region == "" ||
		c.KeyPath != KeyPath(h.dir) || c.TokenPath != TokenPath(h.dir) {
		t.Errorf("credentials %+v", c)
	}
	c, err = LoadCredentials(Config{ClientID: "from-config", PublicHostname: "other.example.com"}, h.dir)
	if err != nil || c.ClientID != "from-config" || c.Domain != "other.example.com" {
		t.Errorf("the configuration's values come first: %+v %v", c, err)
	}
}
