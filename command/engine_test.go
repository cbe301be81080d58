package command_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

const (
	testVIN      = "5YJ3E1EA7KF000001"
	testDomain   = "example.com"
	testCallback = "https://example.com/callback"
)

// offsetClock is the fake car's clock: real time plus an offset a test
// may move.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// rig is a fake Tesla on loopback with one paired car, an owner logged in
// with command scopes, and the application key.
type rig struct {
	fake      *fleetapitest.Server
	car       *fleetapitest.Car
	clock     *offsetClock
	key       *ecdsa.PrivateKey
	owner     *fleetapi.Owner
	tokenFile string
	dir       string
	counters  *command.Counters
}

func newRig(t *testing.T, v fleetapitest.Vehicle) *rig {
	t.Helper()
	if v.VIN == "" {
		v.VIN = testVIN
	}
	r := &rig{clock: &offsetClock{}, dir: t.TempDir(), counters: command.NewCounters(nil)}
	r.fake = fleetapitest.New(fleetapitest.Options{RedirectURIs: []string{testCallback}, Vehicles: []fleetapitest.Vehicle{v}, Now: r.clock.Now, Logf: t.Logf})
	t.Cleanup(r.fake.Close)
	var err error
	if r.key, err = fleetapi.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	r.fake.Register(fleetapi.RegionNA, testDomain, &r.key.PublicKey)
	client, err := fleetapi.New(fleetapi.Config{ClientID: r.fake.ClientID(), ClientSecret: r.fake.ClientSecret(),
		RedirectURL: testCallback, Endpoints: r.fake.Endpoints(),
		Scopes: append(slices.Clone(fleetapi.DefaultScopes), "vehicle_cmds", "vehicle_charging_cmds")}, nil)

	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cb, err := r.fake.Login(ctx, client.AuthCodeURL("state", "nonce", fleetapi.AuthURLOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	code, err := fleetapi.ParseCallback(cb.Query(), "state")
	if err != nil {
		t.Fatal(err)
	}
	r.tokenFile = filepath.Join(t.TempDir(), "owner-token.json")
	if r.owner, err = client.Exchange(ctx, code, "nonce", fleetapi.FileTokenStore{Path: r.tokenFile}); err != nil {
		t.Fatal(err)
	}
	r.car = r.fake.Car(v.VIN)
	return r
}

func (r *rig) config() command.Config {
	return command.Config{
		Key: r.key, Transport: r.owner, SessionDir: filepath.Join(r.dir, "commands"),
		PairingDomain: testDomain, RateLimit: &command.RateLimit{},
		WakePoll: time.Millisecond, Backoff: time.Millisecond, Metrics: r.counters,
	}
}

func (r *rig) engine(t *testing.T) *command.Engine {
	t.Helper()
	e, err := command.New(r.config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// requests counts the fake's requests whose path ends in suffix.
func (r *rig) requests(suffix string) int {
	n := 0
	for _, q := range r.fake.Requests() {
		if strings.HasSuffix(q.Path, suffix) {
			n++
		}
	}
	return n
}

func run(t *testing.T, e *command.Engine, name, args string) command.Result {
	t.Helper()
	return e.Execute(context.Background(), command.Request{VIN: testVIN, Name: name, Args: json.RawMessage(args), Who: "test"})
}

func mustOK(t *testing.T, res command.Result) {
	t.Helper()
	if !res.OK {
		t.Fatalf("%s: not ok: %s (fault %q, err %v)", res.Command, res.Reason, res.Fault, res.Err)
	}
}

func TestCommandsOneRoundTripEach(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	var changes []fleetapitest.CarState
	r.fake.OnCarChange(func(vin string, _, st fleetapitest.CarState) {
		if vin == testVIN {
			changes = append(changes, st)
		}
	})
	e := r.engine(t)

	// The first infotainment command needs a handshake: two requests.
	mustOK(t, run(t, e, "charge_start", ""))
	if n := r.requests("/signed_command"); n != 2 {
		t.Fatalf("handshake and command: %d signed_command requests, want 2", n)
	}
	// Every further command to an awake car costs one request.
	steps := []struct {
		name, args string
		want       int
	}{
		{"set_charge_limit", `{"percent":90}`, 3},
		{"set_charging_amps", `{"charging_amps":12}`, 4},
		{"door_unlock", ``, 6}, // security has its own session: handshake + command
		{"door_lock", ``, 7},
		{"set_sentry_mode", `{"on":true}`, 8},
		{"auto_conditioning_start", ``, 9},
	}
	for _, s := range steps {
		res := run(t, e, s.name, s.args)
		mustOK(t, res)
		if res.Attempts != 1 || res.Woken || res.Legacy {
			t.Errorf("%s: attempts %d woken %v legacy %v", s.name, res.Attempts, res.Woken, res.Legacy)
		}
		if n := r.requests("/signed_command"); n != s.want {
			t.Fatalf("after %s: %d signed_command requests, want %d", s.name, n, s.want)
		}
	}
	st := r.car.State()
	if !st.Charging || st.ChargeLimit != 90 || st.ChargingAmps != 12 || !st.Locked || !st.Sentry || !st.ClimateOn {
		t.Errorf("car state %+v", st)
	}
	if len(changes) != 7 || !changes[0].Charging || changes[1].ChargeLimit != 90 {
		t.Errorf("observed %d changes: %+v", len(changes), changes)
	}
	if u := r.counters.Usage(command.Month(time.Now()))[testVIN]; u.Commands != 9 || u.Wakes != 0 {
		t.Errorf("usage %+v, want 9 commands", u)
	}
}

func TestCarRefusal(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	res := run(t, e, "charge_stop", "")
	if res.OK || !errors.Is(res.Err, command.ErrRefused) || !strings.Contains(res.Reason, "not_charging") {
		t.Fatalf("charge_stop while not charging: %+v", res)
	}
	res = run(t, e, "set_charge_limit", `{"percent":20}`)
	if res.OK || !errors.Is(res.Err, command.ErrInvalidCommand) || !strings.Contains(res.Reason, "percent") {
		t.Fatalf("invalid argument: %+v", res)
	}
	if n := r.requests("/signed_command"); n != 2 {
		t.Errorf("an invalid command was sent: %d requests", n)
	}
}

func TestSessionCacheSurvivesRestart(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	mustOK(t, run(t, r.engine(t), "flash_lights", ""))
	if n := r.requests("/signed_command"); n != 2 {
		t.Fatalf("%d requests", n)
	}
	// A new engine (a restart) resumes from disk: no handshake.
	res := run(t, r.engine(t), "honk_horn", "")
	mustOK(t, res)
	if n := r.requests("/signed_command"); n != 3 {
		t.Fatalf("after restart: %d requests, want 3 (no new handshake)", n)
	}
	path := filepath.Join(r.dir, "commands", testVIN+"-infotainment.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("session cache mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"clock_zero_unix_ms", "counter", "epoch", "last_clock", "vehicle_public_key"}; !slices.Equal(keys, want) {
		t.Errorf("cached fields %v, want %v (nothing secret)", keys, want)
	}
	if st := r.car.State(); st.Flashes != 1 || st.Honks != 1 {
		t.Errorf("state %+v", st)
	}
}

func TestFaultRecovery(t *testing.T) {
	tests := []struct {
		name      string
		break_    func(r *rig)
		wantFault string
	}{
		{"car rebooted", func(r *rig) { r.car.Reboot(protocol.DomainInfotainment) }, "INCORRECT_EPOCH"},
		{"command expired", func(r *rig) { r.clock.Advance(2 * time.Minute) }, "TIME_EXPIRED"},
		{"stale counter", func(r *rig) {
			// The cache lost its newest state (restored from a backup).
			path := filepath.Join(r.dir, "commands", testVIN+"-infotainment.json")
			var st protocol.State
			data, _ := os.ReadFile(path)
			if err := json.Unmarshal(data, &st); err != nil {
				panic(err)
			}
			st.Counter = 0
			data, _ = json.Marshal(st)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				panic(err)
			}
		}, "INVALID_TOKEN_OR_COUNTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, fleetapitest.Vehicle{Paired: true})
			e := r.engine(t)
			mustOK(t, run(t, e, "flash_lights", ""))
			// Several commands, so that a counter is really used up.
			for range 3 {
				mustOK(t, run(t, e, "flash_lights", ""))
			}
			tt.break_(r)
			if tt.name == "stale counter" {
				e = r.engine(t) // the restart that reads the old cache
			}
			before := r.requests("/signed_command")
			res := run(t, e, "set_charge_limit", `{"percent":70}`)
			mustOK(t, res)
			if res.Fault != tt.wantFault || res.Attempts != 2 {
				t.Errorf("fault %q attempts %d, want %s and 2", res.Fault, res.Attempts, tt.wantFault)
			}
			if n := r.requests("/signed_command") - before; n != 2 {
				t.Errorf("%d requests for the recovery, want 2 (fault with session info, retry)", n)
			}
			// And the next command is one round trip again.
			mustOK(t, run(t, e, "flash_lights", ""))
			if r.car.State().ChargeLimit != 70 {
				t.Errorf("limit %d", r.car.State().ChargeLimit)
			}
		})
	}
}

func TestBusyRetriedWithBackoff(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	mustOK(t, run(t, e, "flash_lights", ""))
	r.car.InjectFault(protocol.DomainInfotainment, protocol.Fault(1)) // BUSY
	r.car.InjectFault(protocol.DomainInfotainment, protocol.Fault(2)) // TIMEOUT
	res := run(t, e, "honk_horn", "")
	mustOK(t, res)
	if res.Attempts != 3 || res.Fault != "TIMEOUT" {
		t.Errorf("attempts %d fault %q, want 3 and TIMEOUT", res.Attempts, res.Fault)
	}
	for range command.DefaultBusyRetries + 1 {
		r.car.InjectFault(protocol.DomainInfotainment, protocol.Fault(1))
	}
	res = run(t, e, "honk_horn", "")
	if res.OK || res.Fault != "BUSY" || res.Attempts != command.DefaultBusyRetries+1 || !strings.Contains(res.Reason, "busy") {
		t.Errorf("always busy: %+v", res)
	}
}

func TestUnpairedKeyExplained(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: false})
	res := run(t, r.engine(t), "door_lock", "")
	if res.OK || res.Fault != "UNKNOWN_KEY_ID" || !strings.Contains(res.Reason, "https://tesla.com/_ak/"+testDomain) ||
		!strings.Contains(res.Reason, "not paired") {
		t.Fatalf("unpaired: %+v", res)
	}
}

func TestSleepingCarWoken(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	r.car.Sleep(3)
	res := run(t, e, "charge_start", "")
	mustOK(t, res)
	if !res.Woken {
		t.Error("not reported as woken")
	}
	if _, _, wakes := r.car.Counts(); wakes != 1 {
		t.Errorf("%d wake_up calls", wakes)
	}
	if n := r.requests(testVIN); n < 3+1 {
		t.Errorf("polls: %d vehicle requests", n)
	}
	if u := r.counters.Usage(command.Month(time.Now()))[testVIN]; u.Wakes != 1 {
		t.Errorf("usage %+v", u)
	}
	// Awake now: the next command is one round trip, no wake.
	before := r.requests("/signed_command")
	res = run(t, e, "charge_stop", "")
	mustOK(t, res)
	if res.Woken || r.requests("/signed_command")-before != 1 {
		t.Errorf("second command woken %v, %d requests", res.Woken, r.requests("/signed_command")-before)
	}
}

func TestOnlyIfAwakeNeverWakes(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	r.car.Sleep(0)
	for _, name := range []string{"charge_start", "wake_up"} {
		res := e.Execute(context.Background(), command.Request{VIN: testVIN, Name: name, Who: "test", OnlyIfAwake: true})
		if res.OK || !errors.Is(res.Err, command.ErrAsleep) || res.Woken || !strings.Contains(res.Reason, "asleep") {
			t.Errorf("%s: %+v", name, res)
		}
	}
	if _, _, wakes := r.car.Counts(); wakes != 0 {
		t.Errorf("%d wake_up calls", wakes)
	}
	if r.car.State().Charging {
		t.Error("a sleeping car executed the command")
	}
	// wake_up itself wakes.
	res := run(t, e, "wake_up", "")
	mustOK(t, res)
	if !res.Woken {
		t.Error("wake_up did not report waking")
	}
}

func TestWakeTimeout(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	cfg := r.config()
	cfg.WakeTimeout = 50 * time.Millisecond
	e, err := command.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.car.Sleep(1 << 30) // never wakes
	res := run(t, e, "flash_lights", "")
	if res.OK || !errors.Is(res.Err, command.ErrWakeTimeout) {
		t.Fatalf("%+v", res)
	}
}

func TestLegacyCarGetsRESTCommands(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	r.car.SetLegacy(true)
	res := run(t, e, "set_charge_limit", `{"percent":65}`)
	mustOK(t, res)
	if !res.Legacy || r.car.State().ChargeLimit != 65 {
		t.Fatalf("legacy: %+v state %+v", res, r.car.State())
	}
	// The engine remembers: the next command goes straight to REST.
	signed := r.requests("/signed_command")
	mustOK(t, run(t, e, "charge_start", ""))
	if r.requests("/signed_command") != signed || !r.car.State().Charging {
		t.Error("second command tried signed_command again")
	}
	res = run(t, e, "charge_start", "")
	if res.OK || !strings.Contains(res.Reason, "is_charging") {
		t.Errorf("REST refusal: %+v", res)
	}
}

func TestRateLimit(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	cfg := r.config()
	cfg.RateLimit = &command.RateLimit{Commands: 1, Per: time.Hour, Burst: 2}
	e, err := command.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Asking spends nothing.
	for range 5 {
		if err := e.RateLimited(testVIN); err != nil {
			t.Fatalf("RateLimited with a full budget: %v", err)
		}
	}
	mustOK(t, run(t, e, "flash_lights", ""))
	mustOK(t, run(t, e, "flash_lights", ""))
	if err := e.RateLimited(testVIN); !errors.Is(err, command.ErrRateLimited) || !strings.Contains(err.Error(), "try again in") {
		t.Errorf("RateLimited with the budget spent: %v", err)
	}
	before := len(r.fake.Requests())
	res := run(t, e, "flash_lights", "")
	if res.OK || !errors.Is(res.Err, command.ErrRateLimited) || !strings.Contains(res.Reason, "try again in") {
		t.Fatalf("third command: %+v", res)
	}
	if len(r.fake.Requests()) != before {
		t.Error("a rate-limited command reached Tesla")
	}
	// Other cars have their own budget.
	res = e.Execute(context.Background(), command.Request{VIN: "OTHERVIN", Name: "flash_lights", Who: "test"})
	if errors.Is(res.Err, command.ErrRateLimited) {
		t.Error("another car shares the budget")
	}
}

func TestConcurrentCommandsKeepCountersInOrder(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	e := r.engine(t)
	var wg sync.WaitGroup
	results := make([]command.Result, 12)
	for i := range results {
		name := "door_lock"
		if i%2 == 1 {
			name = "flash_lights"
		}
		wg.Go(func() { results[i] = run(t, e, name, "") })
	}
	wg.Wait()
	for _, res := range results {
		mustOK(t, res)
		if res.Fault != "" {
			t.Errorf("%s: fault %s", res.Command, res.Fault)
		}
	}
	if n := r.requests("/signed_command"); n != 12+2 {
		t.Errorf("%d requests, want 14 (two handshakes)", n)
	}
}
