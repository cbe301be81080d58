//go:build hardening

package hardening

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/hardening.md with this run's table")

// binPath is the fleet2mqtt binary built for the suite; root is the
// module's directory.
var binPath, root string

func TestMain(m *testing.M) {
	flag.Parse()
	if dir := os.Getenv(writerEnv); dir != "" {
		runWriters(dir) // a child of TestKillDuringSecretWrites
	}
	var err error
	if root, err = moduleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "hardening-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "fleet2mqtt")
	build := exec.Command("go", "build", "-o", binPath, "./cmd/fleet2mqtt")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "hardening: build fleet2mqtt: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	started := time.Now()
	code := m.Run()
	table.elapsed = time.Since(started)
	if err := table.finish(*update, filepath.Join(root, "docs", "hardening.md")); err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// envInt reads a positive integer setting, or returns def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

// envDuration reads a duration setting, or returns def.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 30s", name, v)
	}
	return d
}
