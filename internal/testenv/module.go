package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RequireModule fails the test unless the main module's go.mod requires
// the module path at exactly version, with no replace directive for it.
//
// Code that relies on the internals of a dependency, not only on its API
// (a bug it works around, a lock it avoids, a field it sets), calls it from
// a test so that a version change fails with the list of what must be
// checked again: reverify, one point a line. Whoever changes the version
// re-verifies each point in the new version's source, adapts the code and
// its comments, and only then updates version in the test.
func RequireModule(t testing.TB, path, version string, reverify ...string) {
	t.Helper()
	gomod, err := findGoMod()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	got, replaced, err := moduleVersion(data, path)
	switch {
	case err != nil:
		t.Fatalf("testenv: %s: %v", gomod, err)
	case got == version && !replaced:
		return
	}
	now := got
	if replaced {
		now += " with a replace directive"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s requires %s %s, but the code %s guards was verified against %s only.\n", gomod, path, now, t.Name(), version)
	b.WriteString("Check each point below in the new version's source, adapt the code and its comments, then set the version in this test:\n")
	for i, r := range reverify {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, r)
	}
	t.Error(b.String())
}

// findGoMod returns the go.mod of the module the test runs in: the first
// one in the working directory (the package's) or above it.
func findGoMod() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "go.mod")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above")
		}
		dir = parent
	}
}

// moduleVersion returns the version at which the go.mod file data requires
// the module path, and whether a replace directive names it.
func moduleVersion(data []byte, path string) (version string, replaced bool, err error) {
	block := "" // the directive of the ( block we are in
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		directive := block
		switch {
		case block != "" && f[0] == ")":
			block = ""
			continue
		case block == "" && len(f) == 2 && f[1] == "(":
			block = f[0]
			continue
		case block == "":
			directive, f = f[0], f[1:]
		}
		if len(f) == 0 || strings.Trim(f[0], `"`) != path {
			continue
		}
		switch directive {
		case "require":
			if len(f) < 2 {
				return "", false, fmt.Errorf("malformed require of %s", path)
			}
			version = f[1]
		case "replace":
			replaced = true
		}
	}
	if version == "" {
		return "", false, fmt.Errorf("%s is not required", path)
	}
	return version, replaced, nil
}
