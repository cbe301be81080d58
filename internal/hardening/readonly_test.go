//go:build hardening

package hardening

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// roMount is a bind mount of a directory of its own that can be made
// read-only and writable again: a read-only volume, which stops root too
// (chmod does not).
type roMount struct {
	t        *testing.T
	src, dir string
}

// bindMount bind-mounts a new directory on another; it returns false when
// this machine does not allow it.
func bindMount(t *testing.T) (*roMount, bool) {
	t.Helper()
	base := t.TempDir()
	m := &roMount{t: t, src: filepath.Join(base, "src"), dir: filepath.Join(base, "data")}
	for _, d := range []string{m.src, m.dir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mount", "--bind", m.src, m.dir).CombinedOutput(); err != nil {
		t.Logf("cannot bind-mount (%v: %s)", err, bytes.TrimSpace(out))
		return nil, false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", m.dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", m.dir, err, out)
		}
		_ = exec.Command("umount", "-l", m.dir).Run() // the read-only one on top, if a test failed before taking it away
	})
	return m, true
}

// readOnly makes the directory read-only (true) or writable again
// (false). The kernel refuses to remount a mount read-only while a file
// on it is open for writing (history.db is), so a second, read-only bind
// mount of the same directory goes on top: every file opened or created
// from then on is on a read-only file system; a file already open for
// writing keeps writing underneath. Writable again takes the top mount
// away.
func (m *roMount) readOnly(ro bool) {
	m.t.Helper()
	if !ro {
		if out, err := exec.Command("umount", m.dir).CombinedOutput(); err != nil {
			m.t.Fatalf("umount %s: %v: %s", m.dir, err, out)
		}
		return
	}
	if out, err := exec.Command("mount", "--bind", m.src, m.dir).CombinedOutput(); err != nil {
		m.t.Fatalf("mount --bind %s: %v: %s", m.dir, err, out)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", m.dir).CombinedOutput(); err != nil {
		m.t.Fatalf("mount -o remount,ro,bind %s: %v: %s", m.dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "probe"), nil, 0o600); err == nil {
		m.t.Fatalf("%s still takes writes after mounting it read-only", m.dir)
	}
}

// TestReadOnlyDataDir makes the data directory a read-only volume before
// the start, and while fleet2mqtt runs.
func TestReadOnlyDataDir(t *testing.T) {
	if _, ok := bindMount(t); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatal("bind mounts are needed for this case")
		}
		t.Skip("this machine does not allow a bind mount (needs root)")
	}
	t.Run("at start", testReadOnlyAtStart)
	t.Run("mid-run", testReadOnlyMidRun)
}

func testReadOnlyAtStart(t *testing.T) {
	r := trial(t, areaFaults,
		"fleet2mqtt starts on a data directory that is a read-only bind mount (root cannot write it either): empty, and holding what an earlier run left (certificates, setup, retained messages, history)",
		"the start fails at once with one error naming the directory, that it must be writable, what is kept there and the cause (read-only file system), and exit code 1; nothing in the directory changes")
	for _, filled := range []bool{false, true} {
		m, _ := bindMount(t)
		f := newFleet(t, fmt.Sprintf("readonly-start-%v", filled), withDataDir(m.dir))
		if filled {
			f.mustStart()
			id := f.identities(1)[0]
			car := connectRaw(t, f, id, dialOptions{})
			sendRecord(t, car, id.VIN, 50)
			car.close()
			if code := f.stop(); code != 0 {
				r.fatalf(t, "exit code %d", code)
			}
		}
		before := tree(t, m.dir)
		m.readOnly(true)
		err := f.start()
		table.faults.Add(1)
		if err == nil {
			f.stop()
			r.fatalf(t, "fleet2mqtt started on a read-only data directory")
		}
		msg := err.Error()
		for _, want := range []string{"data_dir " + m.dir + " must be writable", "read-only file system"} {
			if !strings.Contains(msg, want) {
				r.errorf(t, "the failed start does not say %q:\n%s", want, msg)
			}
		}
		f.mu.Lock()
		exitErr := f.exitErr
		f.mu.Unlock()
		var code int
		if ee, ok := exitErr.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 1 {
			r.errorf(t, "exit code %d (%v), want 1", code, exitErr)
		}
		if diff := diffTrees(before, tree(t, m.dir)); len(diff) > 0 {
			r.errorf(t, "the directory changed: %v", diff)
		}
		if filled {
			r.figure("with an earlier run's files: exit code %d, %q", code, shorten(lastLine(f.out.tail(3)), 400))
		} else {
			r.figure("empty: exit code %d", code)
		}
		m.readOnly(false)
	}
}

func testReadOnlyMidRun(t *testing.T) {
	r := trial(t, areaFaults,
		"while a car streams (a record every 100 ms) into the embedded broker, the data directory (a bind mount) is remounted read-only for 10 s of 1 s persist intervals; then SIGTERM; then it is writable again and fleet2mqtt starts on it",
		"every record is still acknowledged and published; the failing saves are logged with the cause (read-only file system) and back off; /healthz answers 503 degraded and fleet2mqtt_mqtt_retained_save_failing is 1; the stop exits non-zero, saying the retained messages were not saved; nothing in the directory changed while read-only; the next start finds every file whole (no retained file set aside as corrupt, homeassistant.json, values.json and the activity files parse, history.db opens) and no temporary file, and the retained state is the last save's or newer")
	m, _ := bindMount(t)
	f := startFleet(t, "readonly-midrun", withDataDir(m.dir))
	id := f.identities(1)[0]
	car := connectRaw(t, f, id, dialOptions{})
	sub := subscribe(t, f.MQTT, subOptions{Filter: "tesla/" + id.VIN + "/Soc"})
	sendRecord(t, car, id.VIN, 10)
	if !eventually(30*time.Second, func() bool {
		raw, _ := os.ReadFile(retainedFile(f))
		return bytes.Contains(raw, []byte(id.VIN+"/Soc"))
	}) {
		r.fatalf(t, "the car's state was not saved within 30 s")
	}
	time.Sleep(1500 * time.Millisecond) // one more persist interval: the saved state is the car's 10
	before := tree(t, m.dir)
	mark := f.out.mark()
	m.readOnly(true)
	table.faults.Add(1)
	acked := 0
	for i := range 100 {
		sendRecord(t, car, id.VIN, float64(11+i%80))
		acked++
		time.Sleep(100 * time.Millisecond)
	}
	lastSoc := fmt.Sprint(float64(11 + 99%80))
	if !eventually(10*time.Second, func() bool { p, _ := sub.lastPayload("tesla/" + id.VIN + "/Soc"); return p == lastSoc }) {
		p, _ := sub.lastPayload("tesla/" + id.VIN + "/Soc")
		r.errorf(t, "the subscriber's last Soc is %q, want %s: records not published with the directory read-only", p, lastSoc)
	}
	errLines := f.out.find(mark, func(l string) bool {
		return strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`)
	})
	roLines := 0
	for _, l := range errLines {
		if strings.Contains(l, "read-only file system") {
			roLines++
		}
	}
	if roLines == 0 {
		r.errorf(t, "no log line says the directory is read-only")
	}
	saveLines := len(f.out.find(mark, func(l string) bool { return strings.HasPrefix(logMsg(l), "could not save retained MQTT messages") }))
	if saveLines > 2 {
		r.errorf(t, "%d log lines about failing retained saves in 10 s, want them to back off", saveLines)
	}
	code, body, err := f.get("/healthz")
	if err != nil || code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "degraded" {
		r.errorf(t, "/healthz: %d %q %v, want 503 degraded", code, body, err)
	}
	failing := f.metric("fleet2mqtt_mqtt_retained_save_failing")
	if failing != 1 {
		r.errorf(t, "fleet2mqtt_mqtt_retained_save_failing = %v", failing)
	}
	car.close()
	stopMark := f.out.mark()
	exit := f.stop()
	if exit == 0 {
		r.errorf(t, "exit code 0 after the final save failed")
	}
	if len(f.out.find(stopMark, func(l string) bool { return strings.Contains(l, "not saved at shutdown") })) == 0 {
		r.errorf(t, "no log line says the retained messages were not saved at shutdown")
	}
	if diff := diffTrees(before, tree(t, m.dir)); len(diff) > 0 {
		r.errorf(t, "the directory changed while read-only: %v", diff)
	}

	m.readOnly(false)
	f.mustStart()
	if bad, _ := filepath.Glob(filepath.Join(m.dir, "mqtt", "*.corrupt*")); len(bad) > 0 {
		r.errorf(t, "a retained file was set aside as corrupt: %v", bad)
	}
	var checked []string
	_ = filepath.WalkDir(m.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(m.dir, path)
		if strings.Contains(d.Name(), ".tmp") {
			r.errorf(t, "temporary file %s after the start", rel)
		}
		if strings.HasSuffix(d.Name(), ".json") {
			raw, err := os.ReadFile(path)
			if err != nil || !json.Valid(raw) {
				r.errorf(t, "%s is torn (%v)", rel, err)
			}
			checked = append(checked, rel)
		}
		return nil
	})
	sub2 := subscribe(t, f.MQTT, subOptions{Filter: "tesla/" + id.VIN + "/Soc"})
	sub2.settle(time.Second, 10*time.Second)
	if p, _ := sub2.lastPayload("tesla/" + id.VIN + "/Soc"); markerless(p) != 10 {
		r.errorf(t, "retained Soc %q after the restart, want the last save's (10)", p)
	}
	p, _ := sub2.lastPayload("tesla/" + id.VIN + "/Soc")
	r.figure("%d records acknowledged and published while read-only; %d warning or error lines naming the read-only file system, %d about retained saves (backing off); /healthz %d %s; save_failing %v; exit code %d; after the restart %d JSON files whole (%s), history.db opened, retained Soc %s (the last save's)",
		acked, roLines, saveLines, code, strings.TrimSpace(body), failing, exit, len(checked), strings.Join(checked, ", "), p)
}

// markerless reads a number payload, or -1.
func markerless(p string) float64 {
	var v float64
	if _, err := fmt.Sscan(p, &v); err != nil {
		return -1
	}
	return v
}
