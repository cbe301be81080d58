package fleetapitest

import (
	"encoding/json"
	"net/http"
)

// This file holds every answer shape of the fake, in one place, to compare
// with the project's FLEET-API.md (shared docs) and Tesla's developer
// documentation. The shapes are spelled out as maps on purpose: they do not
// reuse the client's types, so a mistake in the client's JSON tags cannot
// hide behind the same mistake here.

// envelope wraps a result as every Fleet API answer does:
// {"response": …}.
func envelope(result any) map[string]any {
	return map[string]any{"response": result}
}

// errorBody is a Fleet API error answer: {"response":null,"error":…,
// "error_description":…}.
func errorBody(code, description string) map[string]any {
	return map[string]any{"response": nil, "error": code, "error_description": description}
}

// oauthError is an error answer of the token endpoint (RFC 6749 §5.2).
func oauthError(code, description string) map[string]any {
	return map[string]any{"error": code, "error_description": description}
}

// tokenAnswer is the token endpoint's success: access_token (a JWT whose
// aud lists the hosts it is valid for), refresh_token and id_token for
// owners, expires_in (28800 seen), token_type Bearer.
func tokenAnswer(access, refresh, idToken string, expiresIn int) map[string]any {
	m := map[string]any{
		"access_token": access,
		"expires_in":   expiresIn,
		"token_type":   "Bearer",
	}
	if refresh != "" {
		m["refresh_token"] = refresh
	}
	if idToken != "" {
		m["id_token"] = idToken
	}
	return m
}

// userRegionAnswer: GET /api/1/users/region →
// {"response":{"region":"eu","fleet_api_base_url":"https://…"}}.
func userRegionAnswer(region, baseURL string) map[string]any {
	return envelope(map[string]any{"region": region, "fleet_api_base_url": baseURL})
}

// vehicleObject is one element of GET /api/1/vehicles.
func vehicleObject(v *Vehicle) map[string]any {
	return map[string]any{
		"id":               v.ID,
		"vehicle_id":       v.ID + 1000,
		"id_s":             formatID(v.ID),
		"vin":              v.VIN,
		"display_name":     v.DisplayName,
		"state":            v.State,
		"access_type":      v.AccessType,
		"in_service":       false,
		"color":            nil,
		"tokens":           []string{},
		"calendar_enabled": true,
		"api_version":      nil,
	}
}

// vehiclesAnswer: GET /api/1/vehicles → {"response":[…],
// "pagination":{…},"count":n}.
func vehiclesAnswer(page []map[string]any, current, perPage, total int) map[string]any {
	pages := (total + perPage - 1) / perPage
	var next, previous any
	if current < pages {
		next = current + 1
	}
	if current > 1 {
		previous = current - 1
	}
	return map[string]any{
		"response": page,
		"pagination": map[string]any{
			"previous": previous,
			"next":     next,
			"current":  current,
			"per_page": perPage,
			"count":    total,
			"pages":    pages,
		},
		"count": total,
	}
}

// vehicleInfoObject is one value of fleet_status's vehicle_info.
func vehicleInfoObject(v *Vehicle) map[string]any {
	return map[string]any{
		"firmware_version":                       v.FirmwareVersion,
		"vehicle_command_protocol_required":      !v.PredatesCommandProtocol,
		"fleet_telemetry_version":                v.FleetTelemetryVersion,
		"total_number_of_keys":                   v.TotalKeys,
		"safety_screen_streaming_toggle_enabled": v.SafetyScreenStreamingToggle,
	}
}

// fleetStatusAnswer: POST /api/1/vehicles/fleet_status →
// {"response":{"key_paired_vins":[…],"unpaired_vins":[…],
// "vehicle_info":{VIN:{…}}}}.
func fleetStatusAnswer(paired, unpaired []string, info map[string]any) map[string]any {
	return envelope(map[string]any{
		"key_paired_vins": nonNil(paired),
		"unpaired_vins":   nonNil(unpaired),
		"vehicle_info":    info,
	})
}

// The skip reasons of a config push, always all present in the answer.
var skipReasons = []string{"missing_key", "unsupported_hardware", "unsupported_firmware", "max_configs"}

// pushAnswer: POST /api/1/vehicles/fleet_telemetry_config_jws →
// {"response":{"updated_vehicles":1,"skipped_vehicles":{"missing_key":[],
// "unsupported_hardware":[],"unsupported_firmware":[],"max_configs":[]}}}.
func pushAnswer(updated int, skipped map[string][]string) map[string]any {
	s := make(map[string]any, len(skipReasons))
	for _, r := range skipReasons {
		s[r] = nonNil(skipped[r])
	}
	return envelope(map[string]any{"updated_vehicles": updated, "skipped_vehicles": s})
}

// configAnswer: GET /api/1/vehicles/{vin}/fleet_telemetry_config →
// {"response":{"synced":bool,"config":{…}|null,"limit_reached":bool,
// "key_paired":bool}}. The config is the pushed claims (iss and aud
// included, as Tesla shows them).
func configAnswer(synced bool, config json.RawMessage, limitReached, keyPaired bool) map[string]any {
	var cfg any
	if config != nil {
		cfg = config
	}
	return envelope(map[string]any{
		"synced":        synced,
		"config":        cfg,
		"limit_reached": limitReached,
		"key_paired":    keyPaired,
	})
}

// deleteConfigAnswer: DELETE /api/1/vehicles/{vin}/fleet_telemetry_config.
func deleteConfigAnswer(updated int) map[string]any {
	return envelope(map[string]any{"updated_vehicles": updated})
}

// streamErrorObject is one element of fleet_telemetry_errors.
func streamErrorObject(e StreamError) map[string]any {
	return map[string]any{
		"name":       e.Name,
		"error":      e.Error,
		"vin":        e.VIN,
		"created_at": e.CreatedAt,
		"error_name": e.ErrorName,
		"txID":       e.TxID,
		"hostname":   e.Hostname,
		"port":       e.Port,
	}
}

// telemetryErrorsAnswer: GET /api/1/vehicles/{vin}/fleet_telemetry_errors
// and GET /api/1/partner_accounts/fleet_telemetry_errors →
// {"response":{"fleet_telemetry_errors":[{"name","error","vin",
// "created_at","error_name","txID","hostname","port"}]}}.
func telemetryErrorsAnswer(errs []StreamError) map[string]any {
	list := make([]map[string]any, 0, len(errs))
	for _, e := range errs {
		list = append(list, streamErrorObject(e))
	}
	return envelope(map[string]any{"fleet_telemetry_errors": list})
}

// publicKeyAnswer: GET /api/1/partner_accounts/public_key?domain=… →
// {"response":{"public_key":"04…"}}.
func publicKeyAnswer(hexKey string) map[string]any {
	return envelope(map[string]any{"public_key": hexKey})
}

// registerAnswer: POST /api/1/partner_accounts. Not documented in
// FLEET-API.md; this shape (the account's client id, domain and key) is an
// assumption, and the client reads nothing from it that matters.
func registerAnswer(clientID, domain, hexKey string) map[string]any {
	return envelope(map[string]any{
		"client_id":  clientID,
		"domain":     domain,
		"public_key": hexKey,
		"ou_code":    "fake",
	})
}

// Error answers with the texts Tesla is seen to send.

// wrongRegion is the 421 for an owner whose data lives in another region:
// the body names the right base URL, and so does an Alt-Svc header.
func wrongRegion(baseURL string) (int, map[string]any, http.Header) {
	h := http.Header{}
	h.Set("Alt-Svc", "h2="+baseURL)
	return http.StatusMisdirectedRequest, errorBody("user out of region, use base URL: "+baseURL, ""), h
}

// notRegistered is the 412 of a region where the application is not
// registered as a partner.
func notRegistered() (int, map[string]any) {
	return http.StatusPreconditionFailed, errorBody("Account must be registered in the current region", "")
}

// originMismatch is the 412 of a registration whose domain is not the
// application's allowed origin.
func originMismatch(domain string) (int, map[string]any) {
	return http.StatusPreconditionFailed, errorBody("Root domain "+domain+" must match registered allowed origin", "")
}

// keyDownloadFailed is the 424 of a registration whose public key Tesla
// could not fetch.
func keyDownloadFailed(url, why string) (int, map[string]any) {
	return http.StatusFailedDependency, errorBody("Public key download failed for url "+url, why)
}

// unsignedConfigRefused is the 412 of the unsigned config endpoint for
// applications without a legacy CSR.
func unsignedConfigRefused() (int, map[string]any) {
	return http.StatusPreconditionFailed, errorBody("fleet_telemetry_config requires a signed config for this application: use fleet_telemetry_config_jws", "")
}

// loginRequired is the token endpoint's 401 for a grant that is gone.
func loginRequired(why string) (int, map[string]any) {
	return http.StatusUnauthorized, oauthError("login_required", why)
}

// rateLimitHeaders are the headers of a 429.
func rateLimitHeaders(limit, resetSeconds int) http.Header {
	h := http.Header{}
	h.Set("RateLimit-Limit", itoa(limit))
	h.Set("RateLimit-Remaining", "0")
	h.Set("RateLimit-Reset", itoa(resetSeconds))
	h.Set("Retry-After", itoa(resetSeconds))
	return h
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
