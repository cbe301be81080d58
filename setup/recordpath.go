package setup

import (
	"context"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Handler handles vehicle records; ingest.Sink and bridge.Bridge satisfy
// it.
type Handler interface {
	Handle(ctx context.Context, rec *telemetry.Record) error
}

// Tee is the setup page's stage of the record path: it hands every
// record to next and, once next has published it, tells the page
// (RecordSeen) unless it is a connectivity record. It returns next's
// error.
func (w *Wizard) Tee(next Handler) Handler { return seenTee{next, w} }

type seenTee struct {
	next Handler
	w    *Wizard
}

func (t seenTee) Handle(ctx context.Context, rec *telemetry.Record) error {
	if err := t.next.Handle(ctx, rec); err != nil {
		return err
	}
	if rec.Topic != telemetry.TopicConnectivity {
		t.w.RecordSeen(rec.VIN, rec.ReceivedAt)
	}
	return nil
}
