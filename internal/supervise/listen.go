package supervise

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Listener is where a component listens: an address and the
// configuration key it comes from (to name in errors), and whom to tell
// the address it listens on once it does (with port 0, the port chosen).
type Listener struct {
	Addr string
	// Key names the setting, such as "http.listen": an error to listen
	// is reported as "<Key>: <error>".
	Key string
	// TLS, when set, makes it a TLS listener.
	TLS *tls.Config
	// Listening is told the address listened on; nil: nobody is.
	Listening func(addr string)
}

// listen opens l.
func (l Listener) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.Key, err)
	}
	if l.Listening != nil {
		l.Listening(ln.Addr().String())
	}
	if l.TLS != nil {
		ln = tls.NewListener(ln, l.TLS)
	}
	return ln, nil
}

// HTTP is a component that listens at Start and serves srv there until
// Stop, which shuts srv down gracefully (within Stop's context). A
// server that fails on its own tells fail, as "<name>: <error>".
func HTTP(name string, l Listener, srv *http.Server, fail func(error)) Component {
	return Component{
		Name: name,
		Start: func(context.Context) error {
			ln, err := l.listen()
			if err != nil {
				return err
			}
			go func() {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && fail != nil {
					fail(fmt.Errorf("%s: %w", name, err))
				}
			}()
			return nil
		},
		Stop: srv.Shutdown,
	}
}

// Serve is a component that listens at Start and runs serve on the
// listener in the background (see Background) until Stop.
func Serve(name string, l Listener, serve func(ctx context.Context, ln net.Listener) error, fail func(error)) Component {
	var run Component
	return Component{
		Name: name,
		Start: func(ctx context.Context) error {
			ln, err := l.listen()
			if err != nil {
				return err
			}
			run = Background(name, func(ctx context.Context) error { return serve(ctx, ln) }, fail)
			return run.Start(ctx)
		},
		Stop: func(ctx context.Context) error { return run.Stop(ctx) },
	}
}
