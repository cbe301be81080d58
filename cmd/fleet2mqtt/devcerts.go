package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// listFlag is a flag that may be given several times, each adding a value.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	*l = append(*l, v)
	return nil
}

// runDevCerts implements `fleet2mqtt dev-certs`: it writes a development
// PKI for the vehicle listener and simulated cars, and says how to use it.
func runDevCerts(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("dev-certs", flag.ContinueOnError)
	fl.SetOutput(stderr)
	out := fl.String("out", "", "directory to write the certificates to (required)")
	force := fl.Bool("force", false, "replace a PKI already in the directory (its car certificates are removed)")
	var names, vins listFlag
	fl.Var(&names, "name", "extra host name or IP address for the server certificate (repeatable);\nlocalhost, 127.0.0.1 and ::1 are always included")
	fl.Var(&vins, "vin", "VIN to issue a car certificate for (repeatable; default "+simulate.TestVIN(1)+")")
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: fleet2mqtt dev-certs --out DIR [--name HOST ...] [--vin VIN ...] [--force]

Writes a development PKI: a server CA and a server certificate for the
vehicle listener, a vehicle CA named "`+certs.VehicleAuthorityName+`" (an issuer
name the protocol accepts for cars) and a client certificate per VIN. Use it
to run fleet2mqtt and the simulator, or Tesla's reference server, with cars
that exist only in software. Real cars never trust these certificates.

Flags:
`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "fleet2mqtt dev-certs: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "fleet2mqtt dev-certs: --out DIR is required")
		fl.Usage()
		return 2
	}
	if len(vins) == 0 {
		vins = listFlag{simulate.TestVIN(1)}
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt dev-certs:", err)
		return 1
	}
	if err := certs.WriteDevDir(dir, names, vins, *force); err != nil {
		fmt.Fprintln(stderr, "fleet2mqtt dev-certs:", err)
		return 1
	}
	printDevCerts(stdout, dir, certs.DevServerNames(names), vins)
	return 0
}

// printDevCerts tells what each file is for and how to use them.
func printDevCerts(w io.Writer, dir string, names, vins []string) {
	p := func(name string) string { return filepath.Join(dir, name) }
	fmt.Fprintf(w, "Wrote a development PKI to %s\n\n", dir)
	rows := [][2]string{
		{certs.CAFile, "server CA: what cars and the simulator trust (simulate --ca)"},
		{certs.CAKeyFile, "server CA key (private: signs server certificates)"},
		{certs.ServerFile, "server certificate for " + strings.Join(names, ", ")},
		{certs.ServerKeyFile, "server certificate key (private)"},
		{certs.VehicleCAFile, "vehicle CA \"" + certs.VehicleAuthorityName + "\": what the vehicle listener trusts"},
		{certs.VehicleCAKeyFile, "vehicle CA key (private: the simulator issues car certificates with it)"},
	}
	for _, vin := range vins {
		rows = append(rows,
			[2]string{filepath.Join(certs.VehiclesDir, vin+".pem"), "client certificate of car " + vin},
			[2]string{filepath.Join(certs.VehiclesDir, vin+"-key.pem"), "its key (private)"})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r[0], r[1])
	}
	fmt.Fprintf(w, `
Keys are readable by you only (mode 0600). Use the PKI in fleet2mqtt's config.yaml:

  vehicle:
    cert_file: %s
    key_file: %s
    client_ca_files:
      - %s

(keep Tesla's vehicle CA bundle in client_ca_files too if real cars connect as well)

Then stream simulated cars to it:

  fleet2mqtt simulate --server 127.0.0.1:8443 --ca %s --certs %s

Cars beyond the VINs above get certificates from the vehicle CA on the fly.
Tesla's reference server accepts these cars as well when it trusts %s
for client certificates and serves %s.
`, p(certs.ServerFile), p(certs.ServerKeyFile), p(certs.VehicleCAFile),
		p(certs.CAFile), dir, p(certs.VehicleCAFile), p(certs.ServerFile))
	if loopback := len(certs.DevServerNames(nil)); len(names) > loopback {
		fmt.Fprintf(w, "From another machine use --server %s:PORT (the port the vehicle listener is reached on).\n", names[loopback])
	}
}
