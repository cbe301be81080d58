//go:build hardening

package hardening

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// disk is a small tmpfs mounted for a test, to run out of space on
// purpose.
type disk struct {
	t   *testing.T
	dir string
}

// smallDisk mounts a tmpfs of size (such as "2m" or "12k") in a new
// directory; it returns false when this machine does not allow it.
func smallDisk(t *testing.T, size string) (*disk, bool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("cannot mount a tmpfs (%v: %s)", err, bytes.TrimSpace(out))
		return nil, false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return &disk{t: t, dir: dir}, true
}

// fill writes a file until the disk is full.
func (d *disk) fill() {
	d.t.Helper()
	f, err := os.Create(filepath.Join(d.dir, "filler"))
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		d.t.Fatal(err)
	}
	if f == nil {
		return
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				d.t.Fatalf("fill disk: %v", err)
			}
			return
		}
	}
}

// free removes the filler.
func (d *disk) free() {
	if err := os.Remove(filepath.Join(d.dir, "filler")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.t.Fatal(err)
	}
}

// resize changes the disk's size.
func (d *disk) resize(size string) {
	d.t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, d.dir).CombinedOutput(); err != nil {
		d.t.Fatalf("remount %s: %v: %s", d.dir, err, out)
	}
}

// tree returns a hash of every file under dir, by path relative to dir.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := sha256.Sum256(raw)
		out[rel] = fmt.Sprintf("%x (%d bytes)", sum[:8], len(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffTrees describes how two trees differ.
func diffTrees(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		switch w, ok := after[k]; {
		case !ok:
			d = append(d, k+" removed")
		case w != v:
			d = append(d, k+" changed "+v+" → "+w)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, k+" appeared")
		}
	}
	return d
}

// TestDiskFull runs out of space under the data directory while
// fleet2mqtt runs, and at every point of its first start.
func TestDiskFull(t *testing.T) {
	if _, ok := smallDisk(t, "64k"); !ok {
		if os.Geteuid() == 0 {
			t.Skip("this machine lets root not mount a tmpfs, and a read-only directory does not stop root: no way to run out of space here")
		}
		testReadOnlyDataDir(t)
		return
	}
	t.Run("while running", testDiskFullRunning)
	t.Run("at first start", testDiskFullAtStart)
}

func testDiskFullRunning(t *testing.T) {
	r := trial(t, areaFaults,
		"the data directory (a 2 MB tmpfs) fills up while 5 cars stream into the embedded broker; fleet2mqtt is then stopped, the space freed and fleet2mqtt started again",
		"records are still acknowledged and published (publishing needs no disk); saving retained messages fails with a log line naming the cause (no space left on device); no file in the data directory changes, none is left half-written, no temporary file remains; after the restart the last complete save is restored")
	d, _ := smallDisk(t, "2m")
	f := startFleet(t, "diskfull", withDataDir(filepath.Join(d.dir, "data")))
	p := newPool(t, poolConfig{URL: f.carURL(), TLS: f.carTLS(), IDs: f.identities(5), Fields: 3, AckTimeout: 10 * time.Second, MaxBackoff: time.Second})
	if err := p.connect(time.Minute); err != nil {
		r.fatalf(t, "%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stream(ctx, 20*time.Millisecond, -1)
	if !waitAcks(p, 0, 15, time.Minute) {
		r.fatalf(t, "cars do not stream")
	}
	cancel()
	p.wait()
	p.flush(time.Minute)
	synced := p.led.last()
	syncMark := "sync-" + rand.Text()
	if err := publishRetained(f.MQTT, "hardening/sync", syncMark); err != nil {
		r.fatalf(t, "%v", err)
	}
	if !eventually(30*time.Second, func() bool {
		raw, _ := os.ReadFile(clientsRetainedFile(f)) // a client's topic
		return bytes.Contains(raw, []byte(syncMark))
	}) {
		r.fatalf(t, "retained messages not saved within 30 s")
	}
	before := tree(t, f.DataDir)

	d.fill()
	table.faults.Add(1)
	mark := f.out.mark()
	acked := p.led.count()
	ctx, cancel = context.WithCancel(context.Background())
	p.stream(ctx, 20*time.Millisecond, -1)
	if !waitAcks(p, acked, 15, time.Minute) {
		r.errorf(t, "records are not acknowledged any more with the disk full")
	}
	line, err := f.out.waitFrom(context.Background(), mark, nil, func(l string) bool {
		return strings.Contains(l, "no space left on device")
	})
	if err != nil {
		r.errorf(t, "no log line says the disk is full: %v", err)
	}
	cancel()
	p.wait()
	if left := p.flush(time.Minute); left > 0 {
		r.errorf(t, "%d cars wait for acknowledgements with the disk full", left)
	}
	p.stop()
	code := f.stop()
	if diff := diffTrees(before, tree(t, f.DataDir)); len(diff) > 0 {
		r.errorf(t, "the data directory changed while the disk was full: %v", diff)
	}

	d.free()
	f.mustStart()
	if bad, _ := filepath.Glob(retainedFile(f) + ".corrupt*"); len(bad) > 0 {
		r.errorf(t, "the retained file was set aside as corrupt: %v", bad)
	}
	sub := subscribe(t, f.MQTT, subOptions{Filter: "#"})
	sub.settle(time.Second, 10*time.Second)
	if got, _ := sub.lastPayload("hardening/sync"); got != syncMark {
		r.errorf(t, "retained hardening/sync = %q after the restart, want the last complete save's %q", got, syncMark)
	}
	for vin, want := range synced {
		if got, _ := sub.lastPayload("tesla/" + vin + "/" + markerField); markerSeq(got) < want {
			r.errorf(t, "%s: retained %q after the restart, older than the saved record %d", vin, got, want)
		}
	}
	r.figure("error logged: %s", shorten(line, 200))
	r.figure("exit code of the stop with the disk full: %d", code)
}

// testDiskFullAtStart starts fleet2mqtt for the first time on disks so
// small that it runs out of space at each point of its start (writing the
// development certificates, the setup page's password), then again with
// room to spare.
func testDiskFullAtStart(t *testing.T) {
	r := trial(t, areaFaults,
		"first start on a data directory of 4 KB to 48 KB (tmpfs): fleet2mqtt runs out of space while writing its development certificates or its generated setup password; then the disk grows to 4 MB and fleet2mqtt starts again",
		"a start that fails says why (no space left on device) and exits; a stop whose final save finds no room exits non-zero and says so; no empty or temporary file is left; the next start with room succeeds with what the first one left")
	failed, stoppedUnsaved := 0, 0
	for kb := 4; kb <= 48; kb += 4 {
		d, _ := smallDisk(t, fmt.Sprintf("%dk", kb))
		f := newFleet(t, fmt.Sprintf("diskfull-start-%dk", kb), withDataDir(filepath.Join(d.dir, "data")), withConfig("setup.password", ""))
		err := f.start()
		table.faults.Add(1)
		if err == nil {
			f.registerGeneratedPassword()
			mark := f.out.mark()
			if code := f.stop(); code != 0 {
				// A start that just fitted may find no room for the
				// final save: then it must exit non-zero and say so.
				said := f.out.find(mark, func(l string) bool {
					return strings.Contains(l, "not saved at shutdown") && strings.Contains(l, "no space left on device")
				})
				if len(said) == 0 {
					r.errorf(t, "%d KB: exit code %d", kb, code)
				} else {
					stoppedUnsaved++
				}
			}
		} else {
			failed++
			if !strings.Contains(err.Error(), "no space left on device") {
				r.errorf(t, "%d KB: the start failed without saying the disk is full:\n%v", kb, err)
			}
			_ = filepath.WalkDir(f.DataDir, func(path string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() {
					return nil
				}
				if info, err := de.Info(); err == nil && info.Size() == 0 {
					r.errorf(t, "%d KB: empty file left behind: %s", kb, path)
				}
				if strings.Contains(de.Name(), ".tmp") {
					r.errorf(t, "%d KB: temporary file left behind: %s", kb, path)
				}
				return nil
			})
		}
		f.registerGeneratedPassword()
		d.resize("4m")
		if err := f.start(); err != nil {
			r.errorf(t, "%d KB, then 4 MB: fleet2mqtt does not start again after running out of space:\n%v", kb, err)
			continue
		}
		f.registerGeneratedPassword()
		if code := f.stop(); code != 0 {
			r.errorf(t, "%d KB: exit code %d", kb, code)
		}
	}
	r.figure("12 disk sizes; %d first starts ran out of space; %d started but found no room for the final save (exit code 1, said so)", failed, stoppedUnsaved)
}

// registerGeneratedPassword finds the setup password fleet2mqtt printed
// (once, on purpose) and adds it to the secrets: it may appear in that
// line only.
func (f *fleet) registerGeneratedPassword() {
	const intro = "shown only this once): "
	for _, l := range f.out.find(0, func(l string) bool { return strings.Contains(l, intro) }) {
		_, pw, _ := strings.Cut(l, intro)
		logs.secretAllowed("generated setup password", strings.TrimSpace(pw), intro)
	}
}

// testReadOnlyDataDir stands in for a full disk where no tmpfs can be
// mounted: the data directory cannot be written.
func testReadOnlyDataDir(t *testing.T) {
	r := trial(t, areaFaults,
		"first start on a data directory that cannot be written (no tmpfs could be mounted here), then on a writable one",
		"the failed start says why and exits; the next start succeeds")
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, "readonly", withDataDir(filepath.Join(dir, "data")))
	err := f.start()
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		r.errorf(t, "start on a read-only directory: %v, want an error saying permission denied", err)
	}
	_ = os.Chmod(dir, 0o700)
	if err := f.start(); err != nil {
		r.errorf(t, "start once writable: %v", err)
	}
}

// shorten cuts s to n bytes.
func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
