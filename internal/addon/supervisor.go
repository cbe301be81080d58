package addon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors of this package.
var (
	// ErrNoService means the Supervisor has no MQTT service: no broker
	// add-on provides one. fleet2mqtt then runs its embedded broker.
	ErrNoService = errors.New("home assistant has no MQTT service")
	// ErrUnauthorized means the Supervisor refused our token or did not
	// give us access to the MQTT service.
	ErrUnauthorized = errors.New("supervisor refused the request")
	// ErrNoToken means SUPERVISOR_TOKEN is not set: we do not run under
	// the Supervisor.
	ErrNoToken = errors.New("SUPERVISOR_TOKEN is not set")
	// ErrUnknownOption means options.json holds a key the add-on does
	// not know.
	ErrUnknownOption = errors.New("unknown option")
)

// SupervisorURL is where an add-on reaches the Supervisor's API.
const SupervisorURL = "http://supervisor"

// supervisorTimeout bounds one request when ctx has no earlier deadline;
// the Supervisor answers in milliseconds or not at all.
const supervisorTimeout = 10 * time.Second

// maxResponseSize bounds what is read of a Supervisor answer.
const maxResponseSize = 1 << 20

// Service is the MQTT broker the Supervisor tells add-ons to use.
type Service struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	SSL      bool   `json:"ssl"`
	Username string `json:"username"`
	Password string `json:"password"`
	// Protocol is the MQTT version Home Assistant uses ("3.1.1");
	// fleet2mqtt speaks MQTT 5 regardless.
	Protocol string `json:"protocol"`
	// Addon is the slug of the add-on that provides the broker.
	Addon string `json:"addon"`
}

// URL is the broker as fleet2mqtt's external broker configuration wants
// it: mqtt://host:port, or mqtts:// when the service says ssl.
func (s *Service) URL() string {
	scheme := "mqtt"
	if s.SSL {
		scheme = "mqtts"
	}
	return scheme + "://" + net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// String names the broker without its password.
func (s *Service) String() string {
	if s.Addon != "" {
		return s.URL() + " (from add-on " + s.Addon + ")"
	}
	return s.URL()
}

// supervisorAnswer is the envelope of every Supervisor API response.
type supervisorAnswer struct {
	Result  string          `json:"result"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// MQTTService asks the Supervisor at supervisorURL (SupervisorURL in an
// add-on) for the MQTT service, authenticated with token (the add-on's
// SUPERVISOR_TOKEN). It returns ErrNoService when Home Assistant has no
// MQTT broker add-on, ErrUnauthorized when the Supervisor refuses the token
// or the add-on lacks `services: ["mqtt:want"]`, and other errors (network,
// malformed answer) with what went wrong.
func MQTTService(ctx context.Context, supervisorURL, token string) (*Service, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, supervisorTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(supervisorURL, "/")+"/services/mqtt", nil)
	if err != nil {
		return nil, fmt.Errorf("supervisor mqtt service: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := supervisorClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("supervisor mqtt service: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return nil, fmt.Errorf("supervisor mqtt service: read answer: %w", err)
	}

	var ans supervisorAnswer
	jsonErr := json.Unmarshal(body, &ans)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusBadRequest, http.StatusNotFound:
		// "Service not enabled" (no broker add-on) or "Service does not
		// exist" (a Supervisor without MQTT services).
		return nil, ErrNoService
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: status %d%s: SUPERVISOR_TOKEN is not valid; restart the add-on", ErrUnauthorized, resp.StatusCode, quote(ans.Message))
	case http.StatusForbidden:
		return nil, fmt.Errorf("%w: status %d%s: the add-on needs `services: [\"mqtt:want\"]` in its config.yaml", ErrUnauthorized, resp.StatusCode, quote(ans.Message))
	default:
		return nil, fmt.Errorf("supervisor mqtt service: status %d%s", resp.StatusCode, quote(ans.Message))
	}
	if jsonErr != nil {
		return nil, fmt.Errorf("supervisor mqtt service: answer is not JSON: %w", jsonErr)
	}
	if ans.Result != "ok" {
		return nil, fmt.Errorf("supervisor mqtt service: result %q%s", ans.Result, quote(ans.Message))
	}
	if len(ans.Data) == 0 || string(ans.Data) == "null" {
		return nil, errors.New("supervisor mqtt service: answer has no data")
	}
	var svc Service
	if err := json.Unmarshal(ans.Data, &svc); err != nil {
		return nil, fmt.Errorf("supervisor mqtt service: malformed data: %w", err)
	}
	if svc.Host == "" || svc.Port <= 0 || svc.Port > 65535 {
		return nil, fmt.Errorf("supervisor mqtt service: data has no usable host and port (host %q, port %d)", svc.Host, svc.Port)
	}
	return &svc, nil
}

// quote formats the Supervisor's message for an error, if it gave one.
func quote(msg string) string {
	if msg == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", msg)
}

// supervisorClient talks to the Supervisor directly: a proxy configured
// for the container must not see the token.
var supervisorClient = &http.Client{Transport: &http.Transport{
	Proxy:                 nil,
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	ResponseHeaderTimeout: supervisorTimeout,
	MaxIdleConns:          1,
	IdleConnTimeout:       30 * time.Second,
}}
