package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

const decodeHelp = `Usage: fleet2mqtt decode FILE...

Decodes captured vehicle frames, one binary WebSocket frame per file (the
FlatBuffers envelope with its protobuf payload), and prints one JSON object
per file, one per line, in the order of the arguments:

  {"file":"f.bin","topic":"V","txid":"…","vin":"…","created_at":"2026-01-01T00:00:00Z",
   "values":{"Soc":79.125,"Gear":"D","Location":{"latitude":37.4,"longitude":-122.1}}}

Values come in the order the car sent them, normalised as fleet2mqtt
publishes them: numbers, booleans, enum short names, locations as
{"latitude":…,"longitude":…}, null for a value that is invalid or empty.
Records on the other topics carry "alerts", "errors" or "connectivity"
instead of "values". created_at is the payload's own time, else the
envelope's. A frame that cannot be decoded gives {"file":…,"error":…}.

The VIN is the envelope's device_id: what the sender claims. A running
server takes it from the vehicle's client certificate instead; a capture
has none, so nothing here confirms it.

Exit status: 0 when every file decoded, 1 when any did not, 2 on a usage
error.
`

// runDecode is the decode command: see decodeHelp.
func runDecode(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, decodeHelp)
			return 0
		}
		fmt.Fprintf(stderr, "fleet2mqtt decode: %v\n\n%s", err, decodeHelp)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "fleet2mqtt decode: no files\n\n%s", decodeHelp)
		return 2
	}
	status := 0
	var (
		line []byte
		rec  telemetry.Record
	)
	for _, name := range fs.Args() {
		line = append(line[:0], `{"file":`...)
		line = append(telemetry.AppendJSONString(line, name), ',')
		if err := decodeFile(name, &rec); err != nil {
			status = 1
			line = append(line, `"error":`...)
			line = telemetry.AppendJSONString(line, err.Error())
		} else {
			line = rec.AppendJSONMembers(line)
		}
		line = append(line, "}\n"...)
		if _, err := stdout.Write(line); err != nil {
			fmt.Fprintf(stderr, "fleet2mqtt decode: %v\n", err)
			return 1
		}
	}
	return status
}

// decodeFile decodes the frame in file name into rec, with the VIN the
// envelope claims (see decodeHelp).
func decodeFile(name string, rec *telemetry.Record) error {
	rec.Reset()
	file, err := os.Open(name)
	if err != nil {
		return err
	}
	defer file.Close()
	frame, err := ingest.ReadCapture(file)
	if err != nil {
		return err
	}
	rec.VIN, err = ingest.DecodeFrame(frame, rec)
	return err
}
