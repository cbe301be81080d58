package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket (binary frames, subprotocol
// "mqtt"). Unlike mochi's own WebSocket listener it binds in Init, so that
// a busy port fails the start and a port of 0 reports the port it got, and
// it checks the Origin of browser requests.
type wsListener struct {
	id       string
	addr     string
	tls      *tls.Config
	origins  []string
	log      *slog.Logger
	listener net.Listener
	server   *http.Server
	upgrader websocket.Upgrader
	// connectTimeout bounds the time from the upgrade to the CONNECT
	// packet (see defaultConnectTimeout).
	connectTimeout time.Duration

	// Connections being served, so that Close can end them all before it
	// returns: mochi waits for its clients after closing the listeners,
	// and no client may start then.
	mu       sync.Mutex
	closing  bool
	conns    map[*websocket.Conn]struct{}
	handlers sync.WaitGroup
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id, addr string, tlsConfig *tls.Config, origins []string) *wsListener {
	l := &wsListener{id: id, addr: addr, tls: tlsConfig, origins: origins, conns: make(map[*websocket.Conn]struct{}),
		connectTimeout: defaultConnectTimeout}
	l.upgrader = websocket.Upgrader{
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      l.checkOrigin,
	}
	return l
}

func (l *wsListener) ID() string { return l.id }

func (l *wsListener) Address() string {
	if l.listener != nil {
		return l.listener.Addr().String()
	}
	return l.addr
}

func (l *wsListener) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.listener = ln
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := l.upgrader.Upgrade(w, r, nil)
			if err != nil {
				return // the upgrader has answered
			}
			if !l.track(ws) {
				ws.Close()
				return
			}
			defer l.untrack(ws)
			if err := ws.SetReadDeadline(time.Now().Add(l.connectTimeout)); err != nil {
				return
			}
			if err := establish(l.id, &wsConn{Conn: ws.NetConn(), ws: ws}); err != nil {
				l.log.Debug("websocket client ended", "remote", r.RemoteAddr, "error", err)
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	if err := l.server.Serve(l.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "error", err)
	}
}

// track notes a connection being served, unless the listener is closing.
func (l *wsListener) track(ws *websocket.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.conns[ws] = struct{}{}
	l.handlers.Add(1)
	return true
}

func (l *wsListener) untrack(ws *websocket.Conn) {
	l.mu.Lock()
	delete(l.conns, ws)
	l.mu.Unlock()
	ws.Close()
	l.handlers.Done()
}

// Close stops accepting, disconnects the MQTT clients of this listener,
// closes what is left (connections still in their MQTT handshake) and
// waits until every connection has ended.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.closing = true
	l.mu.Unlock()
	if l.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l.server.Shutdown(ctx) // hijacked (WebSocket) connections are not its business
	} else if l.listener != nil {
		l.listener.Close()
	}
	closeClients(l.id)
	l.mu.Lock()
	for ws := range l.conns {
		ws.Close()
	}
	l.mu.Unlock()
	l.handlers.Wait()
}

// checkOrigin accepts requests without an Origin (not from a browser),
// from pages of the listener's own host, and from the configured origins.
func (l *wsListener) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(l.origins, "*") {
		return true
	}
	for _, o := range l.origins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// wsConn presents a WebSocket as the byte stream mochi reads MQTT packets
// from: binary messages are concatenated, each write is one message.
// mochi reads from one goroutine and serialises its writes, but sets
// deadlines from the reading goroutine; wmu keeps that apart from writes,
// which the WebSocket library requires.
type wsConn struct {
	net.Conn // the underlying connection, for addresses
	ws       *websocket.Conn
	r        io.Reader
	wmu      sync.Mutex
}

var errTextFrame = errors.New("websocket: MQTT needs binary frames, got text")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.SetWriteDeadline(t)
}
