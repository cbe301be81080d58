package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

const waitTimeout = 20 * time.Second

// connect returns a connected MQTT client; it disconnects at the end of the
// test.
func connect(t *testing.T, rawURL, clientID string, onMessage func(topic, payload string)) *autopaho.ConnectionManager {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              func(int) time.Duration { return 50 * time.Millisecond },
		ClientConfig:                  paho.ClientConfig{ClientID: clientID},
	}
	if onMessage != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMessage(pr.Packet.Topic, string(pr.Packet.Payload))
			return true, nil
		}}
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-cm.Done() })
	actx, acancel := context.WithTimeout(ctx, waitTimeout)
	defer acancel()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("connect to %s: %v", rawURL, err)
	}
	return cm
}

func TestMosquittoKeepsRetainedAcrossRestart(t *testing.T) {
	b := Mosquitto(t)
	if !strings.HasPrefix(b.Addr, "127.0.0.1:") || b.URL() != "mqtt://"+b.Addr {
		t.Fatalf("Addr %q, URL %q", b.Addr, b.URL())
	}
	pub := connect(t, b.URL(), "pub", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "keep/me", Payload: []byte("42"), QoS: 1, Retain: true}); err != nil {
		t.Fatalf("publish: %v", err)
	}

	b.Stop()
	if c, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("broker still listening after Stop")
	}
	b.Stop() // stopping twice does nothing
	b.Start()

	got := make(chan string, 1)
	sub := connect(t, b.URL(), "sub", func(topic, payload string) { got <- topic + "=" + payload })
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "keep/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	select {
	case m := <-got:
		if m != "keep/me=42" {
			t.Errorf("got %q, want keep/me=42", m)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("retained message lost across restart; log:\n%s", b.Log())
	}
}

func TestMosquittoListeners(t *testing.T) {
	files := NewTLSFiles(t)
	b := Mosquitto(t, WithTLS(files), WithWebSockets(), WithUser("u", "p"), WithConfig("max_inflight_messages 0"), WithListenerConfig("max_topic_alias 100"))
	addrs := map[string]string{"Addr": b.Addr, "TLSAddr": b.TLSAddr, "WSAddr": b.WSAddr, "WSSAddr": b.WSSAddr}
	seen := make(map[string]bool)
	for name, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || seen[a] {
			t.Errorf("%s = %q: want a distinct loopback address", name, a)
		}
		seen[a] = true
	}
	for _, a := range []string{b.TLSAddr, b.WSSAddr} {
		c, err := tls.Dial("tcp", a, files.ClientConfig())
		if err != nil {
			t.Errorf("TLS handshake with %s: %v", a, err)
			continue
		}
		c.Close()
	}
	// Anonymous access is off with a user.
	ws, err := net.Dial("tcp", b.WSAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(ws, "GET /mqtt HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", b.WSAddr)
	buf := make([]byte, 12)
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := ws.Read(buf); err != nil || string(buf) != "HTTP/1.1 101" {
		t.Errorf("WebSocket upgrade answered %q, %v", buf, err)
	}
	ws.Close()
	if !strings.Contains(b.Log(), "mosquitto version") {
		t.Errorf("log does not show mosquitto starting:\n%s", b.Log())
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", p, err)
	}
	l.Close()
}

// recordingTB notes Skip and Fatal instead of ending the test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()               {}
func (r *recordingTB) Skip(args ...any)      { r.skipped = fmt.Sprint(args...) }
func (r *recordingTB) Fatal(args ...any)     { r.failed = fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(string, ...any) { r.failed = "fatalf" }

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		ci       string
		wantSkip bool
	}{
		{"true", false},
		{"", true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv("PATH", t.TempDir())
			r := &recordingTB{TB: t}
			findBinary(r, "no-such-mosquitto", "/nonexistent/mosquitto")
			msg := r.failed
			if tt.wantSkip {
				msg = r.skipped
			}
			if msg == "" || (tt.wantSkip && r.failed != "") || (!tt.wantSkip && r.skipped != "") {
				t.Fatalf("skipped %q, failed %q", r.skipped, r.failed)
			}
			if !strings.Contains(msg, `Debian package "mosquitto"`) {
				t.Errorf("message does not name the package: %s", msg)
			}
		})
	}
}
