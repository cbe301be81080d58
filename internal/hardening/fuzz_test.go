//go:build hardening

package hardening

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	fuzzFunc  = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	fuzzExecs = regexp.MustCompile(`execs: (\d+)`)
)

// TestFuzzTargets runs every fuzz target of the module (every decoder of
// outside input, and the configuration) for HARDENING_FUZZTIME each and
// reports its executions.
func TestFuzzTargets(t *testing.T) {
	fuzztime := envDuration(t, "HARDENING_FUZZTIME", 3*time.Second)
	if fuzztime == 0 {
		t.Skip("HARDENING_FUZZTIME=0: fuzzing left to .ci/fuzz")
	}
	table.note("Fuzzing: the suite runs every fuzz target of the module briefly (HARDENING_FUZZTIME, default 3 s each) so that this table reports executions; .ci/fuzz runs them longer. " +
		"A target that fails leaves its reproducer in testdata/fuzz of its package, as go test -fuzz does.")
	list := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Dir}}", "./...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		pkg, dir, _ := strings.Cut(sc.Text(), " ")
		if strings.HasSuffix(pkg, "/internal/hardening") {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		seen := map[string]bool{}
		for _, file := range files {
			src, err := os.ReadFile(file)
			if err != nil {
				continue
			}
			for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
				target := string(m[1])
				if seen[target] {
					continue
				}
				seen[target] = true
				rel := strings.TrimPrefix(pkg, "github.com/fleet2mqtt/fleet2mqtt/")
				t.Run(rel+"/"+target, func(t *testing.T) {
					r := trial(t, areaFuzz, "go test -fuzz "+target+" ./"+rel+" for "+fuzztime.String(),
						"no input makes it panic, hang or break its property")
					run := func() ([]byte, error) {
						cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+target+"$", "-fuzztime", fuzztime.String(), "./"+rel)
						cmd.Dir = root
						return cmd.CombinedOutput()
					}
					res, err := run()
					if err != nil && bytes.Contains(res, []byte("context deadline exceeded")) && !bytes.Contains(res, []byte("Failing input written")) {
						// The fuzzing engine's own timeout on a loaded
						// machine (no input failed): once more.
						res, err = run()
					}
					execs := 0
					if all := fuzzExecs.FindAllSubmatch(res, -1); len(all) > 0 {
						execs, _ = strconv.Atoi(string(all[len(all)-1][1]))
					}
					table.fuzzExecs.Add(int64(execs))
					r.figure("%d executions", execs)
					if err != nil {
						r.errorf(t, "%s failed: %v\n%s", target, err, shorten(string(res), 2000))
					}
				})
			}
		}
	}
}
