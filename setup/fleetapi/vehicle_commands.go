package fleetapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// The Fleet API calls of vehicle commands. The command engine (package
// command) signs and checks the messages; these calls only carry them.

// SignedCommand sends a Vehicle Command Protocol message, an encoded
// RoutableMessage, to the car (POST /api/1/vehicles/{vin}/signed_command
// with {"routable_message": base64}) and returns the car's encoded answer.
// A sleeping car answers 408 (APIError.Status), a car that predates the
// protocol 422.
func (o *Owner) SignedCommand(ctx context.Context, vin string, message []byte) ([]byte, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	var out string
	body := map[string]string{"routable_message": base64.StdEncoding.EncodeToString(message)}
	if err := o.call(ctx, call{method: http.MethodPost, path: vinPath(vin, "signed_command"), body: body, out: &out}); err != nil {
		return nil, err
	}
	resp, err := base64.StdEncoding.DecodeString(out)
	if err != nil {
		return nil, fmt.Errorf("%w: signed_command: the answer is not base64: %v", ErrMalformedResponse, err)
	}
	return resp, nil
}

// WakeUp asks the car to wake up (POST /api/1/vehicles/{vin}/wake_up) and
// returns its state at that moment, usually still "asleep". Tesla bills
// every wake.
func (o *Owner) WakeUp(ctx context.Context, vin string) (*Vehicle, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	var out Vehicle
	if err := o.call(ctx, call{method: http.MethodPost, path: vinPath(vin, "wake_up"), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Vehicle returns one car of the account (GET /api/1/vehicles/{vin}),
// with its state (online, asleep, offline). It does not wake the car.
func (o *Owner) Vehicle(ctx context.Context, vin string) (*Vehicle, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	var out Vehicle
	if err := o.call(ctx, call{method: http.MethodGet, path: "/api/1/vehicles/" + url.PathEscape(vin), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// CommandResult is the answer to a REST vehicle command.
type CommandResult struct {
	Result bool   `json:"result"`
	Reason string `json:"reason"`
}

// Command sends a REST vehicle command
// (POST /api/1/vehicles/{vin}/command/{name}) with args as the JSON body
// ({} when empty), the way to command cars that predate the Vehicle
// Command Protocol. Cars that require the protocol refuse it.
func (o *Owner) Command(ctx context.Context, vin, name string, args json.RawMessage) (*CommandResult, error) {
	if err := checkVINs([]string{vin}); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("no command name given")
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	var out CommandResult
	if err := o.call(ctx, call{method: http.MethodPost, path: vinPath(vin, "command/"+url.PathEscape(name)), body: args, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// BearerToken is a TokenStore holding an access token someone else
// manages, such as the caller's own token on a Tesla-proxy-compatible API.
// It is never refreshed: when Tesla refuses it, calls fail with
// ErrLoginRequired.
type BearerToken string

// LoadToken implements TokenStore.
func (b BearerToken) LoadToken() (*oauth2.Token, error) {
	if b == "" {
		return nil, nil
	}
	return &oauth2.Token{AccessToken: string(b), TokenType: "Bearer"}, nil
}

// SaveToken implements TokenStore; a bearer token is never replaced.
func (b BearerToken) SaveToken(*oauth2.Token) error {
	return fmt.Errorf("a bearer token given by the caller is not stored")
}
