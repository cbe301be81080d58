package ingest

import (
	"context"
	"slices"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// TestStages: a record goes through the stages in their order, to the
// last sink; each stage acts after the ones after it.
func TestStages(t *testing.T) {
	var order []string
	stage := func(name string) func(Sink) Sink {
		return func(next Sink) Sink {
			return SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
				order = append(order, "in "+name)
				err := next.Handle(ctx, rec)
				order = append(order, "after "+name)
				return err
			})
		}
	}
	last := SinkFunc(func(context.Context, *telemetry.Record) error { order = append(order, "last"); return nil })
	if err := (Stages{stage("a"), stage("b")}).To(last).Handle(context.Background(), &telemetry.Record{}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"in a", "in b", "last", "after b", "after a"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}
