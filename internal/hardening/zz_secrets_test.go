//go:build hardening

package hardening

import "testing"

// TestZZNoSecretInLogs runs last (its file sorts last): it scans the
// output of every fleet2mqtt process and every in-process setup page the
// suite ran for every secret they held: setup passwords (configured and
// generated), the Tesla client secret, MQTT passwords, owner access and
// refresh tokens, and every line of every private key.
func TestZZNoSecretInLogs(t *testing.T) {
	r := trial(t, areaAccess,
		"the output (logs at debug level, banner, errors) of every fleet2mqtt process and setup page of this run, scanned for every secret they held: setup passwords, the Tesla client secret, MQTT user and broker passwords, owner access and refresh tokens, each line of each private key PEM",
		"no secret appears in any line; the generated setup password only in the one line that prints it on purpose")
	lines, sources, secrets, allowed, leaks := logs.scan()
	if sources == 0 || secrets == 0 {
		r.errorf(t, "nothing to scan: %d outputs, %d secrets (run the whole suite)", sources, secrets)
	}
	for i, l := range leaks {
		if i == 10 {
			r.errorf(t, "… and %d more", len(leaks)-10)
			break
		}
		r.errorf(t, "%s in the output of %s: %s", l.secret, l.source, l.line)
	}
	// The scan sees secrets where they are: the generated password's own
	// line proves it would see them elsewhere too.
	logs.mu.Lock()
	generated := 0
	for _, s := range logs.secrets {
		if s.allow != "" {
			generated++
		}
	}
	logs.mu.Unlock()
	if generated > 0 && allowed == 0 {
		r.errorf(t, "%d generated passwords registered but none found in the line that prints it: the scan does not see what it looks for", generated)
	}
	r.figure("%d lines from %d processes and pages scanned for %d secrets (%d printed on purpose, where allowed)", lines, sources, secrets, allowed)
}
