package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
)

const e2eVIN = "5YJ3TESTVIN000001"

// startTestApp runs fleet2mqtt on its defaults, on free loopback ports and
// a temporary data directory.
func startTestApp(t *testing.T, mutate func(*config.Config)) *app {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Vehicle.Listen = "127.0.0.1:0"
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := a.wait(); err != nil {
			t.Errorf("app stopped with %v", err)
		}
	})
	return a
}

// carConn connects to the app's vehicle listener as the car vin, with a
// certificate from the development vehicle CA in the data directory.
func carConn(t *testing.T, a *app, vin string) *websocket.Conn {
	t.Helper()
	pki, err := certs.LoadDir(filepath.Join(a.cfg.DataDir, "dev-pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.VehicleCA.IssueVehicle(vin)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.ServerCA.Cert)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}}
	h := http.Header{}
	h.Set("X-Network-Interface", "wifi")
	ws, _, err := d.Dial("wss://"+a.vehicleAddr+"/", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// carRoots returns the pool that trusts the app's development server CA.
func carRoots(t *testing.T, a *app) *x509.CertPool {
	t.Helper()
	pki, err := certs.LoadDir(filepath.Join(a.cfg.DataDir, "dev-pki"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.ServerCA.Pool()
}

// subscriber collects the messages an MQTT client receives.
type subscriber struct {
	mu   sync.Mutex
	msgs map[string]string // last payload per topic
	seen chan string
}

func subscribe(t *testing.T, addr, filter string) *subscriber {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{msgs: map[string]string{}, seen: make(chan string, 4096)}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.mu.Lock()
			s.msgs[pr.Packet.Topic] = string(pr.Packet.Payload)
			s.mu.Unlock()
			select {
			case s.seen <- pr.Packet.Topic:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "e2e-" + filter, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return s
}

// waitFor waits until topic's last payload is want; it returns the last
// payload seen.
func (s *subscriber) waitFor(t *testing.T, topic, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		p := s.msgs[topic]
		s.mu.Unlock()
		if p == want {
			return p
		}
		select {
		case <-s.seen:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			return p
		}
	}
}

// wait returns the payload of topic once it has arrived.
func (s *subscriber) wait(t *testing.T, topic string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		p, ok := s.msgs[topic]
		s.mu.Unlock()
		if ok {
			return p
		}
		select {
		case <-s.seen:
		case <-deadline:
			t.Fatalf("no message on %s", topic)
		}
	}
}

// TestEndToEnd sends golden frames as a car and reads the signals back from
// the embedded broker over real TCP, as a Home Assistant or Node-RED user
// would.
func TestEndToEnd(t *testing.T) {
	a := startTestApp(t, nil)
	live := subscribe(t, a.mqttAddr, "tesla/#")
	if got := live.wait(t, "tesla/bridge/state"); got != "online" {
		t.Errorf("bridge state %q, want online", got)
	}

	ws := carConn(t, a, e2eVIN)
	for _, name := range []string{"01_v_scalar_types.bin", "03_v_string_transforms.bin", "04_v_enums.bin", "02_v_location.bin"} {
		frame, err := os.ReadFile(filepath.Join("../../testdata/vehicle-frames", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, resp, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if f, err := envelope.Parse(resp); err != nil || f.Type != envelope.TypeStreamAck {
			t.Fatalf("%s: response %x (%v), want an ack", name, resp, err)
		}
	}

	want := map[string]string{
		"Soc":                 "79.125",
		"ChargeLimitSoc":      "80",
		"VehicleSpeed":        "65.5",
		"OutsideTemp":         "-3.25",
		"Locked":              "true",
		"SentryMode":          "Armed", // 04 sends the typed enum after 01's bool
		"VehicleName":         "Golden Test Car",
		"PackCurrent":         "0.0015",
		"PackVoltage":         "398.25",
		"Gear":                "D",
		"DetailedChargeState": "Charging",
		"Location":            `{"latitude":37.412374,"longitude":-122.145867}`,
		"connected":           "true",
	}
	for field, payload := range want {
		if got := live.waitFor(t, "tesla/"+e2eVIN+"/"+field, payload); got != payload {
			t.Errorf("%s = %q, want %q", field, got, payload)
		}
	}

	// A subscriber that comes later gets the retained state at once.
	late := subscribe(t, a.mqttAddr, "tesla/"+e2eVIN+"/+")
	for _, field := range []string{"Soc", "Gear", "Location", "connected"} {
		if got := late.wait(t, "tesla/"+e2eVIN+"/"+field); got != want[field] {
			t.Errorf("retained %s = %q, want %q", field, got, want[field])
		}
	}

	// The setup page answers on the web listener (asking for its password),
	// and the vehicle listener serves the public key path without a client
	// certificate (404 until the page has made the key pair).
	resp0, err := http.Get("http://" + a.httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp0.Body)
	resp0.Body.Close()
	if resp0.StatusCode != http.StatusOK || !strings.Contains(string(page), "password") {
		t.Errorf("GET / on the web listener: %d, want the setup page's login", resp0.StatusCode)
	}
	keyClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: carRoots(t, a), ServerName: "127.0.0.1"}}}
	resp1, err := keyClient.Get("https://" + a.vehicleAddr + "/.well-known/appspecific/com.tesla.3p.public-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	resp1.Body.Close()
	if resp1.StatusCode != http.StatusNotFound {
		t.Errorf("public key before setup: %d, want 404", resp1.StatusCode)
	}

	// The metrics count what happened.
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`fleet2mqtt_records_total{outcome="published",topic="V"} 4`,
		"fleet2mqtt_vehicles_connected 1",
		"fleet2mqtt_vehicle_acks_total 4",
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// While the car is connected, /metrics names no car.
	if strings.Contains(string(body), e2eVIN) {
		t.Errorf("/metrics shows the VIN %s", e2eVIN)
	}

	ws.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		live.mu.Lock()
		got := live.msgs["tesla/"+e2eVIN+"/connected"]
		live.mu.Unlock()
		if got == "false" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connected = %q after the car left, want false", got)
		}
		<-time.After(10 * time.Millisecond)
	}
}
