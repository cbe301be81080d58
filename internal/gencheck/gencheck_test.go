package gencheck

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x_gen.go")
	if err := os.WriteFile(path, []byte("package x\n\nconst A = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		fresh string
		want  []string // parts of the error; none for a current file
	}{
		{"current", "package x\n\nconst A = 1\n", nil},
		{"changed line", "package x\n\nconst A = 2\n", []string{path + " is stale", "line 3", `"const A = 1\n"`, `"const A = 2\n"`, "go generate ./x/"}},
		{"line added", "package x\n\nconst A = 1\nconst B = 2\n", []string{"line 4 is missing", "const B = 2"}},
		{"line removed", "package x\n\n", []string{"line 3 should not be there", "const A = 1"}},
		{"final newline only", "package x\n\nconst A = 1", []string{"line 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Compare(path, []byte(tt.fresh), "go generate ./x/")
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("err = %v, want error %v", err, tt.want != nil)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestCompareMissingFile(t *testing.T) {
	err := Compare(filepath.Join(t.TempDir(), "none.go"), []byte("package x\n"), "go generate ./x/")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "go generate ./x/") {
		t.Errorf("err = %v, want a missing file and the command", err)
	}
}
