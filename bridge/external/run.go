package external

import (
	"context"
	"fmt"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/supervise"
)

// Component runs the client as a part of a program (see package
// supervise): Start connects in the background, Stop disconnects and
// waits until the client is done. The client outlives the context it was
// started with: what the parts stopped before it publish still reaches
// the broker.
func (c *Client) Component() supervise.Component {
	var stop context.CancelFunc
	return supervise.Component{
		Name: "external broker",
		Start: func(ctx context.Context) error {
			var clientCtx context.Context
			clientCtx, stop = context.WithCancel(context.WithoutCancel(ctx))
			if err := c.Start(clientCtx); err != nil {
				stop()
				return fmt.Errorf("external broker: %w", err)
			}
			return nil
		},
		Stop: func(context.Context) error { stop(); <-c.Done(); return nil },
	}
}

// PublishOnce connects, publishes msgs and disconnects: for a command
// that publishes and exits. where names the broker in errors ("the broker
// at mqtt://…"); ctx bounds the whole.
func (c *Client) PublishOnce(ctx context.Context, where string, msgs []pubsub.Message) error {
	runCtx, stop := context.WithCancel(ctx)
	if err := c.Start(runCtx); err != nil {
		stop()
		return fmt.Errorf("connect to %s: %w", where, err)
	}
	defer func() {
		stop()
		<-c.Done()
	}()
	if err := c.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("cannot reach %s: %w", where, err)
	}
	if err := c.Publish(ctx, msgs); err != nil {
		return fmt.Errorf("publish to %s: %w", where, err)
	}
	return nil
}
