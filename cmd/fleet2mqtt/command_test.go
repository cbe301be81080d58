package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/internal/metrics"

	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

const commandVIN = "5YJ3E1EA7KF000001"

// commandSetup is a data directory as the setup page leaves it (the
// application key, the owner's token) for a fake Tesla whose car holds
// the key, and a configuration file pointing at that fake.
func commandSetup(t *testing.T) (configFile string, fleet *fakefleet.Fleet) {
	t.Helper()
	configFile, fleet, _ = commandSetupIn(t, t.TempDir())
	return configFile, fleet
}

func commandSetupIn(t *testing.T, dataDir string) (configFile string, fleet *fakefleet.Fleet, fleetAPI string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dataDir, "setup"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, _, err := fleetapi.LoadOrCreateKey(setup.KeyPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err = fakefleet.Start(context.Background(), fakefleet.Options{VINs: []string{commandVIN}, Key: key, Dir: filepath.Join(dataDir, "setup")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	base, err := fleet.Server.Endpoints().BaseURL(fleetapi.RegionNA)
	if err != nil {
		t.Fatal(err)
	}
	configFile = filepath.Join(t.TempDir(), "config.yaml")
	yaml := "data_dir: " + dataDir + "\nsetup:\n  client_id: " + fleet.Server.ClientID() + "\ncommands:\n  fleet_api_url: " + base + "\n"
	if err := os.WriteFile(configFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return configFile, fleet, base
}

// TestServeCommands: serve with commands on runs the proxy API on its own
// TLS listener (commands.proxy), with the setup page's data, and counts
// the billed requests in /metrics.
func TestServeCommands(t *testing.T) {
	dataDir := t.TempDir()
	_, fleet, base := commandSetupIn(t, dataDir)
	pki := t.TempDir()
	if err := certs.WriteDevDir(pki, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	a := startTestApp(t, func(c *config.Config) {
		c.DataDir = dataDir
		c.Setup.ClientID = fleet.Server.ClientID()
		c.Commands.Enabled = true
		c.Commands.FleetAPIURL = base
		c.Commands.Proxy = vcmd.ProxySettings{Listen: "127.0.0.1:0",
			CertFile: filepath.Join(pki, certs.ServerFile), KeyFile: filepath.Join(pki, certs.ServerKeyFile)}
	})
	ca, err := certs.LoadDir(pki)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.ServerCA.Pool()}}}
	tok, err := fleet.AccessToken()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "https://"+a.cmd.ProxyAddr()+"/api/1/vehicles/"+commandVIN+"/command/flash_lights", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(bytes.TrimSpace(body)) != `{"response":{"result":true,"reason":""}}` {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if fleet.Server.Car(commandVIN).State().Flashes != 1 {
		t.Error("the car did not flash")
	}
	resp, err = http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := regexp.MustCompile(`fleet2mqtt_vehicle_commands_month\{car="` + metrics.CarPseudonym(commandVIN) + `",month="\d{4}-\d\d"\} [1-9]`)
	if !want.Match(page) {
		t.Errorf("/metrics does not count the car's commands:\n%s", grepLines(page, "vehicle_"))
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestCommandLine(t *testing.T) {
	cfg, fleet := commandSetup(t)
	car := fleet.Server.Car(commandVIN)

	var stdout, stderr bytes.Buffer
	code := run([]string{"command", "--config", cfg, commandVIN, "set_charge_limit", `{"percent":66}`}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var res struct {
		OK      bool   `json:"ok"`
		Command string `json:"command"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || !res.OK || res.Command != "set_charge_limit" {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if car.State().ChargeLimit != 66 {
		t.Errorf("charge limit %d, want 66", car.State().ChargeLimit)
	}

	// The car refuses: exit 1, the reason on stderr.
	st := car.State()
	st.PluggedIn = false
	car.SetState(st)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"command", "--config", cfg, commandVIN, "charge_start"}, &stdout, &stderr); code != 1 || stderr.Len() == 0 {
		t.Errorf("charge_start unplugged: exit %d, stderr %q; want 1 and a reason", code, stderr.String())
	}

	// Usage errors: exit 2, nothing sent.
	before, _, _ := car.Counts()
	for _, args := range [][]string{
		{"command", "--config", cfg, commandVIN},
		{"command", "--config", cfg, commandVIN, "set_charge_limit", `{"percent":500}`},
		{"command", "--config", cfg, commandVIN, "no_such_command"},
	} {
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if after, _, _ := car.Counts(); after != before {
		t.Errorf("usage errors sent %d commands", after-before)
	}
}

func TestCommandLineWithoutSetup(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+t.TempDir()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"command", "--config", cfg, commandVIN, "flash_lights"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "setup page") {
		t.Errorf("exit %d, stderr %q; want 1 and a pointer to the setup page", code, stderr.String())
	}
}

// TestServeCommandsBeforeSetup: commands on before the setup page is done
// (no key, no login) start fine and say what is missing.
func TestServeCommandsBeforeSetup(t *testing.T) {
	pki := t.TempDir()
	if err := certs.WriteDevDir(pki, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	a := startTestApp(t, func(c *config.Config) {
		c.Commands.Enabled = true
		c.Commands.Proxy = vcmd.ProxySettings{Listen: "127.0.0.1:0",
			CertFile: filepath.Join(pki, certs.ServerFile), KeyFile: filepath.Join(pki, certs.ServerKeyFile)}
	})
	ca, err := certs.LoadDir(pki)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.ServerCA.Pool()}}}
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/api/1/vehicles", http.StatusServiceUnavailable, "client id"},
		{"POST", "/api/1/vehicles/" + commandVIN + "/command/flash_lights", http.StatusBadGateway, "not ready"},
	} {
		req, _ := http.NewRequest(tc.method, "https://"+a.cmd.ProxyAddr()+tc.path, nil)
		req.Header.Set("Authorization", "Bearer some-token")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s %s: %d %s; want %d naming %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.says)
		}
	}
}
