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
	_ = certs.WriteDevGuide(stdout, dir, names, vins)
	return 0
}
