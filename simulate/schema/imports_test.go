package schema_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestServerDoesNotImportSchema keeps the generated types and the protobuf
// runtime out of the packages that serve cars: they decode payloads with
// protowire alone. Only the simulator (simulate/...) and the command that
// bundles it with the server (cmd/...) may depend on this package or on
// protobuf beyond protowire; tests are not counted.
func TestServerDoesNotImportSchema(t *testing.T) {
	const module = "github.com/fleet2mqtt/fleet2mqtt/"
	allowed := map[string]bool{}
	// protowire is how the server decodes payloads; Prometheus' client
	// brings the protobuf runtime for its exposition format (/metrics).
	for _, p := range goList(t, "-deps", "google.golang.org/protobuf/encoding/protowire", "github.com/prometheus/client_golang/prometheus") {
		allowed[p] = true
	}
	lines := goList(t, "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "../../...")
	if len(lines) < 10 {
		t.Fatalf("go list found %d packages in the module; is the module root ../..?", len(lines))
	}
	for _, line := range lines {
		pkg, deps, _ := strings.Cut(line, " ")
		rel := strings.TrimPrefix(pkg, module)
		if strings.HasPrefix(rel, "simulate/") || rel == "simulate" || strings.HasPrefix(rel, "cmd/") {
			continue
		}
		// The vehicle command protocol is protobuf messages of its own
		// (command/protocol/pb): what signs or fakes commands needs the
		// runtime; the telemetry path still must not.
		commands := strings.HasPrefix(rel, "command/") || strings.Contains(deps, module+"command/protocol/pb/")
		var bad []string
		for _, dep := range strings.Fields(deps) {
			if dep == module+"simulate/schema" || !commands && strings.HasPrefix(dep, "google.golang.org/protobuf/") && !allowed[dep] {
				bad = append(bad, strings.TrimPrefix(dep, module))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s depends on %d packages it must not: %s; the server decodes payloads with protowire alone, the generated types are for the simulator and tests",
				rel, len(bad), strings.Join(bad[:min(len(bad), 3)], ", "))
		}
	}
}

// goList runs go list with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}
