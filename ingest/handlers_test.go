package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

func TestHandlersTakeShortestIdle(t *testing.T) {
	var hs handlers
	a, b, c := make(chan *frameScratch, 1), make(chan *frameScratch, 1), make(chan *frameScratch, 1)
	if hs.take() != nil {
		t.Fatal("take from no idle handlers returned one")
	}
	hs.add(a)
	hs.add(b)
	hs.add(c)
	if got := hs.take(); got != c {
		t.Fatal("take did not return the handler idle shortest")
	}
	if !hs.retire(a) {
		t.Fatal("retire of an idle handler reported it taken")
	}
	if hs.retire(c) {
		t.Fatal("retire of a taken handler reported it idle")
	}
	if got := hs.take(); got != b {
		t.Fatal("take did not return the last idle handler")
	}
	if hs.take() != nil || hs.retire(b) {
		t.Fatal("handlers left idle after all were taken")
	}
}

// barrierSink holds every V record until n of them are being handled at
// once, then lets them all go.
type barrierSink struct {
	n       int
	mu      sync.Mutex
	waiting int
	release chan struct{}
}

func (s *barrierSink) Handle(ctx context.Context, rec *telemetry.Record) error {
	if rec.Topic != telemetry.TopicV {
		return nil
	}
	s.mu.Lock()
	s.waiting++
	if s.waiting == s.n {
		close(s.release)
	}
	s.mu.Unlock()
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A car whose record is slow to publish must not hold up the others: every
// car's frame is handled at the same time.
func TestFramesOfCarsHandledConcurrently(t *testing.T) {
	const cars = 4
	sink := &barrierSink{n: cars, release: make(chan struct{})}
	ts := startServerWithSink(t, sink, nil)
	frame := readGolden(t, "01_v_scalar_types.bin")
	var conns []*websocket.Conn
	for range cars {
		ws := ts.car(t)
		if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
	}
	// Frames handled one after the other would each wait for the others
	// until HandleTimeout (30 s).
	waitFor(t, "every car's record in the sink at once", func() bool {
		select {
		case <-sink.release:
			return true
		default:
			return false
		}
	})
	for i, ws := range conns {
		f, err := envelope.Parse(readResponse(t, ws))
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != envelope.TypeStreamAck {
			t.Errorf("car %d: response of type %v, want an acknowledgement", i, f.Type)
		}
	}
}

// Handlers end when idle, and frames arriving later get new ones.
func TestIdleHandlersEnd(t *testing.T) {
	ts := startServer(t, nil, func(s *Server) { s.handlers.idleFor = 20 * time.Millisecond })
	ws := ts.car(t)
	frame := readGolden(t, "01_v_scalar_types.bin")
	hs := &ts.srv.handlers
	for i := range 3 {
		exchange(t, ws, frame)
		waitFor(t, "the handler to end", func() bool {
			hs.mu.Lock()
			defer hs.mu.Unlock()
			return len(hs.idle) == 0 && hs.running.Load() == 0
		})
		if got := len(ts.sink.byTopic(telemetry.TopicV)); got != i+1 {
			t.Fatalf("%d records handled, want %d", got, i+1)
		}
	}
}
