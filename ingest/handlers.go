package ingest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Frames are handled on handler goroutines, not on the goroutine that
// reads the car's connection. Handling a frame (decoding it, the sink's
// publishing, writing the answer) grows a goroutine's stack to 8 KB or
// more, and the runtime does not shrink a stack again below what the
// goroutine needs while blocked, so a reader that handled its frames would
// keep twice the stack while its car is idle. Handlers are few (as many as
// frames are handled at once), keep their grown stacks while busy, and end
// when they have had nothing to do for a while (defaultHandlerIdle).

// defaultHandlerIdle is how long an idle handler waits for another frame.
const defaultHandlerIdle = 10 * time.Second

// frameScratch is one frame on its way through the server, with what
// handling it needs. It is pooled across connections, so that an idle car
// holds no buffers and no decoded record.
type frameScratch struct {
	frame []byte           // the frame as read
	rec   telemetry.Record // its decoded record
	out   []byte           // the response

	// Set while the frame is handed to a handler.
	vc   *vehicleConn
	ctx  context.Context
	done chan error // the result of handleFrame
}

var frameScratchPool = sync.Pool{New: func() any {
	return &frameScratch{frame: make([]byte, 0, 4096), done: make(chan error, 1)}
}}

// Frame buffers larger than this are not kept in the pool.
const maxPooledFrame = 64 << 10

func getFrameScratch() *frameScratch { return frameScratchPool.Get().(*frameScratch) }

func putFrameScratch(fs *frameScratch) {
	if cap(fs.frame) > maxPooledFrame {
		fs.frame = make([]byte, 0, 4096)
	}
	frameScratchPool.Put(fs)
}

// handlers are the idle handler goroutines, the one idle longest first.
// A frame goes to the one idle shortest: its stack is likeliest to be in
// the processor's cache, and the others can time out, so that no more
// handlers stay than frames are handled at once.
type handlers struct {
	idleFor time.Duration // how long a handler waits for another frame
	running atomic.Int64  // handler goroutines, busy or idle

	mu   sync.Mutex
	idle []chan *frameScratch // each idle handler's inbox (buffered, 1)
}

// handle has vc.handleFrame(ctx, fs) run by an idle handler, or by a new
// one when none is idle, and returns its result.
func (s *Server) handle(ctx context.Context, vc *vehicleConn, fs *frameScratch) error {
	fs.vc, fs.ctx = vc, ctx
	if inbox := s.handlers.take(); inbox != nil {
		inbox <- fs
	} else {
		s.handlers.running.Add(1)
		go s.runHandler(fs)
	}
	err := <-fs.done
	fs.vc, fs.ctx = nil, nil
	return err
}

// take removes the handler idle shortest from the idle ones and returns
// its inbox; nil if none is idle.
func (hs *handlers) take() chan *frameScratch {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	n := len(hs.idle)
	if n == 0 {
		return nil
	}
	inbox := hs.idle[n-1]
	hs.idle[n-1] = nil
	hs.idle = hs.idle[:n-1]
	return inbox
}

// add makes the handler with inbox idle.
func (hs *handlers) add(inbox chan *frameScratch) {
	hs.mu.Lock()
	hs.idle = append(hs.idle, inbox)
	hs.mu.Unlock()
}

// retire removes the handler with inbox from the idle ones. It reports
// false when the handler was taken meanwhile: a frame is then on its way
// to inbox.
func (hs *handlers) retire(inbox chan *frameScratch) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	i := slices.Index(hs.idle, inbox)
	if i < 0 {
		return false
	}
	hs.idle = slices.Delete(hs.idle, i, i+1)
	return true
}

// runHandler handles fs, then every frame handed to it, until it has been
// idle for s.handlers.idleFor or the frame's context has ended.
func (s *Server) runHandler(fs *frameScratch) {
	defer s.handlers.running.Add(-1)
	inbox := make(chan *frameScratch, 1)
	idle := time.NewTimer(s.handlers.idleFor)
	defer idle.Stop()
	for {
		ctx := fs.ctx
		// fs belongs to its reader again once done is sent.
		fs.done <- fs.vc.handleFrame(ctx, fs)
		idle.Reset(s.handlers.idleFor)
		s.handlers.add(inbox)
		select {
		case fs = <-inbox:
			continue
		case <-idle.C:
		case <-ctx.Done():
		}
		if s.handlers.retire(inbox) {
			return
		}
		fs = <-inbox
	}
}
