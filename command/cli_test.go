package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

// cliEnv resolves the flags as cmd/fleet2mqtt does: the key and token
// from files, the Fleet API at --api.
func cliEnv(t *testing.T, r *rig) command.CLIEnv {
	return command.CLIEnv{Resolve: func(_ context.Context, f command.CLIFlags) (command.Config, *slog.Logger, error) {
		key, err := fleetapi.LoadPrivateKey(f.Key)
		if err != nil {
			return command.Config{}, nil, err
		}
		client, err := fleetapi.New(fleetapi.Config{ClientID: r.fake.ClientID(),
			Endpoints: command.WithAPI(r.fake.Endpoints(), f.API)}, nil)

		if err != nil {
			return command.Config{}, nil, err
		}
		cfg := r.config()
		cfg.Key = key
		cfg.Transport = client.Owner(fleetapi.FileTokenStore{Path: f.TokenFile}, "")
		return cfg, nil, nil
	}}
}

func TestCLI(t *testing.T) {
	r := newRig(t, fleetapitest.Vehicle{Paired: true})
	keyFile := filepath.Join(t.TempDir(), "private-key.pem")
	if err := fleetapi.SavePrivateKey(keyFile, r.key); err != nil {
		t.Fatal(err)
	}
	env := cliEnv(t, r)
	flags := []string{"--key", keyFile, "--token-file", r.tokenFile, "--api", r.fake.BaseURL(fleetapi.RegionNA)}
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := command.RunCLI(context.Background(), append(append([]string{}, flags...), args...), &out, &errOut, env)
		return code, out.String(), errOut.String()
	}

	code, out, errOut := cli(testVIN, "set_charge_limit", `{"percent":75}`)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout is not one JSON object: %q", out)
	}
	if res["ok"] != true || res["command"] != "set_charge_limit" || res["vin"] != testVIN || res["attempts"] != 1.0 {
		t.Errorf("result %v", res)
	}
	if r.car.State().ChargeLimit != 75 {
		t.Errorf("limit %d", r.car.State().ChargeLimit)
	}

	// Refused by the car: exit 1, the reason in words on stderr.
	code, out, errOut = cli(testVIN, "charge_stop")
	if code != 1 || !strings.Contains(errOut, "not_charging") || !strings.Contains(out, `"ok":false`) {
		t.Errorf("refused: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Only if awake: a sleeping car refuses, and is not woken.
	r.car.Sleep(0)
	code, _, errOut = cli("--only-if-awake", testVIN, "flash_lights")
	if code != 1 || !strings.Contains(errOut, "asleep") {
		t.Errorf("only if awake: exit %d, stderr %q", code, errOut)
	}
	if _, _, wakes := r.car.Counts(); wakes != 0 {
		t.Error("woken")
	}

	// Usage errors: exit 2, nothing sent.
	before := len(r.fake.Requests())
	for _, args := range [][]string{
		{testVIN},
		{testVIN, "charge_start", "{}", "extra"},
		{testVIN, "no_such_command"},
		{testVIN, "set_charge_limit", `{"percent":"lots"}`},
		{testVIN, "set_charge_limit", `not json`},
		{"--no-such-flag", testVIN, "charge_start"},
	} {
		if code, _, errOut := cli(args...); code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
	if len(r.fake.Requests()) != before {
		t.Error("a usage error reached Tesla")
	}

	// A missing token file is refused with the reason, not a usage error.
	flags[3] = filepath.Join(t.TempDir(), "none.json")
	if code, _, errOut := cli(testVIN, "flash_lights"); code != 1 || !strings.Contains(strings.ToLower(errOut), "log in") {
		t.Errorf("no token: exit %d, stderr %q", code, errOut)
	}

}
