package supervise

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// recorder records the order of starts and stops.
type recorder []string

func (r *recorder) component(name string, startErr, stopErr error) Component {
	return Component{
		Name: name,
		Start: func(context.Context) error {
			*r = append(*r, "start "+name)
			return startErr
		},
		Stop: func(context.Context) error {
			*r = append(*r, "stop "+name)
			return stopErr
		},
	}
}

func TestStopsInReverseOrder(t *testing.T) {
	var r recorder
	g, err := Start(t.Context(), r.component("broker", nil, nil), r.component("bridge", nil, errors.New("offline not published")), r.component("vehicle", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	err = g.Stop(t.Context())
	if err == nil || err.Error() != "bridge: offline not published" {
		t.Errorf("Stop = %v, want the bridge's error named", err)
	}
	want := recorder{"start broker", "start bridge", "start vehicle", "stop vehicle", "stop bridge", "stop broker"}
	if !slices.Equal(r, want) {
		t.Errorf("order %q, want %q", r, want)
	}
	if err := g.Stop(t.Context()); err != nil || len(r) != len(want) {
		t.Errorf("a second Stop stopped again: %v, %q", err, r)
	}
}

func TestFailedStartStopsWhatStarted(t *testing.T) {
	var r recorder
	boom := errors.New("vehicle.listen: address already in use")
	_, err := Start(t.Context(), r.component("broker", nil, nil), r.component("vehicle", boom, nil), r.component("web", nil, nil))
	if !errors.Is(err, boom) || err.Error() != boom.Error() {
		t.Errorf("Start = %v, want %v as it is", err, boom)
	}
	want := recorder{"start broker", "start vehicle", "stop broker"}
	if !slices.Equal(r, want) {
		t.Errorf("order %q, want %q", r, want)
	}
}

func TestBackground(t *testing.T) {
	failed := make(chan error, 1)
	boom := errors.New("listener closed")
	crash := Background("vehicle", func(context.Context) error { return boom }, func(err error) { failed <- err })
	g, err := Start(t.Context(), crash)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-failed; !errors.Is(err, boom) {
		t.Errorf("fail got %v", err)
	}
	_ = g.Stop(t.Context())

	// A run that Stop ends is not a failure.
	stopped := false
	quiet := Background("setup", func(ctx context.Context) error {
		<-ctx.Done()
		stopped = true
		return ctx.Err()
	}, func(err error) { t.Errorf("fail called with %v", err) })
	ctx, cancel := context.WithCancel(t.Context())
	g, err = Start(ctx, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the caller's context ending does not stop a component
	if err := g.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !stopped {
		t.Error("Stop returned before the run ended")
	}
}
