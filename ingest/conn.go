package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// vehicleConn is one connected car. Its frames are read, handled and
// acknowledged by the single goroutine that runs run; pings are written
// from a timer.
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
	stopOnce sync.Once
	stopping chan struct{}

	rec telemetry.Record // reused for every frame
	out []byte           // reused for every response
}

func (vc *vehicleConn) logger() *slog.Logger {
	return vc.srv.log.With("vin", vc.id.DeviceID, "conn", vc.connID)
}

func (vc *vehicleConn) run(ctx context.Context) {
	vc.stopping = make(chan struct{})
	cfg := &vc.srv.cfg
	log := vc.logger()
	log.Info("vehicle connected", "remote", vc.remote, "network", vc.network, "version", vc.version)

	vc.connectivity(ctx, telemetry.StatusConnected)
	defer vc.connectivity(ctx, telemetry.StatusDisconnected)
	defer vc.ws.Close()

	extend := func() {
		select {
		case <-vc.stopping:
		default:
			_ = vc.ws.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		}
	}
	vc.ws.SetPongHandler(func(string) error { extend(); return nil })
	vc.ws.SetPingHandler(func(data string) error {
		extend()
		err := vc.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(cfg.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	vc.pinger = time.AfterFunc(cfg.PingInterval, vc.ping)
	defer vc.pinger.Stop()

	for {
		extend()
		select {
		case <-vc.stopping:
			vc.close(websocket.CloseGoingAway, "server shutting down")
			return
		default:
		}
		kind, r, err := vc.ws.NextReader()
		if err != nil {
			select {
			case <-vc.stopping:
				vc.close(websocket.CloseGoingAway, "server shutting down")
			default:
				vc.logClosed(log, err)
			}
			return
		}
		if kind != websocket.BinaryMessage {
			log.Warn("text frame refused: the protocol sends binary frames only")
			vc.close(websocket.CloseUnsupportedData, "binary frames only")
			return
		}
		vc.srv.stats.frames.Add(1)
		buf := framePool.Get().(*[]byte)
		err = readFrame(r, buf)
		switch {
		case errors.Is(err, errFrameTooLarge):
			log.Warn("frame refused", "err", err)
			err = vc.respondError(nil)
		case err != nil:
			vc.logClosed(log, err)
		default:
			err = vc.handleFrame(ctx, *buf, log)
		}
		if cap(*buf) <= maxPooledFrame {
			framePool.Put(buf)
		}
		if err != nil {
			log.Info("closing vehicle connection", "err", err)
			return
		}
	}
}

// handleFrame decodes one frame, hands its record to the sink and answers
// the car. It returns an error only when the connection cannot go on.
func (vc *vehicleConn) handleFrame(ctx context.Context, frame []byte, log *slog.Logger) error {
	f, err := envelope.Parse(frame)
	if err != nil {
		log.Warn("malformed frame", "err", err, "size", len(frame))
		return vc.respondError(nil)
	}
	if f.Type != envelope.TypeStream {
		// Only servers send acknowledgements. Answer once, as the
		// reference server means to, and publish nothing.
		log.Warn("frame with unexpected message type", "type", f.Type, "txid", string(f.TxID))
		return vc.respondAck(f.TxID, nil)
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
			log.Warn("frame from unexpected sender", "topic", string(f.Topic), "sender", string(s))
			return vc.respondError(f.TxID)
		}
		log.Debug("frame for a topic that is not published", "topic", string(f.Topic))
		return vc.respondAck(f.TxID, f.Topic)
	}

	rec := &vc.rec
	rec.Reset()
	if err := DecodePayload(topic, f.Stream.Payload, rec); err != nil {
		log.Warn("undecodable payload", "topic", topic, "txid", string(f.TxID), "err", err)
		return vc.respondError(f.TxID)
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
		log.Warn("record not published; left unacknowledged for the car to resend", "topic", topic, "txid", rec.TxID, "err", err)
		return nil
	}
	return vc.respondAck(f.TxID, f.Topic)
}

func (vc *vehicleConn) respondAck(txid, topic []byte) error {
	vc.out = envelope.AppendAck(vc.out[:0], txid, topic)
	if err := vc.write(vc.out); err != nil {
		return err
	}
	vc.srv.stats.acks.Add(1)
	return nil
}

func (vc *vehicleConn) respondError(txid []byte) error {
	vc.out = envelope.AppendError(vc.out[:0], txid, envelope.ErrorText)
	if err := vc.write(vc.out); err != nil {
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
	select {
	case <-vc.stopping:
		return
	default:
	}
	err := vc.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(vc.srv.cfg.WriteTimeout))
	if err != nil {
		return // the read loop notices the broken connection
	}
	vc.pinger.Reset(vc.srv.cfg.PingInterval)
}

// stop makes the read loop end after the frame it is handling.
func (vc *vehicleConn) stop() {
	vc.stopOnce.Do(func() {
		close(vc.stopping)
		_ = vc.ws.SetReadDeadline(time.Now())
	})
}

func (vc *vehicleConn) close(code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = vc.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

func (vc *vehicleConn) logClosed(log *slog.Logger, err error) {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
		log.Info("vehicle disconnected", "after", time.Since(vc.connected).Round(time.Second))
		return
	}
	log.Info("vehicle connection lost", "err", err, "after", time.Since(vc.connected).Round(time.Second))
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
		vc.logger().Warn("connectivity record not published", "status", status, "err", err)
	}
}
