package embedded

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// bigStore writes a retained store like a fleet of cars leaves it: per car
// 150 signal topics of a few bytes and a state object of about 4 KB
// (about 20 MB for 1,000 cars), and returns its directory.
func bigStore(tb testing.TB, cars int) string {
	tb.Helper()
	dir := tb.TempDir()
	m := make(map[string]packets.Packet, cars*151)
	state := `{"Soc":80.5,` + strings.Repeat(`"SomeSignalName":123.456,`, 170) + `"Gear":"D"}`
	for c := range cars {
		vin := fmt.Sprintf("5YJ3E1EA0KF%06d", c)
		for f := range 150 {
			topic := fmt.Sprintf("tesla/%s/Signal%03d", vin, f)
			m[topic] = retainedPacket(topic, fmt.Sprint(f*7+c))
		}
		topic := "tesla/" + vin + "/state"
		m[topic] = retainedPacket(topic, state)
	}
	var buf bytes.Buffer
	if err := encodeRetained(&buf, m, nil); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, retainedFile), buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkLoadLargeStore measures what loading the retained store of
// 1,000 cars costs: the live heap once loaded and the bytes allocated on
// the way, the way the broker loads it (store.load) against the way
// mochi's StoredRetainedMessages hook did (decoded messages, each copied
// again by ToPacket).
//
//	go test ./bridge/embedded -run '^$' -bench LoadLargeStore -benchtime 1x
func BenchmarkLoadLargeStore(b *testing.B) {
	dir := bigStore(b, 1000)
	st, _ := os.Stat(filepath.Join(dir, retainedFile))
	b.Logf("store: %.1f MB", float64(st.Size())/(1<<20))
	for _, way := range []string{"store.load", "mochi hook"} {
		b.Run(strings.ReplaceAll(way, " ", "_"), func(b *testing.B) {
			for range b.N {
				before := heapInuse()
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				t0 := time.Now()
				server := mqtt.New(&mqtt.Options{InlineClient: true})
				s := newStore(dir, func(string) bool { return true }, testLogger(b))
				if way == "store.load" {
					if err := s.load(server.Topics.RetainMessage); err != nil {
						b.Fatal(err)
					}
				} else {
					raw, err := os.ReadFile(filepath.Join(dir, retainedFile))
					if err != nil {
						b.Fatal(err)
					}
					msgs, err := decodeRetained(raw)
					if err != nil {
						b.Fatal(err)
					}
					for _, m := range msgs {
						server.Topics.RetainMessage(m.ToPacket())
					}
				}
				took := time.Since(t0)
				runtime.ReadMemStats(&ms1)
				after := heapInuse()
				b.ReportMetric(float64(after-before)/(1<<20), "MB-live")
				b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20), "MB-allocated")
				b.ReportMetric(float64(took.Milliseconds()), "ms")
				runtime.KeepAlive(server)
			}
		})
	}
}

// BenchmarkSaveWithClientJunk measures one periodic save after a car's
// value changed while clients keep 200 retained messages of 1 MB: the
// bytes written, before (one file with everything) and now (the bridge's
// part only).
//
//	go test ./bridge/embedded -run '^$' -bench SaveWithClientJunk -benchtime 1x
func BenchmarkSaveWithClientJunk(b *testing.B) {
	retained := map[string]packets.Packet{}
	for i := range 200 {
		topic := fmt.Sprint("junk/", i)
		retained[topic] = retainedPacket(topic, strings.Repeat("j", 1_000_000))
	}
	for f := range 150 {
		topic := fmt.Sprintf("tesla/V/Signal%03d", f)
		retained[topic] = retainedPacket(topic, "80")
	}
	all := func() map[string]packets.Packet { return retained }
	ours := func(t string) bool { return strings.HasPrefix(t, "tesla/") }
	for _, way := range []string{"one file", "split"} {
		b.Run(strings.ReplaceAll(way, " ", "_"), func(b *testing.B) {
			dir := b.TempDir()
			s := newStore(dir, ours, testLogger(b))
			if way == "one file" {
				s.ours = func(string) bool { return true } // everything in the bridge's file, as before
			}
			s.changed()
			s.topicChanged("junk/0")
			if err := s.save(all); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				s.changed() // a car's value changed
				t0 := time.Now()
				if err := s.save(all); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "ms/save")
			}
			b.StopTimer()
			st, _ := os.Stat(filepath.Join(dir, retainedFile))
			b.ReportMetric(float64(st.Size())/(1<<20), "MB-written/save")
		})
	}
}
