package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const frameDir = "../../testdata/vehicle-frames"

// goldenFrames returns every captured frame of the golden set, in name
// order: the .bin files that are neither payloads nor responses.
func goldenFrames(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(frameDir, "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var frames []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".payload.bin") && !strings.Contains(f, ".resp") {
			frames = append(frames, f)
		}
	}
	if len(frames) < 18 {
		t.Fatalf("only %d golden frames in %s", len(frames), frameDir)
	}
	return frames
}

// TestDecodeGolden decodes every golden frame and a missing file, and
// compares the output with testdata/decode.golden (go test -update rewrites
// it).
func TestDecodeGolden(t *testing.T) {
	files := append(goldenFrames(t), filepath.Join(frameDir, "no-such-frame.bin"))
	var stdout, stderr bytes.Buffer
	if code := runDecode(files, &stdout, &stderr); code != 1 {
		t.Errorf("exit status %d, want 1 (some frames fail)", code)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.Bytes())
	}

	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files", len(lines), len(files))
	}
	for i, line := range lines {
		var obj struct {
			File string `json:"file"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("line %d is not JSON: %v\n%s", i+1, err, line)
			continue
		}
		if obj.File != files[i] {
			t.Errorf("line %d is for %q, want %q", i+1, obj.File, files[i])
		}
	}

	golden := filepath.Join("testdata", "decode.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got := stdout.String(); got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):%s", golden, lineDiff(got, string(want)))
	}
}

// lineDiff lists the lines of got and want that differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			b.WriteString("\nline " + strconv.Itoa(i+1) + ":\n got " + gl + "\nwant " + wl)
		}
	}
	return b.String()
}

// TestDecodeOutput checks the meaning of the output, independently of the
// golden file: one line per file, normalised values in the car's order, the
// error lines and the exit status.
func TestDecodeOutput(t *testing.T) {
	tests := []struct {
		file string
		code int
		want string // a line of output, exactly
	}{
		{"03_v_string_transforms.bin", 0, `{"file":"` + frameDir + `/03_v_string_transforms.bin","topic":"V","txid":"txid-03-strings",` +
			`"vin":"5YJ3TESTVIN000001","created_at":"2026-01-01T00:00:02Z","values":{` +
			`"Location":{"latitude":37.412374,"longitude":-122.145867},"PackCurrent":0.0015,"PackVoltage":398.25,` +
			`"ChargeState":"Charging","Gear":"D"}}`},
		{"20_behavior_datum_without_value.bin", 0, `{"file":"` + frameDir + `/20_behavior_datum_without_value.bin","topic":"V",` +
			`"txid":"txid-20-novalue","vin":"5YJ3TESTVIN000001","created_at":"2026-01-01T00:01:00Z","values":{"Odometer":null,"Soc":2}}`},
		{"14_behavior_ack_typed_envelope.bin", 1, `{"file":"` + frameDir + `/14_behavior_ack_typed_envelope.bin",` +
			`"error":"envelope: not a record: message type stream_ack"}`},
		{"missing.bin", 1, `{"file":"` + frameDir + `/missing.bin","error":"open ` + frameDir + `/missing.bin: no such file or directory"}`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runDecode([]string{frameDir + "/" + tt.file}, &stdout, &stderr); code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if got := strings.TrimSuffix(stdout.String(), "\n"); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDecodeUsage(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		code         int
		stdout       string // a substring, or "" for none
		stderrSubstr string
	}{
		{"no files", nil, 2, "", "Usage: fleet2mqtt decode FILE..."},
		{"help", []string{"-h"}, 0, "Usage: fleet2mqtt decode FILE...", ""},
		{"unknown flag", []string{"-x", "f.bin"}, 2, "", "flag provided but not defined: -x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runDecode(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if tt.stdout == "" && stdout.Len() > 0 || !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.stdout)
			}
			if tt.stderrSubstr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tt.stderrSubstr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderrSubstr)
			}
		})
	}
}
