package embedded

import (
	"context"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
)

// Component runs the broker as a part of a program (see package
// supervise): Start opens the listeners, Stop closes the broker (its
// clients disconnected, its retained messages saved). It is the first
// part to start and the last to stop, so that the other parts publish
// until they are stopped.
func (b *Broker) Component() supervise.Component {
	return supervise.Component{
		Name: "embedded broker",
		Start: func(ctx context.Context) error {
			if err := b.Start(ctx); err != nil {
				return fmt.Errorf("embedded broker: %w", err)
			}
			return nil
		},
		Stop: func(context.Context) error { return b.Close() },
	}
}
