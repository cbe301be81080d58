package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// vehicleConn is one connected car. One goroutine reads its frames; each
// frame is handled and acknowledged on a handler goroutine (see
// handlers.go) while the reader waits, so frames are handled one at a time
// and in order. Pings are written from a timer.
//
// An idle car costs this struct, its WebSocket and TLS state and the
// reader's goroutine, blocked in a read: everything a frame needs only
// while it is handled is pooled (frameScratch, the WebSocket's write
// buffer) and the deep stack that handling grows belongs to a handler
// goroutine, not to the reader.
type vehicleConn struct {
	srv       *Server
	ws        *websocket.Conn
	id        Identity
	connID    string
	network   string
	version   string
	remote    string
	connected time.Time

	pinger   *time.Timer
	stopping atomic.Bool // set once by stop

	// Items left out of records on purpose and not logged yet, and when
	// that was last logged (since connected); see refusedItems.
	refusedUnlogged refused
	refusedLoggedAt time.Duration
}

// refusedLogInterval is how often a connection logs the items it left out
// of its car's records.
const refusedLogInterval = time.Minute

// log returns the connection's logger. It is made when something is
// logged, not kept: a handler's preformatted attributes would otherwise
// stay with every idle car.
func (vc *vehicleConn) log() *slog.Logger {
	return vc.srv.log.With("vin", vc.id.DeviceID, "conn", vc.connID)
}

// start announces the car to the sink, then leaves the connection to a
// reader goroutine of its own and returns: the goroutine calling start,
// and the stack that the TLS handshake and the sink grew on it, are not
// kept while the car is idle.
func (vc *vehicleConn) start(ctx context.Context) {
	vc.log().Info("vehicle connected", "remote", vc.remote, "network", vc.network, "version", vc.version)
	vc.connectivity(ctx, telemetry.StatusConnected)
	vc.ws.SetPongHandler(vc.pong)
	vc.ws.SetPingHandler(vc.answerPing)
	vc.pinger = time.AfterFunc(vc.srv.cfg.PingInterval, vc.ping)
	go vc.serve(ctx)
}

// serve reads frames until the connection ends, then closes it.
func (vc *vehicleConn) serve(ctx context.Context) {
	for vc.next(ctx) {
	}
	vc.pinger.Stop()
	vc.ws.Close()
	vc.connectivity(ctx, telemetry.StatusDisconnected)
	vc.srv.untrack(vc)
}

// next waits for one frame and has it handled. It reports whether the
// connection goes on.
func (vc *vehicleConn) next(ctx context.Context) bool {
	vc.extend()
	if vc.stopping.Load() {
		vc.close(websocket.CloseGoingAway, "server shutting down")
		return false
	}
	kind, r, err := vc.ws.NextReader()
	if err != nil {
		vc.readFailed(err)
		return false
	}
	if kind != websocket.BinaryMessage {
		vc.log().Warn("text frame refused: the protocol sends binary frames only")
		vc.close(websocket.CloseUnsupportedData, "binary frames only")
		return false
	}
	vc.srv.stats.frames.Add(1)
	fs := getFrameScratch()
	defer putFrameScratch(fs)
	size, err := readFrame(r, &fs.frame)
	switch {
	case errors.Is(err, errFrameTooLarge):
		vc.srv.stats.oversized.Add(1)
		vc.log().Warn("frame refused: larger than the protocol allows; answered with the error response",
			"size", size, "limit", MaxFrameSize)
		err = vc.respondError(fs, nil)
	case err != nil:
		vc.readFailed(err)
		return false
	default:
		err = vc.srv.handle(ctx, vc, fs)
	}
	if err != nil {
		vc.log().Info("closing vehicle connection", "err", err)
		return false
	}
	return true
}

// readFailed ends the connection after a read error: answers and logs what
// the frame guard refused (see guard.go), and logs any other end.
func (vc *vehicleConn) readFailed(err error) {
	var tooLarge errMessageTooLarge
	switch {
	case vc.stopping.Load():
		vc.close(websocket.CloseGoingAway, "server shutting down")
	case errors.As(err, &tooLarge):
		vc.srv.stats.oversized.Add(1)
		vc.log().Warn("frame refused at its header: larger than the protocol allows; answered with the error response and closed",
			"declared", tooLarge.declared, "limit", MaxFrameSize)
		fs := getFrameScratch()
		defer putFrameScratch(fs)
		if vc.respondError(fs, nil) == nil {
			vc.close(websocket.CloseMessageTooBig, "frame too large")
		}
	case errors.As(err, new(errControlFlood)):
		vc.srv.stats.floods.Add(1)
		vc.log().Warn("vehicle dropped: control frames too fast", "burst", controlBurst, "per_second", controlRate)
		vc.close(websocket.ClosePolicyViolation, "too many control frames")
	default:
		vc.logClosed(err)
	}
}

// extend gives the car another IdleTimeout to send something, unless the
// connection is stopping.
func (vc *vehicleConn) extend() {
	if vc.stopping.Load() {
		return
	}
	_ = vc.ws.SetReadDeadline(time.Now().Add(vc.srv.cfg.IdleTimeout))
	if vc.stopping.Load() {
		// stop ran meanwhile; its deadline may have been overwritten.
		_ = vc.ws.SetReadDeadline(time.Now())
	}
}

func (vc *vehicleConn) pong(string) error {
	vc.extend()
	return nil
}

func (vc *vehicleConn) answerPing(data string) error {
	vc.extend()
	err := vc.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(vc.srv.cfg.WriteTimeout))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

// handleFrame decodes one frame, hands its record to the sink and answers
// the car. It returns an error only when the connection cannot go on.
func (vc *vehicleConn) handleFrame(ctx context.Context, fs *frameScratch) error {
	f, err := envelope.Parse(fs.frame)
	if err != nil {
		vc.log().Warn("malformed frame", "err", err, "size", len(fs.frame))
		return vc.respondError(fs, nil)
	}
	if f.Type != envelope.TypeStream {
		// Only servers send acknowledgements. Answer once, as the
		// reference server means to, and publish nothing.
		vc.log().Warn("frame with unexpected message type", "type", f.Type, "txid", string(f.TxID))
		return vc.respondAck(fs, f.TxID, nil)
	}

	var topic telemetry.Topic
	switch string(f.Topic) {
	case string(telemetry.TopicV):
		topic = telemetry.TopicV
	case string(telemetry.TopicAlerts):
		topic = telemetry.TopicAlerts
	case string(telemetry.TopicErrors):
		topic = telemetry.TopicErrors
	default:
		// Topics we do not publish (including connectivity, which only
		// servers make) are acknowledged, unless the frame claims to come
		// from another device.
		if s := f.Stream.SenderID; len(s) > 0 && string(s) != vc.id.SenderID && string(s) != vc.id.DeviceID {
			vc.log().Warn("frame from unexpected sender", "topic", string(f.Topic), "sender", string(s))
			return vc.respondError(fs, f.TxID)
		}
		if vc.srv.log.Enabled(ctx, slog.LevelDebug) {
			vc.log().Debug("frame for a topic that is not published", "topic", string(f.Topic))
		}
		return vc.respondAck(fs, f.TxID, f.Topic)
	}

	rec := &fs.rec
	rec.Reset()
	refused, err := decodePayload(topic, f.Stream.Payload, rec)
	if err != nil {
		vc.log().Warn("undecodable payload", "topic", topic, "txid", string(f.TxID), "err", err)
		return vc.respondError(fs, f.TxID)
	}
	if refused.total() > 0 {
		vc.refusedItems(topic, f.TxID, refused)
	}
	// The certificate names the car, whatever the frame says.
	rec.VIN = vc.id.DeviceID
	rec.Topic = topic
	rec.TxID = string(f.TxID)
	rec.ReceivedAt = time.Now()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = time.Unix(int64(f.Stream.CreatedAt), 0)
	}

	hctx, cancel := context.WithTimeout(ctx, vc.srv.cfg.HandleTimeout)
	err = vc.srv.sink.Handle(hctx, rec)
	cancel()
	if err != nil {
		// Not acknowledged: the car keeps the record and sends it again.
		vc.srv.stats.unacked.Add(1)
		vc.log().Warn("record not published; left unacknowledged for the car to resend", "topic", topic, "txid", rec.TxID, "err", err)
		return nil
	}
	return vc.respondAck(fs, f.TxID, f.Topic)
}

// refusedItems counts what decoding left out of a record on purpose, and
// logs it: the first time on the connection, then at most once per
// refusedLogInterval, with the counts since the last line. The record is
// still acknowledged.
func (vc *vehicleConn) refusedItems(topic telemetry.Topic, txid []byte, r refused) {
	vc.srv.stats.dataRefused.Add(int64(r.total()))
	u := &vc.refusedUnlogged
	u.unknownFields += r.unknownFields
	u.excess += r.excess
	now := time.Since(vc.connected)
	if vc.refusedLoggedAt != 0 && now-vc.refusedLoggedAt < refusedLogInterval {
		return
	}
	vc.refusedLoggedAt = max(now, 1)
	vc.log().Warn("record items left out on purpose (unknown field numbers, or too many items); the record is acknowledged",
		"topic", topic, "txid", string(txid),
		"unknown_fields", u.unknownFields, "max_field_number", MaxFieldNumber,
		"over_limit", u.excess, "max_items_per_record", MaxRecordItems)
	*u = refused{}
}

func (vc *vehicleConn) respondAck(fs *frameScratch, txid, topic []byte) error {
	fs.out = envelope.AppendAck(fs.out[:0], txid, topic)
	if err := vc.write(fs.out); err != nil {
		return err
	}
	vc.srv.stats.acks.Add(1)
	return nil
}

func (vc *vehicleConn) respondError(fs *frameScratch, txid []byte) error {
	fs.out = envelope.AppendError(fs.out[:0], txid, envelope.ErrorText)
	if err := vc.write(fs.out); err != nil {
		return err
	}
	vc.srv.stats.errorResponses.Add(1)
	return nil
}

func (vc *vehicleConn) write(msg []byte) error {
	_ = vc.ws.SetWriteDeadline(time.Now().Add(vc.srv.cfg.WriteTimeout))
	return vc.ws.WriteMessage(websocket.BinaryMessage, msg)
}

func (vc *vehicleConn) ping() {
	if vc.stopping.Load() {
		return
	}
	err := vc.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(vc.srv.cfg.WriteTimeout))
	if err != nil {
		return // the read loop notices the broken connection
	}
	vc.pinger.Reset(vc.srv.cfg.PingInterval)
}

// stop makes the read loop end after the frame it is handling.
func (vc *vehicleConn) stop() {
	if vc.stopping.CompareAndSwap(false, true) {
		_ = vc.ws.SetReadDeadline(time.Now())
	}
}

func (vc *vehicleConn) close(code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = vc.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

func (vc *vehicleConn) logClosed(err error) {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
		vc.log().Info("vehicle disconnected", "after", time.Since(vc.connected).Round(time.Second))
		return
	}
	vc.log().Info("vehicle connection lost", "err", err, "after", time.Since(vc.connected).Round(time.Second))
}

// connectivity tells the sink that the car connected or disconnected. It
// runs even while the server shuts down, so that the disconnect is
// published before the broker goes.
func (vc *vehicleConn) connectivity(ctx context.Context, status telemetry.Status) {
	now := time.Now()
	rec := &telemetry.Record{
		VIN:        vc.id.DeviceID,
		Topic:      telemetry.TopicConnectivity,
		TxID:       vc.connID,
		CreatedAt:  now,
		ReceivedAt: now,
		Connectivity: telemetry.Connectivity{
			ConnectionID:     vc.connID,
			Status:           status,
			NetworkInterface: vc.network,
			CreatedAt:        now,
		},
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), vc.srv.cfg.WriteTimeout)
	defer cancel()
	if err := vc.srv.sink.Handle(hctx, rec); err != nil {
		vc.log().Warn("connectivity record not published", "status", status, "err", err)
	}
}
