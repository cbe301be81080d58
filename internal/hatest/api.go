package hatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// requestLimit bounds one API call.
const requestLimit = 30 * time.Second

// The owner onboarding creates.
const (
	ownerName     = "fleet2mqtt"
	ownerPassword = "fleet2mqtt-test-password"
)

// onboard creates the owner user and exchanges the authorization code
// onboarding returns for an access token (valid 30 minutes, longer than a
// test runs).
func (h *HomeAssistant) onboard() {
	h.t.Helper()
	clientID := h.URL + "/"
	var user struct {
		AuthCode string `json:"auth_code"`
	}
	h.call(http.MethodPost, "/api/onboarding/users", map[string]string{
		"client_id": clientID, "name": "Owner", "username": ownerName,
		"password": ownerPassword, "language": "en",
	}, &user)
	if user.AuthCode == "" {
		h.t.Fatal("hatest: onboarding gave no authorization code")
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {user.AuthCode}, "client_id": {clientID}}
	ctx, cancel := context.WithTimeout(context.Background(), requestLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := do(req, &tok); err != nil {
		h.t.Fatalf("hatest: token for the owner: %v", err)
	}
	h.token = tok.AccessToken
	h.waitRunning()
}

// waitRunning waits until Home Assistant says its start has finished.
func (h *HomeAssistant) waitRunning() {
	h.t.Helper()
	deadline := time.Now().Add(StartLimit)
	for {
		var cfg struct {
			State string `json:"state"`
		}
		err := h.Call(http.MethodGet, "/api/config", nil, &cfg)
		if err == nil && cfg.State == "RUNNING" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("hatest: Home Assistant not running after %v (state %q, %v):\n%s", StartLimit, cfg.State, err, h.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// call is Call that fails the test on error.
func (h *HomeAssistant) call(method, path string, body, out any) {
	h.t.Helper()
	if err := h.Call(method, path, body, out); err != nil {
		h.t.Fatalf("hatest: %v", err)
	}
}

// Call sends a REST request with the owner's token (once there is one),
// body as JSON, and decodes the JSON answer into out (unless nil).
func (h *HomeAssistant) Call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	return do(req, out)
}

func do(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %v: %s", req.Method, req.URL.Path, err, raw)
	}
	return nil
}

// Broker is where the MQTT integration connects.
type Broker struct {
	Host, Username, Password string
	Port                     int
}

// AddMQTT adds the MQTT integration through its config flow, as a person
// does in the UI, and waits until it has connected to the broker.
func (h *HomeAssistant) AddMQTT(b Broker) {
	h.t.Helper()
	var step struct {
		Type   string          `json:"type"`
		FlowID string          `json:"flow_id"`
		StepID string          `json:"step_id"`
		Errors json.RawMessage `json:"errors"`
		Reason string          `json:"reason"`
	}
	h.call(http.MethodPost, "/api/config/config_entries/flow", map[string]any{"handler": "mqtt", "show_advanced_options": false}, &step)
	if step.Type != "form" || step.StepID != "broker" {
		h.t.Fatalf("hatest: the MQTT config flow starts with %s %q (reason %q), want the broker form", step.Type, step.StepID, step.Reason)
	}
	form := map[string]any{"broker": b.Host, "port": b.Port}
	if b.Username != "" {
		form["username"], form["password"] = b.Username, b.Password
	}
	h.call(http.MethodPost, "/api/config/config_entries/flow/"+step.FlowID, form, &step)
	if step.Type != "create_entry" {
		h.t.Fatalf("hatest: the MQTT config flow ended with %s %q, errors %s (reason %q)", step.Type, step.StepID, step.Errors, step.Reason)
	}
	h.waitMQTTLoaded()
}

// waitMQTTLoaded waits until the MQTT config entry is loaded, which it is
// once connected to its broker.
func (h *HomeAssistant) waitMQTTLoaded() {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var entries []struct {
			Domain string `json:"domain"`
			State  string `json:"state"`
			Reason string `json:"reason"`
		}
		h.call(http.MethodGet, "/api/config/config_entries/entry?domain=mqtt", nil, &entries)
		if len(entries) == 1 && entries[0].State == "loaded" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("hatest: MQTT config entries %+v, want one loaded:\n%s", entries, h.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// State is an entity's state as the REST API gives it.
type State struct {
	EntityID   string         `json:"entity_id"`
	State      string         `json:"state"`
	Attributes map[string]any `json:"attributes"`
}

// States returns every entity's current state by entity id.
func (h *HomeAssistant) States() map[string]State {
	h.t.Helper()
	var list []State
	h.call(http.MethodGet, "/api/states", nil, &list)
	out := make(map[string]State, len(list))
	for _, s := range list {
		out[s.EntityID] = s
	}
	return out
}

// WS is a connection to Home Assistant's WebSocket API, authenticated as
// the owner.
type WS struct {
	conn *websocket.Conn
	next int
}

// WebSocket opens a WebSocket API connection, closed when the test ends.
func (h *HomeAssistant) WebSocket() *WS {
	h.t.Helper()
	u := "ws" + strings.TrimPrefix(h.URL, "http") + "/api/websocket"
	d := websocket.Dialer{HandshakeTimeout: requestLimit}
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		h.t.Fatalf("hatest: WebSocket API: %v", err)
	}
	h.t.Cleanup(func() { conn.Close() })
	ws := &WS{conn: conn, next: 1}
	var msg struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	_ = conn.SetReadDeadline(time.Now().Add(requestLimit))
	if err := conn.ReadJSON(&msg); err != nil || msg.Type != "auth_required" {
		h.t.Fatalf("hatest: WebSocket API greeting %+v: %v", msg, err)
	}
	if err := conn.WriteJSON(map[string]string{"type": "auth", "access_token": h.token}); err != nil {
		h.t.Fatal(err)
	}
	if err := conn.ReadJSON(&msg); err != nil || msg.Type != "auth_ok" {
		h.t.Fatalf("hatest: WebSocket API authentication: %+v: %v", msg, err)
	}
	return ws
}

// Call sends a command (its "type" and further fields) and decodes the
// result into out.
func (ws *WS) Call(cmd map[string]any, out any) error {
	id := ws.next
	ws.next++
	msg := map[string]any{"id": id}
	for k, v := range cmd {
		msg[k] = v
	}
	_ = ws.conn.SetWriteDeadline(time.Now().Add(requestLimit))
	if err := ws.conn.WriteJSON(msg); err != nil {
		return err
	}
	_ = ws.conn.SetReadDeadline(time.Now().Add(requestLimit))
	for {
		var res struct {
			ID      int             `json:"id"`
			Type    string          `json:"type"`
			Success bool            `json:"success"`
			Result  json.RawMessage `json:"result"`
			Error   *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := ws.conn.ReadJSON(&res); err != nil {
			return fmt.Errorf("%v: %w", cmd["type"], err)
		}
		if res.ID != id || res.Type != "result" {
			continue // an event of an earlier subscription
		}
		if !res.Success {
			if res.Error != nil {
				return fmt.Errorf("%v: %s: %s", cmd["type"], res.Error.Code, res.Error.Message)
			}
			return fmt.Errorf("%v failed", cmd["type"])
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(res.Result, out)
	}
}

// Event is an event Home Assistant fired, as a subscription delivers it.
type Event struct {
	Type      string          `json:"event_type"`
	Data      json.RawMessage `json:"data"`
	TimeFired string          `json:"time_fired"`
}

// Subscribe subscribes to the events of eventType (such as
// "state_changed") and delivers them in the order Home Assistant fired
// them, until the connection closes (the channel is then closed). The
// connection serves nothing else afterwards: open another for Call.
func (ws *WS) Subscribe(eventType string) (<-chan Event, error) {
	if err := ws.Call(map[string]any{"type": "subscribe_events", "event_type": eventType}, nil); err != nil {
		return nil, err
	}
	// Reading also answers Home Assistant's pings, which keeps the
	// connection open however long the test waits.
	_ = ws.conn.SetReadDeadline(time.Time{})
	out := make(chan Event, 1024)
	go func() {
		defer close(out)
		for {
			var msg struct {
				Type  string `json:"type"`
				Event Event  `json:"event"`
			}
			if err := ws.conn.ReadJSON(&msg); err != nil {
				return
			}
			if msg.Type == "event" {
				out <- msg.Event
			}
		}
	}()
	return out, nil
}
