// Package hatest runs a real Home Assistant Core for tests: on a loopback
// port, with a throw-away configuration directory, onboarded through its
// HTTP API, and reached through its REST and WebSocket APIs.
//
// # Which Home Assistant
//
// Version is the release scripts/install-homeassistant installs into a
// virtual environment outside the repository, together with the Python
// requirements of the integrations the tests load, so that Home Assistant
// runs with --skip-pip and never installs anything while a test runs. It is
// the newest release whose Python requirement a Python on the project's
// machines meets: Home Assistant 2025.4 needs Python 3.13.0 or newer, and
// 2025.5 and later need 3.13.2 or newer, while the machines have Python
// 3.13.0 (pyenv) and 3.11 (Debian 12). Move the pin (here and in the
// script) when a newer Python is there.
//
// # Configuration
//
// configuration.yaml names only what the tests use, not default_config:
// http (on 127.0.0.1), api (REST), websocket_api, onboarding (owner user
// and first token), config (config-flow and registry APIs; it brings
// auth) and logger; mqtt is added through its config flow, as people do.
// Home Assistant also always sets up its built-in defaults (frontend,
// person, automation, the helpers…): without frontend it starts in
// recovery mode, so the install script installs their requirements too.
// The unit system is metric, so that the car's miles and mph show as Home
// Assistant converts them. Home Assistant 2025.4.4 starts in 2 to 7
// seconds here; the install takes about three minutes.
//
// # Skipping
//
// Find skips the test when the release is not installed, and fails it when
// the environment variable CI is "true", where a skipped test would hide
// that the real Home Assistant no longer runs.
package hatest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Version is the Home Assistant Core release the tests run against. Keep it
// equal to the version in scripts/install-homeassistant.
const Version = "2025.4.4"

// VenvDir is where scripts/install-homeassistant puts Version:
// $FLEET2MQTT_CACHE/homeassistant-<Version>, FLEET2MQTT_CACHE defaulting to
// ~/.cache/fleet2mqtt.
func VenvDir() string {
	cache := os.Getenv("FLEET2MQTT_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "fleet2mqtt")
	}
	return filepath.Join(cache, "homeassistant-"+Version)
}

// Find returns the path of the installed hass program. When Version is not
// installed it skips the test, or fails it when CI is "true".
func Find(t testing.TB) string {
	t.Helper()
	dir := VenvDir()
	hass := filepath.Join(dir, "bin", "hass")
	marker, err := os.ReadFile(filepath.Join(dir, ".installed"))
	if err != nil || strings.TrimSpace(string(marker)) != Version {
		missing(t, "Home Assistant "+Version+" is not installed in "+dir+": run scripts/install-homeassistant (a few minutes, once)")
	}
	if _, err := os.Stat(hass); err != nil {
		missing(t, "Home Assistant "+Version+" is incompletely installed ("+err.Error()+"): run scripts/install-homeassistant")
	}
	return hass
}

// missing skips the test for a missing tool, or fails it in CI.
func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}
