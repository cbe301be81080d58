//go:build hardening

package hardening

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/command/protocol"
	"github.com/fleet2mqtt/fleet2mqtt/internal/atomicfile"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// The re-exec pattern: the suite's own test binary, started with
// writerEnv naming a data directory, runs the writers below instead of the
// tests, until it is killed.
const (
	writerEnv     = "HARDENING_WRITER_DATA_DIR"
	writerKeysEnv = "HARDENING_WRITER_KEYS"
	writerFromEnv = "HARDENING_WRITER_FROM"
	writerVIN     = "5YJ3E1EA8SF000001"
	writerPad     = 192 << 10 // each file's size, so that a kill often lands mid-write
)

// writerFiles are the files the writers replace, relative to the data
// directory, where fleet2mqtt keeps them (the writers are the functions
// fleet2mqtt calls for each).
var writerFiles = map[string]string{
	"owner token":      "setup/owner-token.json",                // fleetapi.FileTokenStore.SaveToken (refresh, rotation)
	"application key":  "setup/private-key.pem",                 // fleetapi.SavePrivateKey
	"setup password":   "setup/password.json",                   // fleetapi.WriteFileAtomic, as setup's loadPassword
	"command session":  "commands/" + writerVIN + "-vcsec.json", // fleetapi.WriteFileAtomic, as command's sessionStore
	"activity tracker": "activity/" + writerVIN + ".json",       // atomicfile.Write, as bridge.Derived.save
	"cars' values":     "values.json",                           // atomicfile.Write, as bridge.SaveValues
	"history (bbolt)":  "history.db",                            // history.Store.Append
}

// runWriters is the child: every writer replaces its file in a loop, each
// version n (from writerFromEnv on) a complete file that says n, and
// prints "<writer> <n>" once version n is in place.
func runWriters(dataDir string) {
	from, _ := strconv.Atoi(os.Getenv(writerFromEnv))
	for _, d := range []string{"setup", "commands", "activity"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o700); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	keys, err := loadWriterKeys(os.Getenv(writerKeysEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	hist, err := history.Open(filepath.Join(dataDir, writerFiles["history (bbolt)"]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	done := func(name string, n int) {
		out.Lock()
		defer out.Unlock()
		// One write(2) per line: once it returns, the line is the
		// parent's even if this process dies the next instant.
		_, _ = os.Stdout.WriteString(name + " " + strconv.Itoa(n) + "\n")
	}
	pad := strings.Repeat("p", writerPad)
	path := func(name string) string { return filepath.Join(dataDir, writerFiles[name]) }
	write := map[string]func(n int) error{
		"owner token": func(n int) error {
			return fleetapi.FileTokenStore{Path: path("owner token")}.SaveToken(&oauth2.Token{
				AccessToken: fmt.Sprintf("access-%d-%s", n, pad), RefreshToken: fmt.Sprintf("refresh-%d", n),
				TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
		},
		"application key": func(n int) error {
			return fleetapi.SavePrivateKey(path("application key"), keys[n%len(keys)])
		},
		"setup password": func(n int) error {
			data, _ := json.Marshal(map[string]any{"algorithm": "pbkdf2-sha256", "iterations": n + 1,
				"salt": []byte(pad), "hash": bytes.Repeat([]byte{1}, 32)})
			return fleetapi.WriteFileAtomic(path("setup password"), data, 0o600)
		},
		"command session": func(n int) error {
			data, _ := json.Marshal(protocol.State{VehiclePublicKey: []byte(pad), Epoch: []byte("epoch"), Counter: uint32(n)})
			return fleetapi.WriteFileAtomic(path("command session"), data, 0o600)
		},
		"activity tracker": func(n int) error {
			data, _ := json.Marshal(map[string]any{"version": n, "pad": pad})
			return atomicfile.Write(path("activity tracker"), data, 0o600)
		},
		"cars' values": func(n int) error {
			data, _ := json.Marshal(map[string]any{writerVIN: map[string]any{"BatteryLevel": n, "Pad": pad}})
			return atomicfile.Write(path("cars' values"), data, 0o600)
		},
		"history (bbolt)": func(n int) error {
			end := time.Unix(1_700_000_000+int64(n), 0)
			return hist.Append(activity.Session{Kind: activity.KindDrive, VIN: writerVIN, Start: end.Add(-time.Minute), End: end,
				EndReason: pad[:4096]})
		},
	}
	for name, w := range write {
		go func() {
			for n := from; ; n++ {
				if err := w(n); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
					os.Exit(2)
				}
				done(name, n)
			}
		}()
	}
	select {}
}

func loadWriterKeys(dir string) ([]*ecdsa.PrivateKey, error) {
	var keys []*ecdsa.PrivateKey
	for i := range 4 {
		k, err := fleetapi.LoadPrivateKey(filepath.Join(dir, fmt.Sprintf("key-%d.pem", i)))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// writerVersion reads the version a writer's file holds, or an error when
// the file is not a complete one.
func writerVersion(dataDir, name string, keys []*ecdsa.PrivateKey) (int, error) {
	path := filepath.Join(dataDir, writerFiles[name])
	if name == "history (bbolt)" {
		h, err := history.Open(path)
		if err != nil {
			return 0, err
		}
		defer h.Close()
		ses, err := h.List(writerVIN, history.Filter{})
		return len(ses) - 1, err
	}
	if name == "application key" {
		k, err := fleetapi.LoadPrivateKey(path)
		if err != nil {
			return 0, err
		}
		for i, want := range keys {
			if k.Equal(want) {
				return i, nil // a version modulo len(keys)
			}
		}
		return 0, errors.New("a key that was never written")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var v struct {
		AccessToken string `json:"access_token"`
		Iterations  *int   `json:"iterations"`
		Counter     *int   `json:"counter"`
		Version     *int   `json:"version"`
		Values      map[string]struct{ BatteryLevel *int }
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("%d bytes, not JSON: %w", len(raw), err)
	}
	if name == "cars' values" {
		var cars map[string]struct{ BatteryLevel *int }
		if err := json.Unmarshal(raw, &cars); err != nil || cars[writerVIN].BatteryLevel == nil {
			return 0, fmt.Errorf("no value in %d bytes", len(raw))
		}
		return *cars[writerVIN].BatteryLevel, nil
	}
	switch {
	case v.AccessToken != "":
		n, _, _ := strings.Cut(strings.TrimPrefix(v.AccessToken, "access-"), "-")
		if !strings.HasSuffix(v.AccessToken, strings.Repeat("p", writerPad)) {
			return 0, errors.New("access token cut short")
		}
		return strconv.Atoi(n)
	case v.Iterations != nil:
		return *v.Iterations - 1, nil
	case v.Counter != nil:
		return *v.Counter, nil
	case v.Version != nil:
		return *v.Version, nil
	}
	return 0, fmt.Errorf("no version in %d bytes", len(raw))
}

// isWriterTemp reports whether name is a temporary file of an atomic
// writer (fleetapi.WriteFileAtomic, atomicfile.Write).
func isWriterTemp(name string) bool { return strings.Contains(name, ".tmp-") }

// TestKillDuringSecretWrites kills a process while it replaces each of
// fleet2mqtt's small data files over and over, then starts fleet2mqtt on
// what the kills left.
func TestKillDuringSecretWrites(t *testing.T) {
	kills := envInt(t, "HARDENING_WRITE_KILLS", 150)
	r := trial(t, areaFaults,
		fmt.Sprintf("a process runs fleet2mqtt's own writers, each replacing its file in a loop (192 KB a version): the owner token (as a refresh or Tesla's rotation saves it), the application key, the setup password file, a command session, a car's activity tracker, the cars' values, a session appended to history.db (bbolt); it is killed with SIGKILL at a random moment (5–150 ms in), %d times; then fleet2mqtt starts on that data directory (mqtt-retained*.bin and homeassistant.json: KillDuringWrites)", kills),
		"after every kill each file is complete and holds the version last reported written or the one being written (never torn, never older, never a key that was not written); history.db opens and holds every session whose append returned; fleet2mqtt then starts on the directory (reads the password file, the history, the values), removes every temporary file the kills left and logs each")
	dataDir := filepath.Join(t.TempDir(), "data")
	keysDir := t.TempDir()
	var keys []*ecdsa.PrivateKey
	for i := range 4 {
		k, err := fleetapi.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := fleetapi.SavePrivateKey(filepath.Join(keysDir, fmt.Sprintf("key-%d.pem", i)), k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	last := map[string]int{} // the version each file held after the last kill
	for name := range writerFiles {
		last[name] = -1
	}
	sessions := 0 // sessions in history.db after the last kill
	leftovers, seenTemp, midWrite, writes := map[string]int{}, map[string]bool{}, 0, 0
	for k := range kills {
		// Each run writes versions from its own base on, so that a file
		// can only hold the last run's final version or one of this run's.
		base := k * 1_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(environ(), writerEnv+"="+dataDir, writerKeysEnv+"="+keysDir, writerFromEnv+"="+strconv.Itoa(base))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill once the writers run, at a random moment.
		first, ok := <-lines
		if !ok {
			_ = cmd.Wait()
			r.fatalf(t, "kill %d: the writers did not start: %s", k, stderr.String())
		}
		time.Sleep(time.Duration(5+mrand.IntN(145)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		table.faults.Add(1)
		reported := map[string]int{}
		for _, l := range append([]string{first}, drainAll(lines)...) {
			i := strings.LastIndexByte(l, ' ')
			if i < 0 {
				r.fatalf(t, "kill %d: writer said %q", k, l)
			}
			n, err := strconv.Atoi(l[i+1:])
			if err != nil {
				r.fatalf(t, "kill %d: writer said %q", k, l)
			}
			if _, seen := reported[l[:i]]; !seen || n > reported[l[:i]] {
				reported[l[:i]] = n
			}
			writes++
		}
		_ = cmd.Wait()
		if strings.TrimSpace(stderr.String()) != "" {
			r.fatalf(t, "kill %d: a writer failed: %s", k, stderr.String())
		}
		_ = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isWriterTemp(d.Name()) && !seenTemp[path] {
				seenTemp[path] = true
				leftovers[d.Name()[:strings.Index(d.Name(), ".tmp-")]]++
			}
			return nil
		})
		for name := range writerFiles {
			v, err := writerVersion(dataDir, name, keys)
			rep, said := reported[name]
			if name == "history (bbolt)" {
				// Sessions accumulate: every append that returned is kept,
				// and at most the one in flight besides.
				want := sessions
				if said {
					want += rep - base + 1
				}
				if err != nil || (v+1 != want && v+1 != want+1) {
					r.fatalf(t, "kill %d: history.db holds %d sessions (%v), want %d or %d", k, v+1, err, want, want+1)
				}
				if v+1 == want+1 {
					midWrite++
				}
				sessions = v + 1
				continue
			}
			if errors.Is(err, fs.ErrNotExist) && !said && last[name] < 0 {
				continue // killed before its first write ended: no file yet is right
			}
			if err != nil {
				r.fatalf(t, "kill %d: %s (%s) torn: %v", k, name, writerFiles[name], err)
			}
			// The version being written when the kill came.
			older, newer := rep, rep+1
			if !said {
				older, newer = last[name], base
			}
			switch {
			case versionIs(name, v, older, len(keys)):
			case versionIs(name, v, newer, len(keys)):
				midWrite++
			default:
				r.fatalf(t, "kill %d: %s holds version %d; it must be %d (the last written) or %d (the one being written)", k, name, v, older, newer)
			}
			last[name] = v
		}
	}
	// fleet2mqtt on what the kills left: it must start, read every file
	// and remove the temporary files.
	var temps []string
	_ = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isWriterTemp(d.Name()) {
			temps = append(temps, path)
		}
		return nil
	})
	f := newFleet(t, "kill-secret-writes", withDataDir(dataDir), withConfig("setup.password", ""))
	f.mustStart()
	for _, p := range temps {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			r.errorf(t, "%s not removed at start: %v", p, err)
		}
	}
	logged := len(f.out.find(0, func(l string) bool { return strings.Contains(logMsg(l), "temporary file of an interrupted") }))
	if logged != len(temps) {
		r.errorf(t, "%d temporary files, %d log lines about removing them", len(temps), logged)
	}
	if said := f.out.find(0, func(l string) bool { return strings.Contains(l, "password (shown only this once)") }); len(said) > 0 {
		r.errorf(t, "fleet2mqtt made a new setup password: it did not read the one the kills left")
	}
	if code := f.stop(); code != 0 {
		r.errorf(t, "exit code %d", code)
	}
	total := 0
	for _, n := range leftovers {
		total += n
	}
	r.figure("%d kills, %d versions written; every file complete after every kill, %d times already the version being written; %d temporary files left by the kills (%v), %d at the end, all removed by the start (%d log lines)",
		kills, writes, midWrite, total, leftovers, len(temps), logged)
}

// versionIs reports whether a file's version v is version want; the key
// cycles through its keys, so its versions count modulo n.
func versionIs(name string, v, want, n int) bool {
	if name == "application key" {
		return want >= 0 && v == want%n
	}
	return v == want
}

// drainAll reads what is left of lines once the writer is dead.
func drainAll(lines <-chan string) []string {
	var all []string
	for l := range lines {
		all = append(all, l)
	}
	return all
}
