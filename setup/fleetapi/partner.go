package fleetapi

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// RegisterPartner registers the application's domain in region
// (POST /api/1/partner_accounts with a partner token). Tesla then fetches
// https://<domain>/.well-known/appspecific/com.tesla.3p.public-key.pem, so
// the key must be served there first. Register in every region the owners'
// cars may be in; registering again is harmless.
func (c *Client) RegisterPartner(ctx context.Context, region Region, domain string) (*PartnerAccount, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	var out PartnerAccount
	body := map[string]string{"domain": domain}
	if err := c.partnerCall(ctx, region, call{method: http.MethodPost, path: "/api/1/partner_accounts", body: body, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// PartnerPublicKey returns the hex of the public key (65-byte uncompressed
// point, "04…") Tesla holds for domain in region
// (GET /api/1/partner_accounts/public_key).
func (c *Client) PartnerPublicKey(ctx context.Context, region Region, domain string) (string, error) {
	if err := ValidateDomain(domain); err != nil {
		return "", err
	}
	var out struct {
		PublicKey string `json:"public_key"`
	}
	q := url.Values{"domain": {domain}}
	if err := c.partnerCall(ctx, region, call{method: http.MethodGet, path: "/api/1/partner_accounts/public_key", query: q, out: &out}); err != nil {
		return "", err
	}
	return out.PublicKey, nil
}

// CheckPartnerKey verifies that Tesla holds pub for domain in region; it
// returns ErrKeyMismatch when Tesla holds another key.
func (c *Client) CheckPartnerKey(ctx context.Context, region Region, domain string, pub *ecdsa.PublicKey) error {
	want, err := PublicKeyHex(pub)
	if err != nil {
		return err
	}
	got, err := c.PartnerPublicKey(ctx, region, domain)
	if err != nil {
		return err
	}
	if !strings.EqualFold(strings.TrimSpace(got), want) {
		return fmt.Errorf("%w (region %s, domain %s)", ErrKeyMismatch, region, domain)
	}
	return nil
}

// PartnerTelemetryErrors returns the streaming errors of every car that
// streams for the application in region
// (GET /api/1/partner_accounts/fleet_telemetry_errors, partner token).
func (c *Client) PartnerTelemetryErrors(ctx context.Context, region Region) ([]StreamError, error) {
	var out struct {
		Errors []StreamError `json:"fleet_telemetry_errors"`
	}
	if err := c.partnerCall(ctx, region, call{method: http.MethodGet, path: "/api/1/partner_accounts/fleet_telemetry_errors", out: &out}); err != nil {
		return nil, err
	}
	return out.Errors, nil
}
