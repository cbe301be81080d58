package networking_test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// TestSSHReverseTunnel runs the CGNAT recipe on loopback: Debian's sshd
// with examples/networking/sshd-tunnel.conf and authorized_keys stands
// for the public server, the ssh command of
// examples/networking/fleet2mqtt-tunnel.service for the machine at home.
// A simulated car dials the server's forwarded port and streams to
// fleet2mqtt, known by its certificate; a forward the server does not
// permit is refused.
func TestSSHReverseTunnel(t *testing.T) {
	sshd := need(t, "/usr/sbin/sshd", "openssh-server")
	keygen := need(t, "/usr/bin/ssh-keygen", "openssh-client")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd started by root needs its privilege separation directory,
		// which Debian's service unit otherwise creates.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}

	f := startFleet(t)
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519")
	homeKey := filepath.Join(dir, "tunnel_ed25519")
	run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "test host", "-f", hostKey)
	run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "fleet2mqtt-tunnel", "-f", homeKey)
	sshPort := testenv.FreePort(t)
	publicAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	// The server: the example's restrictions, for this user and the test's
	// public port.
	homePub := strings.Fields(readFile(t, homeKey+".pub"))
	keys := substitute(t, example(t, "authorized_keys"),
		`permitlisten="0.0.0.0:443"`, `permitlisten="`+publicAddr+`"`,
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIREPLACEWITHTHEHOMEMACHINESPUBLICKEY", homePub[0]+" "+homePub[1])
	writeFile(t, filepath.Join(dir, "authorized_keys"), keys)
	match := substitute(t, example(t, "sshd-tunnel.conf"),
		"Match User tunnel", "Match User "+me.Username,
		"PermitListen 0.0.0.0:443", "PermitListen "+publicAddr)
	config := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
%s`, sshPort, hostKey, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), match)
	sshdConfig := filepath.Join(dir, "sshd_config")
	writeFile(t, sshdConfig, config)
	run(t, sshd, "-t", "-f", sshdConfig)
	server := startProcess(t, "sshd", sshd, "-D", "-e", "-f", sshdConfig)
	waitListening(t, "sshd", "127.0.0.1:"+strconv.Itoa(sshPort), server)

	// The home side trusts exactly this server's host key.
	hostPub := strings.Fields(readFile(t, hostKey+".pub"))
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, fmt.Sprintf("[127.0.0.1]:%d %s %s\n", sshPort, hostPub[0], hostPub[1]))
	tunnel := func(remote string) []string {
		argv := unitCommand(t, example(t, "fleet2mqtt-tunnel.service"))
		argv = strings.Fields(substitute(t, strings.Join(argv, " "),
			"-i /etc/fleet2mqtt/tunnel_ed25519", "-i "+homeKey,
			"-R 0.0.0.0:443:127.0.0.1:8443", "-R "+remote+":"+f.vehicleAddr,
			"tunnel@tunnel.example.com", me.Username+"@127.0.0.1"))
		// Only what a test machine needs on top: the port, and no user
		// configuration or known_hosts of whoever runs the test.
		return append([]string{argv[0], "-F", "none", "-p", strconv.Itoa(sshPort),
			"-o", "UserKnownHostsFile=" + knownHosts}, argv[1:]...)
	}

	argv := tunnel(publicAddr)
	home := startProcess(t, "ssh (home)", need(t, argv[0], "openssh-client"), argv[1:]...)
	waitListening(t, "the tunnel's public port", publicAddr, home)
	f.refusesCarWithoutCertificate(t, publicAddr)
	f.streamCarVia(t, publicAddr)

	// Any other port is refused by the server, and ssh gives up
	// (ExitOnForwardFailure) instead of running without its forward.
	other := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	argv = tunnel(other)
	cmd := startProcess(t, "ssh (other port)", argv[0], argv[1:]...)
	<-cmd.done
	if cmd.cmd.ProcessState.Success() || !strings.Contains(cmd.output(), "remote port forwarding failed") {
		t.Errorf("a forward of %s, which the server does not permit: ssh %v, said %q; want it refused", other, cmd.cmd.ProcessState, cmd.output())
	}
}

// unitCommand returns the command line of a systemd unit's ExecStart,
// continuation lines joined.
func unitCommand(t *testing.T, unit string) []string {
	t.Helper()
	joined := strings.ReplaceAll(unit, "\\\n", " ")
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("the unit has no ExecStart")
	}
	return strings.Fields(m[1])
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
