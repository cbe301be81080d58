package hatest

import (
	"os"
	"regexp"
	"testing"
)

// The install script and the harness name the same release.
func TestInstallScriptPinsVersion(t *testing.T) {
	script, err := os.ReadFile("../../scripts/install-homeassistant")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^version=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/install-homeassistant has no version= line")
	}
	if got := string(m[1]); got != Version {
		t.Errorf("scripts/install-homeassistant installs %s, the harness expects hatest.Version %s", got, Version)
	}
}

func TestProblems(t *testing.T) {
	dir := t.TempDir()
	h := &HomeAssistant{logPath: dir + "/output.log"}
	log := `2025-04-20 10:00:00.123 INFO (MainThread) [homeassistant.setup] Setting up mqtt
2025-04-20 10:00:01.000 WARNING (MainThread) [homeassistant.components.mqtt.discovery] Bad config
Traceback line
2025-04-20 10:00:02.000 ERROR (MainThread) [homeassistant.components.http] Not ours
2025-04-20 10:00:03.000 DEBUG (MainThread) [homeassistant.components.mqtt] fine
`
	if err := os.WriteFile(h.logPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := h.Problems(func(logger, _ string) bool { return logger == "homeassistant.components.mqtt.discovery" })
	want := "2025-04-20 10:00:01.000 WARNING (MainThread) [homeassistant.components.mqtt.discovery] Bad config\nTraceback line"
	if len(got) != 1 || got[0] != want {
		t.Errorf("Problems = %q, want [%q]", got, want)
	}
}
