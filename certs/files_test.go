package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// testPair is a server certificate for loopback, issued by its own
// authority, as the PEM files a certificate tool would write: the chain
// (leaf, then the authority, so that chainCA can work out the CA) and the
// key.
type testPair struct {
	ca      *Authority
	leaf    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
}

func newTestPair(t *testing.T) testPair {
	t.Helper()
	ca, err := NewServerAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return testPair{
		ca:      ca,
		leaf:    leaf,
		certPEM: append(chain, ca.CertPEM...),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
}

// testClock is a clock that moves only when told to.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logRecorder is a slog.Handler that keeps every record, for tests that
// check what was logged. Handshakes log from the server's goroutines.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns, as text, the records at level whose message contains msg.
func (l *logRecorder) find(level slog.Level, msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// servedLeaf connects to addr as a car would, trusting the authorities of
// pairs, and returns the certificate the server presented.
func servedLeaf(t *testing.T, addr string, pairs ...testPair) *x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	for _, p := range pairs {
		roots.AddCert(p.ca.Cert)
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// firstPEM returns the DER of the first certificate in a PEM bundle.
func firstPEM(b []byte) []byte {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	return block.Bytes
}

// certPaths are the two files the tests configure.
type certPaths struct{ cert, key string }

// writeFilePair writes p to paths the simple way: rewriting each file in
// place, as an editor or `cp` does.
func writeFilePair(t *testing.T, paths certPaths, p testPair) {
	t.Helper()
	writeTestFile(t, paths.cert, p.certPEM)
	writeTestFile(t, paths.key, p.keyPEM)
	// File systems with a coarse clock could give the rewritten files the
	// modification time they had; a real renewal happens much later.
	later := time.Now().Add(time.Hour)
	for _, f := range []string{paths.cert, paths.key} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
}

// renamePair writes p into new files and renames them over paths, as tools
// that write atomically do.
func renamePair(t *testing.T, paths certPaths, p testPair) {
	t.Helper()
	for _, f := range []struct {
		path string
		data []byte
	}{{paths.key, p.keyPEM}, {paths.cert, p.certPEM}} {
		tmp := f.path + ".new"
		writeTestFile(t, tmp, f.data)
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// linkPair writes p as the next version in an archive folder and points
// the configured paths, symbolic links, at it, as certbot does with
// live/<name>/fullchain.pem and privkey.pem.
func linkPair(t *testing.T, paths certPaths, p testPair) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(paths.cert), "archive")
	n := 1
	for {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("fullchain%d.pem", n))); err != nil {
			break
		}
		n++
	}
	for _, f := range []struct {
		path, name string
		data       []byte
	}{{paths.key, "privkey", p.keyPEM}, {paths.cert, "fullchain", p.certPEM}} {
		target := filepath.Join(dir, fmt.Sprintf("%s%d.pem", f.name, n))
		writeTestFile(t, target, f.data)
		tmp := f.path + ".new"
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// startCertFiles writes a into a new directory and serves it through
// certFiles on loopback, looking at the files again every minute of the
// returned clock.
func startCertFiles(t *testing.T, a testPair, write func(*testing.T, certPaths, testPair)) (*Files, certPaths, *testClock, *logRecorder, string) {
	t.Helper()
	dir := t.TempDir()
	paths := certPaths{cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem")}
	write(t, paths, a)
	clock := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	logs := &logRecorder{}
	files, err := NewFiles(paths.cert, paths.key, slog.New(logs), FilesOptions{
		Listener: "vehicle listener", CertKey: "vehicle.cert_file", KeyKey: "vehicle.key_file",
		Recheck: time.Minute, Now: clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.ServeTLS(t, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate})
	return files, paths, clock, logs, addr
}

// TestVehicleCertRenewed replaces the configured files in each way
// certificate tools do: the listener goes on serving the old certificate
// until the check interval has passed, then serves the new one, and the CA
// the setup page pushes follows it.
func TestVehicleCertRenewed(t *testing.T) {
	a, b := newTestPair(t), newTestPair(t)
	tests := []struct {
		name  string
		write func(*testing.T, certPaths, testPair)
	}{
		{"rewritten in place", writeFilePair},
		{"renamed over", renamePair},
		{"symbolic links switched", linkPair},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, paths, clock, logs, addr := startCertFiles(t, a, tt.write)
			if got := servedLeaf(t, addr, a, b); !got.Equal(a.leaf) {
				t.Fatalf("served %v at start, want A", got.Subject)
			}
			if got := firstPEM(files.CA()); !bytes.Equal(got, a.ca.Cert.Raw) {
				t.Fatal("CA at start is not A's authority")
			}

			tt.write(t, paths, b)
			if got := servedLeaf(t, addr, a, b); !got.Equal(a.leaf) {
				t.Error("the files were looked at again before the check interval passed")
			}
			clock.add(time.Minute)
			if got := servedLeaf(t, addr, a, b); !got.Equal(b.leaf) {
				t.Fatalf("served serial %v after the renewal, want B's %v", got.SerialNumber, b.leaf.SerialNumber)
			}
			if got := firstPEM(files.CA()); !bytes.Equal(got, b.ca.Cert.Raw) {
				t.Error("the CA for cars did not follow the renewed certificate")
			}
			loaded := logs.find(slog.LevelInfo, "loaded the renewed")
			if len(loaded) != 1 || !strings.Contains(loaded[0], "subject=CN=127.0.0.1") ||
				!strings.Contains(loaded[0], "not_after="+b.leaf.NotAfter.UTC().Format(time.RFC3339)) {
				t.Errorf("info logs about the renewal: %q, want one with the subject and not_after", loaded)
			}
			if warns := logs.find(slog.LevelWarn, ""); len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
		})
	}
}

// TestVehicleCertBrokenRenewal breaks the files in ways a renewal caught
// half way does: the previous certificate goes on being served, the
// problem is logged once with the file and the error, and the next good
// pair is taken.
func TestVehicleCertBrokenRenewal(t *testing.T) {
	a, b := newTestPair(t), newTestPair(t)
	tests := []struct {
		name   string
		damage func(*testing.T, certPaths)
		want   string // in the warning
	}{
		{"half-written certificate", func(t *testing.T, p certPaths) {
			writeTestFile(t, p.cert, b.certPEM[:len(b.certPEM)/3])
		}, "failed to find any PEM data in certificate input"},
		{"certificate renewed before the key", func(t *testing.T, p certPaths) {
			writeTestFile(t, p.cert, b.certPEM)
		}, "private key does not match public key"},
		{"empty key", func(t *testing.T, p certPaths) {
			writeTestFile(t, p.key, nil)
		}, "failed to find any PEM data in key input"},
		{"key file gone", func(t *testing.T, p certPaths) {
			if err := os.Remove(p.key); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, paths, clock, logs, addr := startCertFiles(t, a, writeFilePair)
			tt.damage(t, paths)
			for range 2 { // the second look finds no change: no new warning
				clock.add(time.Minute)
				if got := servedLeaf(t, addr, a, b); !got.Equal(a.leaf) {
					t.Fatalf("served %v from broken files, want A still", got.SerialNumber)
				}
				if got := firstPEM(files.CA()); !bytes.Equal(got, a.ca.Cert.Raw) {
					t.Fatal("the CA for cars changed to that of broken files")
				}
			}
			warns := logs.find(slog.LevelWarn, "cannot be loaded")
			if len(warns) != 1 {
				t.Fatalf("warnings %q, want exactly one", warns)
			}
			for _, want := range []string{"cert_file=" + paths.cert, "key_file=" + paths.key, tt.want} {
				if !strings.Contains(warns[0], want) {
					t.Errorf("warning %q lacks %q", warns[0], want)
				}
			}

			writeFilePair(t, paths, b)
			clock.add(time.Minute)
			if got := servedLeaf(t, addr, a, b); !got.Equal(b.leaf) {
				t.Fatal("a good pair after broken files was not taken")
			}
			if got := firstPEM(files.CA()); !bytes.Equal(got, b.ca.Cert.Raw) {
				t.Error("the CA for cars did not follow the good pair")
			}
		})
	}
}

// TestVehicleCertTouched rewrites the files with what they held: nothing
// is reported as renewed.
func TestVehicleCertTouched(t *testing.T) {
	a := newTestPair(t)
	_, paths, clock, logs, addr := startCertFiles(t, a, writeFilePair)
	writeFilePair(t, paths, a)
	clock.add(time.Minute)
	if got := servedLeaf(t, addr, a); !got.Equal(a.leaf) {
		t.Fatal("a touched pair is no longer served")
	}
	if got := logs.find(slog.LevelInfo, "loaded the renewed"); len(got) > 0 {
		t.Errorf("unchanged certificate reported as renewed: %q", got)
	}
}

// TestVehicleCertConcurrentHandshakes lets many handshakes ask for the
// certificate, looking at the files every time, while the files change
// under them (run with -race): each gets a whole pair, A or B.
func TestVehicleCertConcurrentHandshakes(t *testing.T) {
	a, b := newTestPair(t), newTestPair(t)
	dir := t.TempDir()
	paths := certPaths{cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem")}
	renamePair(t, paths, a)
	files, err := NewFiles(paths.cert, paths.key, nil, FilesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 200 {
				c, err := files.GetCertificate(&tls.ClientHelloInfo{})
				if err != nil {
					errs <- err
					return
				}
				leaf := c.Leaf
				ca := firstPEM(files.CA())
				if !leaf.Equal(a.leaf) && !leaf.Equal(b.leaf) {
					errs <- fmt.Errorf("served serial %v, neither A nor B", leaf.SerialNumber)
					return
				}
				if ca == nil {
					errs <- fmt.Errorf("no CA")
					return
				}
			}
		})
	}
	for i := range 20 {
		renamePair(t, paths, []testPair{b, a}[i%2])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestVehicleTLSCertFile checks the wiring: with vehicle.cert_file the
// listener serves the file's certificate, the setup page's CA is its
// authority, and files that cannot be loaded at start are an error naming
// the setting.
func TestFilesFromConfig(t *testing.T) {
	a := newTestPair(t)
	dir := t.TempDir()
	paths := certPaths{cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem")}
	writeFilePair(t, paths, a)
	vehicleCA, err := NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	clientCA := filepath.Join(dir, "vehicle-ca.pem")
	writeTestFile(t, clientCA, vehicleCA.CertPEM)
	broken := filepath.Join(dir, "broken.pem")
	writeTestFile(t, broken, a.certPEM[:40])
	otherKey := filepath.Join(dir, "other-key.pem")
	writeTestFile(t, otherKey, newTestPair(t).keyPEM)

	tests := []struct {
		name, cert, key string
		wantErr         string // "" = loads
	}{
		{"good pair", paths.cert, paths.key, ""},
		{"missing file", filepath.Join(dir, "nothing.pem"), paths.key, "vehicle.cert_file: "},
		{"broken certificate", broken, paths.key, "vehicle.cert_file: "},
		{"broken key", paths.cert, broken, "vehicle.cert_file: "},
		{"key of another certificate", paths.cert, otherKey, "vehicle.cert_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{CertFile: tt.cert, KeyFile: tt.key, ClientCAFiles: []string{clientCA}}
			files, err := NewFiles(cfg.CertFile, cfg.KeyFile, nil, FilesOptions{})
			// As the configuration's owner reports it.
			err = configerr.Prefix("vehicle", err)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one starting with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			files.Configure(tc)
			if tc.ClientCAs, err = cfg.ClientCAs(); err != nil {
				t.Fatal(err)
			}
			if tc.GetCertificate == nil || len(tc.Certificates) > 0 {
				t.Fatal("the certificate is not served through GetCertificate")
			}
			addr := testenv.ServeTLS(t, tc)
			if got := servedLeaf(t, addr, a); !got.Equal(a.leaf) {
				t.Errorf("served %v, want the file's certificate", got.Subject)
			}
			if got := firstPEM(files.CA()); !bytes.Equal(got, a.ca.Cert.Raw) {
				t.Error("the setup page's CA is not the file's authority")
			}
			ca, err := FileCA(cfg.CertFile, cfg.KeyFile)
			if err != nil || !bytes.Equal(ca, files.CA()) {
				t.Errorf("FileCA = %v, want the served CA", err)
			}
		})
	}
	missing := configerr.Prefix("vehicle", Config{ClientCAFiles: []string{broken}}.Validate())
	if missing != nil {
		t.Errorf("Validate read the files: %v", missing)
	}
	if _, err := (Config{ClientCAFiles: []string{broken}}).ClientCAs(); err == nil || !strings.HasPrefix(configerr.Prefix("vehicle", err).Error(), "vehicle.client_ca_files: ") {
		t.Errorf("ClientCAs of a broken bundle: %v", err)
	}
}

// TestPairStamp checks what counts as a change of the files: another
// file, size or modification time, or a file appearing or going; a file
// replaced by one of the same size and time (copied with its time kept)
// is a change too.
func TestPairStamp(t *testing.T) {
	then := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		change func(t *testing.T, cert string)
		equal  bool
	}{
		{"untouched", func(*testing.T, string) {}, true},
		{"replaced, same size and time", func(t *testing.T, cert string) {
			writeTestFile(t, cert+".new", []byte("certificate"))
			if err := os.Chtimes(cert+".new", then, then); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(cert+".new", cert); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"rewritten, another size", func(t *testing.T, cert string) {
			writeTestFile(t, cert, []byte("certificate 2"))
			if err := os.Chtimes(cert, then, then); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"touched", func(t *testing.T, cert string) {
			if err := os.Chtimes(cert, then.Add(time.Second), then.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"gone", func(t *testing.T, cert string) {
			if err := os.Remove(cert); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			for _, f := range []string{cert, key} {
				writeTestFile(t, f, []byte("certificate"))
				if err := os.Chtimes(f, then, then); err != nil {
					t.Fatal(err)
				}
			}
			before, err := stampPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, cert)
			after, _ := stampPair(cert, key)
			if got := after.equal(before); got != tt.equal {
				t.Errorf("equal = %v, want %v", got, tt.equal)
			}
		})
	}
	// Files missing at both looks are no change: no second warning.
	none := filepath.Join(t.TempDir(), "none.pem")
	a, errA := stampPair(none, none)
	b, errB := stampPair(none, none)
	if errA == nil || errB == nil || !a.equal(b) {
		t.Errorf("missing files: errors %v, %v; equal %v, want errors and equal", errA, errB, a.equal(b))
	}
}

// writeTestFile writes data to path, mode 0600, making its directory.
func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
