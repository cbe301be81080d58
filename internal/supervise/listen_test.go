package supervise

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestHTTP: the server answers once Start returned, on the address told
// to Listening, and Stop shuts it down; a listen error names the key.
func TestHTTP(t *testing.T) {
	var addr string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })}
	c := HTTP("web", Listener{Addr: "127.0.0.1:0", Key: "http.listen", Listening: func(a string) { addr = a }}, srv, nil)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Error("the server still answers after Stop")
	}
	taken := HTTP("web", Listener{Addr: addr, Key: "http.listen"}, &http.Server{}, nil)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skip("the port was taken meanwhile")
	}
	defer ln.Close()
	if err := taken.Start(t.Context()); err == nil || !strings.HasPrefix(err.Error(), "http.listen: ") {
		t.Errorf("listen on a taken port: %v", err)
	}
}

// TestServe: serve runs on the listener until Stop cancels its context.
func TestServe(t *testing.T) {
	accepted := make(chan struct{})
	var addr string
	l := Listener{Addr: "127.0.0.1:0", Key: "vehicle.listen", Listening: func(a string) { addr = a }}
	c := Serve("vehicle", l, func(ctx context.Context, ln net.Listener) error {
		go func() { <-ctx.Done(); ln.Close() }()
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		conn.Close()
		close(accepted)
		<-ctx.Done()
		return nil
	}, func(err error) { t.Errorf("fail: %v", err) })
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-accepted
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}
