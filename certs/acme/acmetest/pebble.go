// Package acmetest runs Pebble, Let's Encrypt's ACME test server, on
// loopback for tests, with pebble-challtestsrv as its DNS server so that
// any test host name resolves to 127.0.0.1 and challenges are really
// validated against the listener under test.
//
// Both programs come with the Debian package pebble. When they are missing
// Start skips the test, or fails it when CI=true.
package acmetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

// Options describe the Pebble to start.
type Options struct {
	// TLSPort is the port on which Pebble validates TLS-ALPN-01
	// challenges: where the listener under test accepts connections, on
	// 127.0.0.1. Required.
	TLSPort int
	// AlwaysValid makes Pebble accept every challenge without looking
	// (PEBBLE_VA_ALWAYS_VALID=1). Tests prefer real validation.
	AlwaysValid bool
}

// Pebble is a running Pebble. It stops when the test ends.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// ManagementURL is the base of Pebble's management interface (roots,
	// intermediates).
	ManagementURL string
	// HTTPSCAPEM is the authority of Pebble's own HTTPS certificate.
	HTTPSCAPEM []byte

	client *http.Client
}

// Start starts pebble-challtestsrv and Pebble on loopback and waits until
// Pebble answers.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	pebbleBin, err1 := exec.LookPath("pebble")
	dnsBin, err2 := exec.LookPath("pebble-challtestsrv")
	if err1 != nil || err2 != nil {
		const why = "pebble and pebble-challtestsrv are not installed (Debian package: pebble)"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if opts.TLSPort == 0 {
		t.Fatal("acmetest: Options.TLSPort is required")
	}
	dir := t.TempDir()

	ca, err := certs.NewAuthority("fleet2mqtt test: Pebble HTTPS")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	ctx, cancel := context.WithCancel(context.Background())
	var procs []*exec.Cmd
	logs := &syncBuffer{}
	t.Cleanup(func() {
		cancel()
		for _, p := range procs {
			_ = p.Wait()
		}
		if t.Failed() {
			t.Logf("pebble and pebble-challtestsrv output:\n%s", logs.String())
		}
	})
	start := func(cmd *exec.Cmd) {
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", cmd.Path, err)
		}
		procs = append(procs, cmd)
	}

	// The DNS server answers every A query with 127.0.0.1 and no AAAA, so
	// that Pebble dials the listener under test at 127.0.0.1:TLSPort.
	dnsAddr := "127.0.0.1:" + strconv.Itoa(freeTCPUDPPort(t))
	dnsMgmt := "127.0.0.1:" + strconv.Itoa(freeTCPUDPPort(t))
	start(exec.CommandContext(ctx, dnsBin,
		"-dns01", dnsAddr, "-management", dnsMgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""))

	listen := "127.0.0.1:" + strconv.Itoa(freeTCPUDPPort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(freeTCPUDPPort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       freeTCPUDPPort(t), // nothing answers HTTP-01 there
		"tlsPort":                        opts.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, raw)
	cmd := exec.CommandContext(ctx, pebbleBin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	if opts.AlwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	start(cmd)

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	p := &Pebble{
		DirectoryURL:  "https://" + listen + "/dir",
		ManagementURL: "https://" + mgmt,
		HTTPSCAPEM:    ca.CertPEM,
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		},
	}
	waitUp(t, func() error { return probeTCP(dnsMgmt) })
	waitUp(t, func() error {
		resp, err := p.client.Get(p.DirectoryURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("directory: %s", resp.Status)
		}
		return nil
	})
	return p
}

// HTTPClient returns a client that trusts Pebble's HTTPS certificate.
func (p *Pebble) HTTPClient() *http.Client { return p.client }

// RootPEM returns the root Pebble issues under (it changes every start).
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	return p.get(t, "/roots/0")
}

// IntermediatePEM returns the intermediate Pebble issues with.
func (p *Pebble) IntermediatePEM(t testing.TB) []byte {
	t.Helper()
	return p.get(t, "/intermediates/0")
}

func (p *Pebble) get(t testing.TB, path string) []byte {
	t.Helper()
	resp, err := p.client.Get(p.ManagementURL + path)
	if err != nil {
		t.Fatalf("pebble %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble %s: %s %v", path, resp.Status, err)
	}
	return body
}

// waitUp polls probe until it succeeds, failing the test after 30 s.
func waitUp(t testing.TB, probe func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := probe()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func probeTCP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// freeTCPUDPPort returns a loopback port that is free for both TCP and UDP
// right now (a DNS server binds both).
func freeTCPUDPPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free loopback port")
	return 0
}

// FreePort returns a loopback TCP port that is free right now, for a
// listener that must be named before Pebble starts.
func FreePort(t testing.TB) int {
	t.Helper()
	return freeTCPUDPPort(t)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects the output of both processes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
