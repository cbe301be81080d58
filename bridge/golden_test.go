package bridge

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/native")

// compatConfig publishes only the compatibility layout, as the reference
// server was configured for the golden run (topic_base telemetry, QoS 1,
// not retained).
func compatConfig() Config {
	cfg := DefaultConfig()
	cfg.Compat.Enabled = true
	cfg.Compat.Exclusive = true
	return cfg
}

// TestCompatGolden feeds every golden frame's payload, decoded by the
// ingest decoder, to the bridge and compares the compatibility layout with
// what the reference server published for the same frame: topics, payload
// bytes, QoS and retain flag. The reference publishes from a Go map, in no
// particular order, so messages are compared sorted.
func TestCompatGolden(t *testing.T) {
	m := loadManifest(t)
	// Where the reference never published, the bridge does what it
	// documents instead.
	deviations := map[string][]string{
		// The reference panics on a datum without a value and drops the
		// connection; the bridge publishes {} for it, as for a value with
		// no member set.
		"20_behavior_datum_without_value": {
			"telemetry/5YJ3TESTVIN000001/v/Odometer qos=1 retain=false {}",
			"telemetry/5YJ3TESTVIN000001/v/Soc qos=1 retain=false 2",
		},
	}
	tested := 0
	for _, c := range m.Cases {
		t.Run(c.Name, func(t *testing.T) {
			rec, ok := c.record(t)
			if !ok {
				if len(c.Live.MQTTPublications) > 0 {
					t.Fatal("the reference published, but the payload does not decode")
				}
				t.Skip("no decodable payload; the reference published nothing")
			}
			want, deviates := deviations[c.Name]
			if !deviates {
				if c.Live.ServerClosed {
					t.Skip("the reference closed the connection before publishing (a transport matter)")
				}
				for _, p := range c.Live.MQTTPublications {
					want = append(want, p.line())
				}
			}
			b, r := newTestBridge(t, compatConfig())
			if err := b.Handle(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
			got := lines(r.take())
			slices.Sort(got)
			slices.Sort(want)
			diffLines(t, got, want)
			tested++
		})
	}
	t.Run("connectivity_on_connect_and_disconnect", func(t *testing.T) {
		b, r := newTestBridge(t, compatConfig())
		for _, rec := range m.connectivityRecords(t) {
			if err := b.Handle(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
		}
		var want []string
		for _, p := range m.Generator.LiveConnectivityEvents.MQTTPublications {
			want = append(want, p.line())
		}
		diffLines(t, lines(r.take()), want)
	})
	if tested < 10 {
		t.Errorf("only %d golden cases compared; the manifest or the decoder changed", tested)
	}
}

// TestNativeGolden renders every golden frame in the native layout and
// compares it with testdata/native/<case>.golden (go test -update rewrites
// them; review the diff). TestNative holds the rules these files follow,
// asserted one by one.
func TestNativeGolden(t *testing.T) {
	m := loadManifest(t)
	cfg := DefaultConfig()
	for _, c := range m.Cases {
		rec, ok := c.record(t)
		if !ok {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			b, r := newTestBridge(t, cfg)
			if err := b.Handle(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(lines(r.take()), "\n") + "\n"
			path := filepath.Join("testdata", "native", c.Name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			diffLines(t, strings.Split(got, "\n"), strings.Split(string(want), "\n"))
		})
	}
}
