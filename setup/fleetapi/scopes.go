package fleetapi

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// CommandScopes are the owner scopes vehicle commands need: Tesla answers
// 403 to signed_command (and to REST commands) for a token without them.
// Logins made before fleet2mqtt asked for them lack them; a login with
// AuthURLOptions.PromptMissingScopes asks the owner for just those.
var CommandScopes = []string{"vehicle_cmds", "vehicle_charging_cmds"}

// GrantedScopes returns the scopes an owner's token carries: the "scp"
// claim of the access token (Tesla's access tokens are JWTs that list the
// scopes the owner granted), else the "scope" member of the token answer.
// ok is false when neither says, and nothing can be told.
func GrantedScopes(tok *oauth2.Token) (scopes []string, ok bool) {
	if tok == nil {
		return nil, false
	}
	if parts := strings.Split(tok.AccessToken, "."); len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil {
			var claims struct {
				Scp json.RawMessage `json:"scp"`
			}
			if json.Unmarshal(payload, &claims) == nil && len(claims.Scp) > 0 {
				var list []string
				if json.Unmarshal(claims.Scp, &list) == nil {
					return list, true
				}
				var one string
				if json.Unmarshal(claims.Scp, &one) == nil {
					return strings.Fields(one), true
				}
			}
		}
	}
	if s, _ := tok.Extra("scope").(string); s != "" {
		return strings.Fields(s), true
	}
	return nil, false
}

// MissingScopes returns the scopes of want that the token was not granted,
// in want's order; nil when it has them all or does not say
// (GrantedScopes).
func MissingScopes(tok *oauth2.Token, want []string) []string {
	granted, ok := GrantedScopes(tok)
	if !ok {
		return nil
	}
	var missing []string
	for _, s := range want {
		if !slices.Contains(granted, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
