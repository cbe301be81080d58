package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key to
// dir, and returns the file names and a pool that trusts it.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fleet2mqtt test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// roundTrip checks that c, subscribed to tesla/#, receives what the broker
// publishes.
func roundTrip(t *testing.T, b *Broker, c *client) {
	t.Helper()
	c.subscribe(t, "tesla/#")
	msg := []pubsub.Message{{Topic: "tesla/" + testVIN + "/Soc", Payload: []byte("80"), QoS: 1, Retain: true}}
	if err := b.Publish(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t); m.Topic != msg[0].Topic || string(m.Payload) != "80" {
		t.Errorf("got %s %q", m.Topic, m.Payload)
	}
}

func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	cfg := testConfig()
	cfg.Listen = ""
	cfg.TLS = TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	b := startBroker(t, cfg, "")
	if b.Addr(ListenerTCP) != "" {
		t.Error("plain listener runs though disabled")
	}
	conn, err := tls.Dial("tcp", b.Addr(ListenerTLS), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := connectClient(t, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, c)
}

func dialWebSocket(t *testing.T, url string, header http.Header, tlsConfig *tls.Config) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsConfig, HandshakeTimeout: wait}
	return d.DialContext(t.Context(), url, header)
}

func TestWebSocketListener(t *testing.T) {
	cfg := testConfig()
	cfg.WebSocket = WebSocketConfig{Listen: "127.0.0.1:0", AllowedOrigins: []string{"https://dash.example.com"}}
	b := startBroker(t, cfg, "")
	url := "ws://" + b.Addr(ListenerWebSocket) + "/mqtt"

	ws, resp, err := dialWebSocket(t, url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", got)
	}
	c, _, err := connectClient(t, &wsConn{Conn: ws.NetConn(), ws: ws}, nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, c)

	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"https://dash.example.com", true},
		{"http://" + b.Addr(ListenerWebSocket), true}, // a page of the listener's own host
		{"https://evil.example", false},
		{"null", false},
	} {
		ws, resp, err := dialWebSocket(t, url, http.Header{"Origin": {tt.origin}}, nil)
		if tt.ok {
			if err != nil {
				t.Errorf("origin %s refused: %v", tt.origin, err)
				continue
			}
			ws.Close()
			continue
		}
		if err == nil {
			ws.Close()
			t.Errorf("origin %s accepted", tt.origin)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %s: %v, want 403", tt.origin, err)
		}
	}
}

func TestSecureWebSocketListener(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	cfg := testConfig()
	cfg.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.WebSocket = WebSocketConfig{Listen: "127.0.0.1:0", TLS: true}
	b := startBroker(t, cfg, "")
	ws, _, err := dialWebSocket(t, "wss://"+b.Addr(ListenerWebSocket)+"/", nil, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := connectClient(t, &wsConn{Conn: ws.NetConn(), ws: ws}, nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, c)
}

// TestCertificateReload: a renewed certificate is served without a
// restart, and a broken renewal leaves the previous one in service.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	c, err := certs.NewFiles(certFile, keyFile, testLogger(t), certs.FilesOptions{}) // Recheck 0: every call looks
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.GetCertificate(nil)
	writeCert(t, dir) // renew
	future := time.Now().Add(time.Minute)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	second, _ := c.GetCertificate(nil)
	if string(first.Certificate[0]) == string(second.Certificate[0]) {
		t.Error("renewed certificate not loaded")
	}
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Minute)
	os.Chtimes(certFile, later, later)
	third, err := c.GetCertificate(nil)
	if err != nil || third != second {
		t.Errorf("broken renewal: %v, certificate changed: %t", err, third != second)
	}
}
