package addon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

const testToken = "test-supervisor-token"

// fakeSupervisor answers GET /services/mqtt as the Supervisor does, on
// loopback: status and body are the test's; the request is checked as the
// real Supervisor would (path, method, bearer token).
type fakeSupervisor struct {
	*httptest.Server
	status int
	body   string
	calls  atomic.Int32
}

func newFakeSupervisor(t *testing.T, status int, body string) *fakeSupervisor {
	t.Helper()
	f := &fakeSupervisor{status: status, body: body}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/services/mqtt":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"result":"error","message":"404: Not Found"}`)
			return
		case r.Method != http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		case r.Header.Get("Authorization") != "Bearer "+testToken:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"result":"error","message":"Invalid token"}`)
			return
		}
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
	}))
	t.Cleanup(f.Close)
	return f
}

// mosquittoAnswer is what the Supervisor answers when the Mosquitto
// add-on provides the MQTT service.
const mosquittoAnswer = `{"result":"ok","data":{"host":"core-mosquitto","port":1883,"ssl":false,"protocol":"3.1.1","username":"addons","password":"s3cret","addon":"core_mosquitto"}}`

func TestMQTTService(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		token   string
		want    *Service
		wantURL string
		wantErr error  // errors.Is target, when set
		errHas  string // substring of the message, when set
	}{
		{
			name: "mosquitto add-on", status: 200, body: mosquittoAnswer, token: testToken,
			want:    &Service{Host: "core-mosquitto", Port: 1883, Username: "addons", Password: "s3cret", Protocol: "3.1.1", Addon: "core_mosquitto"},
			wantURL: "mqtt://core-mosquitto:1883",
		},
		{
			name: "ssl", status: 200, token: testToken,
			body:    `{"result":"ok","data":{"host":"broker.lan","port":8883,"ssl":true,"username":"u","password":"p"}}`,
			want:    &Service{Host: "broker.lan", Port: 8883, SSL: true, Username: "u", Password: "p"},
			wantURL: "mqtts://broker.lan:8883",
		},
		{
			name: "ipv6 host", status: 200, token: testToken,
			body:    `{"result":"ok","data":{"host":"fd00::1","port":1883}}`,
			want:    &Service{Host: "fd00::1", Port: 1883},
			wantURL: "mqtt://[fd00::1]:1883",
		},
		{name: "no broker add-on", status: 400, body: `{"result":"error","message":"Service not enabled"}`, token: testToken, wantErr: ErrNoService},
		{name: "no such service", status: 404, body: `{"result":"error","message":"Service does not exist"}`, token: testToken, wantErr: ErrNoService},
		{name: "bad token", status: 200, body: mosquittoAnswer, token: "wrong", wantErr: ErrUnauthorized, errHas: "SUPERVISOR_TOKEN is not valid"},
		{name: "no mqtt:want", status: 403, body: `{"result":"error","message":"No access to mqtt service!"}`, token: testToken, wantErr: ErrUnauthorized, errHas: "mqtt:want"},
		{name: "no token", status: 200, body: mosquittoAnswer, token: "", wantErr: ErrNoToken},
		{name: "malformed json", status: 200, body: `{"result":"ok","data":{"host":`, token: testToken, errHas: "answer is not JSON"},
		{name: "wrong types", status: 200, body: `{"result":"ok","data":{"host":"h","port":"1883"}}`, token: testToken, errHas: "malformed data"},
		{name: "no data", status: 200, body: `{"result":"ok"}`, token: testToken, errHas: "no data"},
		{name: "no host", status: 200, body: `{"result":"ok","data":{"port":1883}}`, token: testToken, errHas: "no usable host and port"},
		{name: "result error", status: 200, body: `{"result":"error","message":"boom"}`, token: testToken, errHas: `result "error" ("boom")`},
		{name: "server error", status: 500, body: `{"result":"error","message":"Unknown error, see supervisor"}`, token: testToken, errHas: "status 500"},
		{name: "not json at all", status: 502, body: `<html>bad gateway</html>`, token: testToken, errHas: "status 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSupervisor(t, tt.status, tt.body)
			got, err := MQTTService(context.Background(), f.URL, tt.token)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q is not %q", err, tt.wantErr)
				}
				if tt.errHas != "" && !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("error %q does not say %q", err, tt.errHas)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), testToken) {
					t.Errorf("error %q shows a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.URL() != tt.wantURL {
				t.Errorf("URL %q, want %q", got.URL(), tt.wantURL)
			}
			if strings.Contains(got.String(), got.Password) && got.Password != "" {
				t.Errorf("String %q shows the password", got.String())
			}
		})
	}
}

func TestMQTTServiceUnreachable(t *testing.T) {
	f := newFakeSupervisor(t, 200, mosquittoAnswer)
	url := f.URL
	f.Close()
	if _, err := MQTTService(context.Background(), url, testToken); err == nil || errors.Is(err, ErrNoService) {
		t.Fatalf("error %v, want a connection error that is not ErrNoService", err)
	}
}

func TestMQTTServiceCanceled(t *testing.T) {
	f := newFakeSupervisor(t, 200, mosquittoAnswer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := MQTTService(ctx, f.URL, testToken); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
