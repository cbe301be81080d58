package atomicfile

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	leftovers := []string{
		"setup/.token.json.tmp-1234567", "setup/.fleet-key.pem.tmp-9", ".homeassistant.json.42",
		"certs/.vehicle.key.123.tmp", "mqtt/mqtt-retained.bin.77.tmp", ".dev-pki-3431459038/ca.key",
	}
	kept := []string{
		"homeassistant.json", "setup/token.json", ".homeassistant.json.bak", "notes.tmp", "setup/.token.json.tmp-x",
		"mqtt/mqtt-retained.bin", "mqtt/mqtt-retained.bin.corrupt", "a/b/c/.deep.json.tmp-1", // past leftoverDepth
		"acme/example.com123", "setup/.dev-pki-123/x",
	}
	for _, name := range append(leftovers, kept...) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveLeftovers(dir, slog.New(slog.DiscardHandler))
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed: %v", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s removed: %v", name, err)
		}
	}
}

// testSupport are the packages under internal/ that only tests use.
var testSupport = map[string]bool{"hardening": true, "hatest": true, "testenv": true, "golden": true, "gencheck": true}

// TestLeftoverPatternsCoverWriters: every os.CreateTemp in fleet2mqtt's
// code uses a pattern that leftoverPatterns knows, so that a new atomic
// writer cannot leave files that start-up never removes. A new pattern
// needs a line in leftoverPatterns and here.
func TestLeftoverPatternsCoverWriters(t *testing.T) {
	known := map[string]string{ // the pattern argument as written → a name it makes
		`"."+base+".tmp-*"`:                ".token.json.tmp-123",
		`"."+filepath.Base(path)+".*.tmp"`: ".vehicle.key.123.tmp",
		`"."+filepath.Base(path)+".*"`:     ".homeassistant.json.123",
		`name+".*.tmp"`:                    "mqtt-retained-clients.bin.123.tmp",
		`".dev-pki-"`:                      "",                     // a directory (MkdirTemp): leftoverDirPattern
		`".write-check.tmp-*"`:             ".write-check.tmp-123", // CheckDir's probe
	}
	call := regexp.MustCompile(`(?m)os\.(?:CreateTemp|MkdirTemp)\([^,]+,\s*(.+)\)\s*$`)
	root := filepath.Join("..", "..")
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || filepath.Dir(path) == filepath.Join(root, "internal") && testSupport[d.Name()]) {
			return filepath.SkipDir // test support, not the product
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			pattern := strings.ReplaceAll(m[1], " ", "")
			example, ok := known[pattern]
			seen[pattern] = true
			if !ok {
				t.Errorf("%s: os.CreateTemp or MkdirTemp with pattern %s: add it to leftoverPatterns and to this test", path, m[1])
				continue
			}
			if example == "" {
				if !leftoverDirPattern.MatchString(".dev-pki-123") {
					t.Errorf("%s: %s makes directories like .dev-pki-123, which leftoverDirPattern does not match", path, m[1])
				}
				continue
			}
			if !isLeftover(example) {
				t.Errorf("%s: %s makes names like %s, which leftoverPatterns does not match", path, m[1], example)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pattern := range known {
		if !seen[pattern] {
			t.Errorf("no os.CreateTemp with pattern %s found: is the search broken, or is the writer gone?", pattern)
		}
	}
}
