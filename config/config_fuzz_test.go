package config

import (
	"os"
	"testing"
)

// FuzzDecodeConfig feeds arbitrary files to the configuration decoder and
// validator, as -config FILE does: neither may panic, a refused file must
// come with a message, and a file that decodes and validates must validate
// again the same way (Validate fills defaults; doing it twice changes
// nothing).
func FuzzDecodeConfig(f *testing.F) {
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		example,
		nil,
		[]byte("vehicle:\n  listn: :443\n"),
		[]byte("mqtt:\n  qos: high\n"),
		[]byte("mqtt:\n  broker: external\n  external:\n    url: mqtts://user@broker:8883\n"),
		[]byte("mqtt:\n  embedded:\n    users:\n      - name: ha\n        password: $2y$10$broken\n"),
		[]byte("vehicle:\n  idle_timeout: 1s\n  ping_interval: 2s\n"),
		[]byte("setup:\n  regions: [na, mars]\n  port: 70000\n"),
		[]byte("a: &a [*a, *a]\n"),
		[]byte("--- !!binary AAAA\n"),
		[]byte("log: {level: [1, 2]}\n"),
		[]byte("\xff\xfe\x00"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg := Default()
		if err := Decode(raw, &cfg); err != nil {
			if err.Error() == "" {
				t.Fatalf("decode refused %q with an empty message", raw)
			}
			return
		}
		err := cfg.Validate()
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("validate refused %q with an empty message", raw)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a valid configuration became invalid on a second Validate: %v", err)
		}
	})
}
