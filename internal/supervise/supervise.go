// Package supervise runs the parts of a program as an ordered list of
// components: each is started after the ones before it and stopped
// before them, so that a part never outlives what it depends on.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Component is one part of the program, as a pair of actions.
type Component struct {
	// Name names the component in errors.
	Name string
	// Start brings the component up and returns once it is (a listener
	// accepts connections); long work goes on in the background, see
	// Background. A Start that fails stops the components started before
	// it. Nil: nothing to start.
	Start func(ctx context.Context) error
	// Stop brings it down and returns once it is down; ctx bounds the
	// time it may take. Nil: nothing to stop.
	Stop func(ctx context.Context) error
}

// Background is a component that runs run from Start until Stop: Start
// launches it with a context that Stop cancels, and Stop waits for it to
// return. When run returns an error before Stop, fail is told (nil:
// nobody is); the error of a run that Stop ended is dropped.
func Background(name string, run func(ctx context.Context) error, fail func(error)) Component {
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	return Component{
		Name: name,
		Start: func(ctx context.Context) error {
			// The component ends at Stop, not with the context it was
			// started with.
			var runCtx context.Context
			runCtx, cancel = context.WithCancel(context.WithoutCancel(ctx))
			done = make(chan struct{})
			go func() {
				defer close(done)
				if err := run(runCtx); err != nil && runCtx.Err() == nil && fail != nil {
					fail(err)
				}
			}()
			return nil
		},
		Stop: func(context.Context) error {
			cancel()
			<-done
			return nil
		},
	}
}

// Group is a list of components that has been started.
type Group struct {
	mu      sync.Mutex
	started []Component
}

// Start starts the components in order. When one fails, the ones already
// started are stopped in reverse order, and its error is returned as it
// is.
func Start(ctx context.Context, components ...Component) (*Group, error) {
	g := &Group{}
	for _, c := range components {
		if c.Start != nil {
			if err := c.Start(ctx); err != nil {
				_ = g.Stop(context.WithoutCancel(ctx))
				return nil, err
			}
		}
		g.started = append(g.started, c)
	}
	return g, nil
}

// Stop stops the started components in reverse order, each once, and
// returns their errors joined, each named after its component.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	started := g.started
	g.started = nil
	g.mu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		c := started[i]
		if c.Stop == nil {
			continue
		}
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}
