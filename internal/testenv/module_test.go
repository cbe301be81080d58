package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestModuleVersion(t *testing.T) {
	const gomod = `module example.com/m

go 1.26.0

require example.com/single v1.0.0

require (
	example.com/a v2.7.9 // a comment
	example.com/b v0.23.0 // indirect
	example.com/ab v9.9.9
)

replace example.com/b => ../b

replace (
	example.com/c v1.0.0 => example.com/d v1.0.1
)
`
	for _, tc := range []struct {
		path, version string
		replaced      bool
		err           bool
	}{
		{path: "example.com/single", version: "v1.0.0"},
		{path: "example.com/a", version: "v2.7.9"},
		{path: "example.com/b", version: "v0.23.0", replaced: true},
		{path: "example.com/c", err: true}, // replaced but not required
		{path: "example.com/missing", err: true},
	} {
		version, replaced, err := moduleVersion([]byte(gomod), tc.path)
		if (err != nil) != tc.err || version != tc.version || replaced != tc.replaced {
			t.Errorf("moduleVersion(%s) = %q, %t, %v; want %q, %t, error %t", tc.path, version, replaced, err, tc.version, tc.replaced, tc.err)
		}
	}
}

// TestRequireModuleFails: a version other than the one required fails the
// test with the points to re-verify.
func TestRequireModuleFails(t *testing.T) {
	ft := &fakeT{TB: t}
	RequireModule(ft, "github.com/mochi-mqtt/server/v2", "v0.0.1", "that the sky is blue")
	if !ft.failed {
		t.Fatal("RequireModule passed with the wrong version")
	}
	for _, want := range []string{"TestRequireModuleFails guards was verified against v0.0.1 only", "1. that the sky is blue"} {
		if !strings.Contains(ft.msg, want) {
			t.Errorf("message %q lacks %q", ft.msg, want)
		}
	}
	ok := &fakeT{TB: t}
	RequireModule(ok, "github.com/mochi-mqtt/server/v2", mustVersion(t, "github.com/mochi-mqtt/server/v2"))
	if ok.failed {
		t.Errorf("RequireModule failed with the version go.mod requires: %s", ok.msg)
	}
}

// fakeT records a failure instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Error(args ...any) {
	f.failed = true
	f.msg += fmt.Sprint(args...)
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg += fmt.Sprintf(format, args...)
	panic("testenv: Fatalf in a test of RequireModule: " + f.msg)
}

// mustVersion returns the version go.mod requires of path.
func mustVersion(t *testing.T, path string) string {
	gomod, err := findGoMod()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := moduleVersion(data, path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
