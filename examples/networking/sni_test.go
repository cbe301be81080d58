package networking_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// The backends of the SNI examples: fleet2mqtt's vehicle listener and
// Home Assistant's own HTTPS.
const (
	exampleFleetAddr = "127.0.0.1:8443"
	exampleHAAddr    = "127.0.0.1:8123"
	haGreeting       = "home assistant\n"
)

// TestNginxSNIPassthrough runs examples/networking/nginx-sni.conf in
// Debian's nginx (stream module) on a loopback port in place of 443.
func TestNginxSNIPassthrough(t *testing.T) {
	nginx := need(t, "/usr/sbin/nginx", "nginx")
	module := need(t, "/usr/lib/nginx/modules/ngx_stream_module.so", "libnginx-mod-stream")
	conf := example(t, "nginx-sni.conf")

	f := startFleet(t)
	ha := f.otherService(t, haGreeting)
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	conf = substitute(t, conf,
		"listen 443;", "listen "+addr+";",
		exampleFleetAddr, f.vehicleAddr,
		exampleHAAddr, ha)
	// What Debian's /etc/nginx/nginx.conf provides around the example: the
	// stream module and the main context.
	main := fmt.Sprintf("load_module %s;\ndaemon off;\nworker_processes 1;\npid %s;\nerror_log %s info;\nevents { worker_connections 64; }\n%s",
		module, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"), conf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nginx, "-t", "-q", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	p := startProcess(t, "nginx", nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	waitListening(t, "nginx", addr, p)

	checkSNIRouter(t, f, addr)
}

// TestHAProxySNIPassthrough runs examples/networking/haproxy-sni.cfg in
// Debian's HAProxy on a loopback port in place of 443.
func TestHAProxySNIPassthrough(t *testing.T) {
	haproxy := need(t, "/usr/sbin/haproxy", "haproxy")
	conf := example(t, "haproxy-sni.cfg")

	f := startFleet(t)
	ha := f.otherService(t, haGreeting)
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	conf = substitute(t, conf,
		"bind :443", "bind "+addr,
		exampleFleetAddr, f.vehicleAddr,
		exampleHAAddr, ha)
	// What Debian's /etc/haproxy/haproxy.cfg provides around the example.
	main := "global\n    maxconn 64\n\ndefaults\n    timeout connect 10s\n    timeout client 10m\n    timeout server 10m\n\n" + conf
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, haproxy, "-c", "-q", "-f", path)
	p := startProcess(t, "haproxy", haproxy, "-db", "-f", path)
	waitListening(t, "haproxy", addr, p)

	checkSNIRouter(t, f, addr)
}

// checkSNIRouter checks a router at addr: a car asking for carHost
// streams to fleet2mqtt with its own certificate, fleet2mqtt's TLS is not
// terminated on the way, and any other name reaches the other service.
func checkSNIRouter(t *testing.T, f *fleet, addr string) {
	t.Helper()
	f.refusesCarWithoutCertificate(t, addr)
	if got := f.greetingVia(t, addr, "ha.example.com"); got != haGreeting {
		t.Errorf("ha.example.com through %s greets %q, want Home Assistant's %q", addr, got, haGreeting)
	}
	f.streamCarVia(t, addr)
}
