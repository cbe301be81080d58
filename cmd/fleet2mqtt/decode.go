package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
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

// errNotRecord reports a frame that parses but carries no record.
var errNotRecord = errors.New("not a record")

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
		rec.Reset()
		line = line[:0]
		out, err := decodeFile(line, name, &rec)
		if err != nil {
			status = 1
			out = append(appendFileKey(line, name), `,"error":`...)
			out = telemetry.AppendJSONString(out, err.Error())
			out = append(out, '}')
		}
		line = append(out, '\n')
		if _, err := stdout.Write(line); err != nil {
			fmt.Fprintf(stderr, "fleet2mqtt decode: %v\n", err)
			return 1
		}
	}
	return status
}

// decodeFile appends the JSON line (without newline) for the frame in file
// name to dst.
func decodeFile(dst []byte, name string, rec *telemetry.Record) ([]byte, error) {
	frame, err := readFrame(name)
	if err != nil {
		return nil, err
	}
	f, err := envelope.Parse(frame)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if f.Type != envelope.TypeStream {
		return nil, fmt.Errorf("envelope: %w: message type %v", errNotRecord, f.Type)
	}
	if err := ingest.DecodePayload(telemetry.Topic(f.Topic), f.Stream.Payload, rec); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if rec.CreatedAt.IsZero() && f.Stream.CreatedAt != 0 {
		rec.CreatedAt = time.Unix(int64(f.Stream.CreatedAt), 0).UTC()
	}

	dst = appendFileKey(dst, name)
	dst = append(dst, `,"topic":`...)
	dst = telemetry.AppendJSONString(dst, string(rec.Topic))
	dst = append(dst, `,"txid":`...)
	dst = telemetry.AppendJSONString(dst, string(f.TxID))
	dst = append(dst, `,"vin":`...)
	dst = telemetry.AppendJSONString(dst, string(f.Stream.DeviceID))
	dst = append(dst, `,"created_at":`...)
	dst = telemetry.AppendJSONTime(dst, rec.CreatedAt)
	if rec.Resend {
		dst = append(dst, `,"resend":true`...)
	}
	switch rec.Topic {
	case telemetry.TopicV:
		dst = appendValues(dst, rec.Data)
	case telemetry.TopicAlerts:
		dst = appendAlerts(dst, rec.Alerts)
	case telemetry.TopicErrors:
		dst = appendErrors(dst, rec.Errors)
	case telemetry.TopicConnectivity:
		dst = appendConnectivity(dst, rec.Connectivity)
	}
	return append(dst, '}'), nil
}

// readFrame reads the frame in file name, refusing one larger than a
// vehicle may send.
func readFrame(name string) ([]byte, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	frame, err := io.ReadAll(io.LimitReader(file, ingest.MaxFrameSize+1))
	if err != nil {
		return nil, err
	}
	if len(frame) > ingest.MaxFrameSize {
		return nil, fmt.Errorf("frame larger than %d bytes", ingest.MaxFrameSize)
	}
	return frame, nil
}

func appendFileKey(dst []byte, name string) []byte {
	dst = append(dst, `{"file":`...)
	return telemetry.AppendJSONString(dst, name)
}

// appendValues appends the values of a V record as one object, in the
// order the car sent them; a field sent twice keeps its first place and its
// last value.
func appendValues(dst []byte, data []telemetry.Datum) []byte {
	dst = append(dst, `,"values":{`...)
	first := true
	for i, d := range data {
		if slices.ContainsFunc(data[:i], func(e telemetry.Datum) bool { return e.Field == d.Field }) {
			continue // printed at its first place
		}
		for _, later := range data[i+1:] {
			if later.Field == d.Field {
				d = later
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = telemetry.AppendJSONString(dst, d.Field.String())
		dst = append(dst, ':')
		dst = d.Value.AppendJSON(dst)
	}
	return append(dst, '}')
}

func appendAlerts(dst []byte, alerts []telemetry.Alert) []byte {
	dst = append(dst, `,"alerts":[`...)
	for i, a := range alerts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = telemetry.AppendJSONString(dst, a.Name)
		dst = append(dst, `,"audiences":[`...)
		for j, au := range a.Audiences {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = telemetry.AppendJSONString(dst, au.String())
		}
		dst = append(dst, `],"started_at":`...)
		dst = telemetry.AppendJSONTime(dst, a.StartedAt)
		dst = append(dst, `,"ended_at":`...)
		dst = telemetry.AppendJSONTime(dst, a.EndedAt)
		dst = append(dst, `,"active":`...)
		dst = strconv.AppendBool(dst, a.Active())
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendErrors(dst []byte, errs []telemetry.VehicleError) []byte {
	dst = append(dst, `,"errors":[`...)
	for i, e := range errs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = telemetry.AppendJSONString(dst, e.Name)
		dst = append(dst, `,"created_at":`...)
		dst = telemetry.AppendJSONTime(dst, e.CreatedAt)
		dst = append(dst, `,"tags":{`...)
		keys := make([]string, 0, len(e.Tags))
		for k := range e.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for j, k := range keys {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = telemetry.AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = telemetry.AppendJSONString(dst, e.Tags[k])
		}
		dst = append(dst, `},"body":`...)
		dst = telemetry.AppendJSONString(dst, e.Body)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendConnectivity(dst []byte, c telemetry.Connectivity) []byte {
	dst = append(dst, `,"connectivity":{"connection_id":`...)
	dst = telemetry.AppendJSONString(dst, c.ConnectionID)
	dst = append(dst, `,"status":`...)
	dst = telemetry.AppendJSONString(dst, c.Status.String())
	dst = append(dst, `,"network_interface":`...)
	dst = telemetry.AppendJSONString(dst, c.NetworkInterface)
	dst = append(dst, `,"created_at":`...)
	dst = telemetry.AppendJSONTime(dst, c.CreatedAt)
	return append(dst, '}')
}
