// Package ingest is the vehicle server: it accepts cars over mutually
// authenticated TLS WebSockets, speaks Tesla's fleet-telemetry protocol
// (FlatBuffers envelope, protobuf payloads), turns every frame into a
// telemetry.Record for a Sink, and acknowledges a frame to the car only
// after the Sink has handled it.
package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/internal/uuid"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Sink receives every record the vehicles send. Handle returns nil only
// once the record is safely handed on (published); only then is the frame
// acknowledged to the car. Handle is called concurrently for different
// vehicles and in order for one vehicle. rec and its slices are reused
// after Handle returns: keep copies, not rec itself (Values are safe to
// keep).
type Sink interface {
	Handle(ctx context.Context, rec *telemetry.Record) error
}

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ctx context.Context, rec *telemetry.Record) error

// Handle calls f.
func (f SinkFunc) Handle(ctx context.Context, rec *telemetry.Record) error { return f(ctx, rec) }

// Server is the vehicle listener.
type Server struct {
	cfg      Config
	sink     Sink
	log      *slog.Logger
	tls      *tls.Config
	fallback http.Handler
	upgrader websocket.Upgrader
	stats    counters
	handlers handlers // where frames are handled; see handlers.go

	mu     sync.Mutex
	ctx    context.Context // set by Serve; ends all connections
	conns  map[*vehicleConn]struct{}
	active sync.WaitGroup
}

// Option changes how a Server is built.
type Option func(*Server)

// WithFallback serves requests that are not WebSocket upgrades, such as the
// public key under /.well-known. Without it such requests get 400.
func WithFallback(h http.Handler) Option { return func(s *Server) { s.fallback = h } }

// New returns a server for cfg. tlsConfig supplies the server certificate
// (Certificates or GetCertificate) and the pool of vehicle authorities
// (ClientCAs); New copies it and enforces the rest: client certificates are
// requested on every connection and verified when given, and required for
// the WebSocket upgrade. log receives the server's logs; nil discards
// them.
func New(cfg Config, tlsConfig *tls.Config, sink Sink, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tlsConfig == nil || (len(tlsConfig.Certificates) == 0 && tlsConfig.GetCertificate == nil) {
		return nil, errors.New("ingest: a server certificate is required")
	}
	if tlsConfig.ClientCAs == nil {
		return nil, errors.New("ingest: no vehicle CA: without one no car can connect")
	}
	if sink == nil {
		return nil, errors.New("ingest: a sink is required")
	}
	tc := tlsConfig.Clone()
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	// WebSockets need HTTP/1.1; keep other protocols the caller added
	// (such as acme-tls/1) but never offer h2.
	protos := []string{"http/1.1"}
	for _, p := range tc.NextProtos {
		if p != "h2" && p != "http/1.1" {
			protos = append(protos, p)
		}
	}
	tc.NextProtos = protos
	// CurvePreferences stay as the caller left them (Go's defaults: the
	// post-quantum X25519MLKEM768 first, then X25519 and the NIST curves).
	// The server takes a group the client sent a key share for, so cars,
	// which offer X25519 and P-256, are served without a retry either way;
	// and what a connection keeps after the handshake depends on the
	// client's hello, not on the group chosen, so restricting the curves
	// would save no memory and only refuse post-quantum key exchange to
	// clients that offer it.

	s := &Server{
		cfg:      cfg,
		sink:     sink,
		log:      log,
		tls:      tc,
		handlers: handlers{idleFor: defaultHandlerIdle},
		conns:    make(map[*vehicleConn]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// A small read buffer: it holds frame headers and control-frame
		// payloads (125 bytes at most, the least gorilla accepts); the
		// rest of a larger payload is read straight into the frame's
		// buffer. An idle car then holds 256 bytes here instead of the
		// HTTP server's 4 KB.
		ReadBufferSize:  256,
		WriteBufferSize: 1024,
		WriteBufferPool: &writeBufferPool,
		// Cars send no Origin; browsers cannot present a vehicle
		// certificate, so there is no cross-site risk to guard against.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return s, nil
}

// Serve accepts connections on ln (a plain TCP listener: Serve adds TLS)
// until ctx ends, then closes every vehicle connection (a frame being
// published is finished and acknowledged first) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.ctx = runCtx
	s.mu.Unlock()

	hs := &http.Server{
		Handler:           s,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: s.cfg.HandshakeTimeout, // also bounds the TLS handshake
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return runCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, s.tls)) }()

	select {
	case err := <-errc:
		s.closeAll()
		return fmt.Errorf("vehicle listener: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	_ = hs.Shutdown(shutdownCtx) // closes the listener and idle HTTP connections
	s.closeAll()
	s.active.Wait()
	<-errc
	return nil
}

// Addr-independent statistics of the server, for metrics and tests.
type Stats struct {
	Connected      int64 // vehicles connected now
	Connections    int64 // connections accepted since start
	Refused        int64 // upgrades refused (no or unknown certificate, or an unusable device id)
	Frames         int64 // binary frames read
	Acks           int64 // frames acknowledged
	ErrorResponses int64 // frames answered with the protocol's error response
	Unacknowledged int64 // frames the sink could not handle (the car resends)
	Oversized      int64 // frames over MaxFrameSize (answered with the error response)
	Floods         int64 // connections dropped for sending control frames too fast
	DataRefused    int64 // data items, alerts and errors left out of records on purpose (see DecodePayload)
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

type counters struct {
	connected, connections, refused, frames, acks, errorResponses, unacked atomic.Int64
	oversized, floods, dataRefused                                         atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Connected: c.connected.Load(), Connections: c.connections.Load(), Refused: c.refused.Load(),
		Frames: c.frames.Load(), Acks: c.acks.Load(), ErrorResponses: c.errorResponses.Load(),
		Unacknowledged: c.unacked.Load(), Oversized: c.oversized.Load(), Floods: c.floods.Load(),
		DataRefused: c.dataRefused.Load(),
	}
}

// ServeHTTP upgrades vehicle connections on any path and hands other
// requests to the fallback handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		if s.fallback != nil {
			s.fallback.ServeHTTP(w, r)
			return
		}
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	id, err := identify(r)
	if err != nil {
		s.stats.refused.Add(1)
		status := http.StatusForbidden
		if errors.Is(err, ErrNoCertificate) {
			status = http.StatusUnauthorized
		}
		s.log.Warn("vehicle refused", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), status)
		return
	}

	s.mu.Lock()
	ctx := s.ctx
	s.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	// The frame guard (guard.go) reads the car's frames below the
	// WebSocket library.
	ws, err := s.upgrader.Upgrade(&guardingWriter{ResponseWriter: w}, r, nil)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // the upgrader has answered
	}
	vc := &vehicleConn{
		srv:       s,
		ws:        ws,
		id:        id,
		connID:    r.Header.Get("X-TXID"),
		network:   r.Header.Get("X-Network-Interface"),
		version:   r.Header.Get("Version"),
		remote:    r.RemoteAddr,
		connected: time.Now(),
	}
	if vc.connID == "" {
		vc.connID = uuid.New()
	}
	if !s.track(vc) {
		ws.Close()
		return
	}
	vc.start(ctx)
}

// ErrNotVehicle is returned for a verified device that is not a car.
var ErrNotVehicle = errors.New("client certificate is not a vehicle's")

// identify names the car from its verified client certificate.
func identify(r *http.Request) (Identity, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: vehicles must present a certificate from a trusted vehicle authority", ErrNoCertificate)
	}
	id, err := IdentityFromCertificate(r.TLS.VerifiedChains[0][0])
	if err != nil {
		return Identity{}, err
	}
	if !id.IsVehicle() {
		return Identity{}, fmt.Errorf("%w: %s", ErrNotVehicle, id.SenderID)
	}
	return id, nil
}

func (s *Server) track(vc *vehicleConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[vc] = struct{}{}
	s.active.Add(1)
	s.stats.connected.Add(1)
	s.stats.connections.Add(1)
	return true
}

func (s *Server) untrack(vc *vehicleConn) {
	s.mu.Lock()
	delete(s.conns, vc)
	s.mu.Unlock()
	s.stats.connected.Add(-1)
	s.active.Done()
}

// closeAll asks every vehicle connection to stop reading; each finishes
// the frame it is handling, then closes.
func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for vc := range s.conns {
		vc.stop()
	}
}

// writeBufferPool holds the WebSocket's write buffers between responses,
// so that an idle car holds none.
var writeBufferPool sync.Pool

var errFrameTooLarge = fmt.Errorf("frame larger than %d bytes", MaxFrameSize)

// readFrame reads one message into *buf, never holding more than
// MaxFrameSize+1 bytes: the rest of a larger message is read and discarded
// (the frame guard refuses one that declares more than maxSkippedMessage
// before it is read). It returns the message's size, as far as it was read.
func readFrame(r io.Reader, buf *[]byte) (int64, error) {
	b := (*buf)[:0]
	defer func() { *buf = b }()
	for {
		if len(b) > MaxFrameSize {
			n, err := io.Copy(io.Discard, r)
			size := int64(len(b)) + n
			if err != nil {
				return size, err
			}
			return size, errFrameTooLarge
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):min(cap(b), MaxFrameSize+1)])
		b = b[:len(b)+n]
		if err == io.EOF {
			if len(b) > MaxFrameSize {
				return int64(len(b)), errFrameTooLarge
			}
			return int64(len(b)), nil
		}
		if err != nil {
			return int64(len(b)), err
		}
	}
}
