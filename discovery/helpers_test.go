package discovery

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// testBridge is the bridge of every test.
var testBridge = Bridge{Prefix: "tesla", Availability: "tesla/bridge/state", Version: "1.2.3"}

// fieldsNamed returns the fields with the given protocol names.
func fieldsNamed(t testing.TB, names ...string) []telemetry.Field {
	t.Helper()
	out := make([]telemetry.Field, len(names))
	for i, n := range names {
		f, ok := telemetry.FieldByName(n)
		if !ok {
			t.Fatalf("no field %q", n)
		}
		out[i] = f
	}
	return out
}

// allFields returns every catalog field.
func allFields() []telemetry.Field {
	out := make([]telemetry.Field, 0, len(telemetry.Catalog()))
	for _, info := range telemetry.Catalog() {
		out = append(out, info.Field)
	}
	return out
}

// discoveryConfig is a decoded device discovery payload, components in a
// map.
type discoveryConfig struct {
	Dev          map[string]any            `json:"dev"`
	O            map[string]any            `json:"o"`
	Availability []map[string]any          `json:"availability"`
	Cmps         map[string]map[string]any `json:"cmps"`
}

// decode parses a discovery payload strictly: valid JSON, no key twice.
func decode(t testing.TB, payload []byte) discoveryConfig {
	t.Helper()
	if !json.Valid(payload) {
		t.Fatalf("payload is not valid JSON: %s", payload)
	}
	if dup := duplicateKey(payload); dup != "" {
		t.Fatalf("payload has key %q twice", dup)
	}
	var c discoveryConfig
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	return c
}

// duplicateKey returns a key that appears twice in one JSON object of
// data, or "".
func duplicateKey(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func() string
	walk = func() string {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				key, _ := k.(string)
				if seen[key] {
					return key
				}
				seen[key] = true
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		}
		return ""
	}
	return walk()
}

// golden compares msgs, pretty-printed, with testdata/golden/<name>.json,
// or rewrites that file with -update.
func golden(t *testing.T, name string, msgs []Message) {
	t.Helper()
	var raw bytes.Buffer
	raw.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			raw.WriteByte(',')
		}
		topic, _ := json.Marshal(m.Topic)
		retain, _ := json.Marshal(m.Retain)
		raw.WriteString(`{"topic":` + string(topic) + `,"retain":` + string(retain) + `,"payload":`)
		if len(m.Payload) == 0 {
			raw.WriteString(`""`)
		} else {
			raw.Write(m.Payload)
		}
		raw.WriteByte('}')
	}
	raw.WriteByte(']')
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, raw.Bytes(), "", "  "); err != nil {
		t.Fatalf("messages are not JSON: %v\n%s", err, raw.Bytes())
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it; review the diff):\n%s", path, firstDiff(pretty.Bytes(), want))
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g := bytes.Split(got, []byte("\n"))
	w := bytes.Split(want, []byte("\n"))
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return "line " + itoa(i+1) + ":\n  got:  " + string(gl) + "\n  want: " + string(wl)
		}
	}
	return ""
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
