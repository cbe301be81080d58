package external

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/mqttwire"
)

// recordingConn records every Write on the network connection.
type recordingConn struct {
	net.Conn // nil: only Write and Close are used
	mu       sync.Mutex
	writes   [][]byte
	wrote    chan struct{} // receives after every Write
	fail     error
	closed   bool
}

func newRecordingConn() *recordingConn { return &recordingConn{wrote: make(chan struct{}, 100)} }

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, bytes.Clone(p))
	r.wrote <- struct{}{}
	return len(p), nil
}

func (r *recordingConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recordingConn) Read([]byte) (int, error) { return 0, errors.New("not readable") }

func (r *recordingConn) snapshot() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.writes...)
}

func writePacket(c *conn, p string) {
	c.Lock()
	_, _ = c.Write([]byte(p))
	c.Unlock()
}

func TestConnSingleWriterFlushesAtOnce(t *testing.T) {
	rc := newRecordingConn()
	c := newConn(rc, nil, nil)
	writePacket(c, "one")
	writePacket(c, "two")
	got := rc.snapshot()
	if len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" {
		t.Errorf("writes %q, want each packet written when its writer is done", got)
	}
}

func TestConnCoalescesConcurrentWriters(t *testing.T) {
	rc := newRecordingConn()
	c := newConn(rc, nil, nil)
	c.Lock()
	var wg sync.WaitGroup
	for _, p := range []string{"b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writePacket(c, p)
		}()
	}
	for c.writers.Load() != 3 {
		time.Sleep(time.Millisecond)
	}
	_, _ = c.Write([]byte("a"))
	c.Unlock()
	wg.Wait()
	got := rc.snapshot()
	if len(got) != 1 {
		t.Fatalf("%d writes %q, want the three packets in one", len(got), got)
	}
	b := []byte(string(got[0]))
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	if string(got[0][:1]) != "a" || string(b) != "abc" {
		t.Errorf("wrote %q, want a first, then b and c", got[0])
	}
}

func TestConnTimerFlushesBusyConnection(t *testing.T) {
	rc := newRecordingConn()
	var waiting atomic.Int32
	waiting.Store(1) // a publisher is always about to write
	c := newConn(rc, &waiting, nil)
	writePacket(c, "late")
	select {
	case <-rc.wrote:
	case <-time.After(waitTimeout):
		t.Fatal("buffered packet never written")
	}
	if got := rc.snapshot(); len(got) != 1 || string(got[0]) != "late" {
		t.Errorf("writes %q", got)
	}
}

func TestConnFlushesFullBuffer(t *testing.T) {
	rc := newRecordingConn()
	var waiting atomic.Int32
	waiting.Store(1)
	c := newConn(rc, &waiting, nil)
	c.timer.Stop() // only the size may trigger this flush
	big := string(make([]byte, flushSize))
	writePacket(c, big)
	if got := rc.snapshot(); len(got) != 1 || len(got[0]) != flushSize {
		t.Errorf("%d writes, want the full buffer written at once", len(got))
	}
}

func TestConnWriteErrorCloses(t *testing.T) {
	rc := newRecordingConn()
	rc.fail = errors.New("broken pipe")
	c := newConn(rc, nil, nil)
	writePacket(c, "x")
	rc.mu.Lock()
	closed := rc.closed
	rc.mu.Unlock()
	if !closed {
		t.Error("connection not closed after a failed write")
	}
	c.Lock()
	_, err := c.Write([]byte("y"))
	c.Unlock()
	if err == nil {
		t.Error("Write after a failed flush succeeded")
	}
}

// streamConn serves a fixed byte stream in reads of at most chunk bytes.
type streamConn struct {
	net.Conn
	data  []byte
	chunk int
}

func (s *streamConn) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, errors.New("end of stream")
	}
	n := min(len(p), s.chunk, len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

func (s *streamConn) Write(p []byte) (int, error) { return len(p), nil }

// TestConnTakesPubacks feeds a stream of PUBACKs and other packets, in
// reads of every size, and checks that the PUBACKs reach onPubacks and
// everything else reaches paho's reader intact.
func TestConnTakesPubacks(t *testing.T) {
	long := append([]byte{0x40, 0x80, 0x01, 0x00, 0x09, 0x80, 0x7c}, make([]byte, 124)...) // PUBACK with 124 bytes of properties (remaining length 128): left to paho
	publish := mqttwire.AppendPublish(nil, &mqttwire.Publish{Topic: "homeassistant/status", QoS: 1, ID: 3, Version: 5}, []byte(strings.Repeat("x", 300)))
	var stream, wantPassed []byte
	add := func(p []byte, passed bool) {
		stream = append(stream, p...)
		if passed {
			wantPassed = append(wantPassed, p...)
		}
	}
	add([]byte{0x40, 0x02, 0x00, 0x01}, false)             // PUBACK id 1, success
	add([]byte{0xd0, 0x00}, true)                          // PINGRESP
	add([]byte{0x40, 0x03, 0x01, 0x02, 0x10}, false)       // PUBACK id 258, no matching subscribers
	add(publish, true)                                     // incoming PUBLISH
	add([]byte{0x40, 0x04, 0xff, 0xff, 0x87, 0x00}, false) // PUBACK id 65535, not authorised, no properties
	add(long, true)
	add([]byte{0x90, 0x03, 0x00, 0x05, 0x01}, true) // SUBACK
	wantAcks := []string{"1:0x00", "258:0x10", "65535:0x87"}

	for _, chunk := range []int{1, 2, 3, 7, 4096} {
		t.Run(fmt.Sprint("chunk=", chunk), func(t *testing.T) {
			var acks []string
			c := newConn(&streamConn{data: bytes.Clone(stream), chunk: chunk}, nil, func(batch []puback) {
				for _, a := range batch {
					acks = append(acks, fmt.Sprintf("%d:0x%02x", a.id, a.reason))
				}
			})
			var passed []byte
			buf := make([]byte, 5)
			for {
				n, err := c.Read(buf)
				passed = append(passed, buf[:n]...)
				if err != nil {
					break
				}
			}
			if !bytes.Equal(passed, wantPassed) {
				t.Errorf("paho got %x\nwant     %x", passed, wantPassed)
			}
			if fmt.Sprint(acks) != fmt.Sprint(wantAcks) {
				t.Errorf("PUBACKs %v, want %v", acks, wantAcks)
			}
		})
	}
}

// TestConnBatchesPubacks: the PUBACKs that arrive in one read are handed
// over together, before the reader waits for the network again; those
// read before the connection fails are handed over too.
func TestConnBatchesPubacks(t *testing.T) {
	var stream []byte
	for id := range 20 {
		stream = append(stream, 0x40, 0x02, 0x00, byte(id+1))
	}
	for _, tc := range []struct {
		chunk int
		want  []int // sizes of the batches
	}{
		{4096, []int{20}},
		{4 * 8, []int{8, 8, 4}},
		{6, []int{1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1}}, // whole PUBACKs of each read, the split one with the next
	} {
		t.Run(fmt.Sprint("chunk=", tc.chunk), func(t *testing.T) {
			var sizes []int
			next := uint16(1)
			c := newConn(&streamConn{data: bytes.Clone(stream), chunk: tc.chunk}, nil, func(batch []puback) {
				sizes = append(sizes, len(batch))
				for _, a := range batch {
					if a.id != next {
						t.Errorf("PUBACK %d, want %d", a.id, next)
					}
					next++
				}
			})
			if _, err := c.Read(make([]byte, 16)); err == nil {
				t.Fatal("Read returned without error at the end of the stream")
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.want) {
				t.Errorf("batches of %v, want %v", sizes, tc.want)
			}
		})
	}
}
