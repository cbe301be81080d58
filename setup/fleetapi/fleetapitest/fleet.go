package fleetapitest

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// maxBody bounds request bodies, as any real server does.
const maxBody = 1 << 20

func (s *Server) fleetMux(region fleetapi.Region) http.Handler {
	mux := http.NewServeMux()
	owner := func(h func(http.ResponseWriter, *http.Request, fleetapi.Region)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.ownerGuard(w, r, region) {
				h(w, r, region)
			}
		}
	}
	partner := func(h func(http.ResponseWriter, *http.Request, fleetapi.Region)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, ok := s.bearer(w, r, region, partnerToken); ok {
				h(w, r, region)
			}
		}
	}
	mux.HandleFunc("GET /api/1/users/region", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.bearer(w, r, region, ownerToken); !ok || !noQuery(w, r) {
			return
		}
		s.mu.Lock()
		home := s.ownerRgn
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, userRegionAnswer(string(home), s.regions[home].URL))
	})
	mux.HandleFunc("GET /api/1/users/me", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.bearer(w, r, region, ownerToken); !ok || !noQuery(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, envelope(map[string]any{
			"email": OwnerEmail, "full_name": OwnerName,
			"profile_image_url": "", "vault_uuid": "b5c443af-a286-49eb-a4ad-35a97963155d",
		}))
	})
	mux.HandleFunc("GET /api/1/vehicles", owner(s.handleVehicles))
	mux.HandleFunc("POST /api/1/vehicles/fleet_status", owner(s.handleFleetStatus))
	mux.HandleFunc("POST /api/1/vehicles/fleet_telemetry_config_jws", owner(s.handlePushJWS))
	mux.HandleFunc("POST /api/1/vehicles/fleet_telemetry_config", owner(func(w http.ResponseWriter, _ *http.Request, _ fleetapi.Region) {
		status, body := unsignedConfigRefused()
		writeJSON(w, status, body)
	}))
	mux.HandleFunc("GET /api/1/vehicles/{vin}/fleet_telemetry_config", owner(s.handleGetConfig))
	mux.HandleFunc("DELETE /api/1/vehicles/{vin}/fleet_telemetry_config", owner(s.handleDeleteConfig))
	mux.HandleFunc("GET /api/1/vehicles/{vin}/fleet_telemetry_errors", owner(s.handleVehicleErrors))
	mux.HandleFunc("POST /api/1/partner_accounts", partner(s.handleRegister))
	mux.HandleFunc("GET /api/1/partner_accounts/public_key", partner(s.handlePublicKey))
	mux.HandleFunc("GET /api/1/partner_accounts/fleet_telemetry_errors", partner(s.handlePartnerErrors))
	s.commandRoutes(mux, owner)
	return mux
}

// ownerGuard admits an owner call: an owner token with vehicle_device_data
// valid here (401/403), the owner's home region (421), and the
// application registered in this region (412).
func (s *Server) ownerGuard(w http.ResponseWriter, r *http.Request, region fleetapi.Region) bool {
	tok, ok := s.bearer(w, r, region, ownerToken)
	if !ok {
		return false
	}
	if !slices.Contains(tok.scopes, "vehicle_device_data") {
		writeJSON(w, http.StatusForbidden, errorBody("Unauthorized missing scopes", "this endpoint needs vehicle_device_data"))
		return false
	}
	s.mu.Lock()
	home := s.ownerRgn
	registered := s.registered[region] != nil
	s.mu.Unlock()
	if home != region {
		status, body, h := wrongRegion(s.regions[home].URL)
		for k, v := range h {
			w.Header()[k] = v
		}
		writeJSON(w, status, body)
		return false
	}
	if !registered {
		status, body := notRegistered()
		writeJSON(w, status, body)
		return false
	}
	return true
}

// noQuery answers 400 when the request has query parameters.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_request", "unexpected query "+r.URL.RawQuery))
		return false
	}
	return true
}

// readJSON decodes a request body strictly: application/json, one object,
// no unknown fields, nothing after it.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_request", "Content-Type must be application/json"))
		return false
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_request", "body: "+err.Error()))
		return false
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_request", "body: data after the JSON object"))
		return false
	}
	return true
}

func (s *Server) handleVehicles(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	q := r.URL.Query()
	page, perPage := 1, 100
	for k, vs := range q {
		if k != "page" && k != "per_page" {
			writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "unknown parameter "+k))
			return
		}
		n, err := strconv.Atoi(vs[0])
		if len(vs) != 1 || err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", k+" must be a positive integer"))
			return
		}
		if k == "page" {
			page = n
		} else {
			perPage = n
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := []map[string]any{}
	for i := (page - 1) * perPage; i < min(page*perPage, len(s.vehicles)); i++ {
		list = append(list, vehicleObject(&s.vehicles[i].Vehicle))
	}
	writeJSON(w, http.StatusOK, vehiclesAnswer(list, page, perPage, len(s.vehicles)))
}

func (s *Server) handleFleetStatus(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	var body struct {
		VINs []string `json:"vins"`
	}
	if !noQuery(w, r) || !readJSON(w, r, &body) {
		return
	}
	if len(body.VINs) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "vins must list at least one VIN"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var paired, unpaired []string
	info := make(map[string]any)
	for _, vin := range body.VINs {
		v := s.vehicleLocked(vin)
		if v == nil {
			unpaired = append(unpaired, vin)
			continue
		}
		if !v.Paired && v.PairAfterPolls > 0 {
			if v.pairPolls > 0 {
				v.pairPolls--
			} else {
				v.Paired = true
			}
		}
		if v.Paired {
			paired = append(paired, vin)
		} else {
			unpaired = append(unpaired, vin)
		}
		info[vin] = vehicleInfoObject(&v.Vehicle)
	}
	writeJSON(w, http.StatusOK, fleetStatusAnswer(paired, unpaired, info))
}

func (s *Server) handlePushJWS(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	var body struct {
		VINs  []string `json:"vins"`
		Token string   `json:"token"`
	}
	if !noQuery(w, r) || !readJSON(w, r, &body) {
		return
	}
	if len(body.VINs) == 0 || body.Token == "" {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "vins and token are required"))
		return
	}
	s.mu.Lock()
	reg := s.registered[region]
	now := s.now()
	s.mu.Unlock()
	if reg == nil {
		status, b := notRegistered()
		writeJSON(w, status, b)
		return
	}

	claims, err := fleetapi.VerifyJWS(body.Token, reg.key)
	if err != nil {
		// Tesla's server may pass a badly signed config on and let the car
		// report InvalidSignature; the fake refuses it at once.
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_token", "config token does not verify with the key registered for "+reg.domain+": "+err.Error()))
		return
	}
	if problems := checkConfigClaims(claims, reg.key, now.Unix()); len(problems) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody("invalid_config", strings.Join(problems, "; ")))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vin := range body.VINs {
		if s.vehicleLocked(vin) == nil {
			writeJSON(w, http.StatusNotFound, errorBody("not_found", "vehicle "+vin+" is not on this account"))
			return
		}
	}
	updated := 0
	skipped := make(map[string][]string)
	for _, vin := range body.VINs {
		v := s.vehicleLocked(vin)
		reason := v.Skip
		if reason == "" && !v.Paired {
			reason = "missing_key"
		}
		if reason != "" {
			skipped[reason] = append(skipped[reason], vin)
			continue
		}
		v.config = slices.Clone(claims)
		v.syncPolls = v.SyncAfterPolls
		updated++
	}
	writeJSON(w, http.StatusOK, pushAnswer(updated, skipped))
}

func (s *Server) handleGetConfig(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	if !noQuery(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vehicleLocked(r.PathValue("vin"))
	if v == nil {
		writeJSON(w, http.StatusNotFound, errorBody("not_found", "vehicle not found"))
		return
	}
	switch {
	case v.config == nil:
		writeJSON(w, http.StatusOK, configAnswer(true, nil, v.LimitReached, v.Paired))
	case v.syncPolls > 0:
		v.syncPolls--
		writeJSON(w, http.StatusOK, configAnswer(false, v.config, v.LimitReached, v.Paired))
	case v.RejectConfig:
		writeJSON(w, http.StatusOK, configAnswer(true, nil, true, v.Paired))
	default:
		writeJSON(w, http.StatusOK, configAnswer(true, v.config, v.LimitReached, v.Paired))
	}
}

func (s *Server) handleDeleteConfig(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	if !noQuery(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vehicleLocked(r.PathValue("vin"))
	if v == nil {
		writeJSON(w, http.StatusNotFound, errorBody("not_found", "vehicle not found"))
		return
	}
	updated := 0
	if v.config != nil {
		updated = 1
	}
	v.config = nil
	writeJSON(w, http.StatusOK, deleteConfigAnswer(updated))
}

func (s *Server) handleVehicleErrors(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	if !noQuery(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vehicleLocked(r.PathValue("vin"))
	if v == nil {
		writeJSON(w, http.StatusNotFound, errorBody("not_found", "vehicle not found"))
		return
	}
	writeJSON(w, http.StatusOK, telemetryErrorsAnswer(v.Errors))
}

func (s *Server) handlePartnerErrors(w http.ResponseWriter, r *http.Request, _ fleetapi.Region) {
	if !noQuery(w, r) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []StreamError
	for _, v := range s.vehicles {
		all = append(all, v.Errors...)
	}
	all = append(all, s.partnerErr...)
	writeJSON(w, http.StatusOK, telemetryErrorsAnswer(all))
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	var body struct {
		Domain string `json:"domain"`
	}
	if !noQuery(w, r) || !readJSON(w, r, &body) {
		return
	}
	domain := body.Domain
	if domain == "" || strings.ContainsAny(domain, ":/?#@ ") || !strings.Contains(domain, ".") {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "domain must be a bare host name"))
		return
	}
	if len(s.opts.AllowedOrigins) > 0 && !slices.ContainsFunc(s.opts.AllowedOrigins, func(o string) bool {
		return strings.EqualFold(hostOf(o), domain)
	}) {
		status, b := originMismatch(domain)
		writeJSON(w, status, b)
		return
	}
	s.mu.Lock()
	pub := s.keys[domain]
	s.mu.Unlock()
	if pub == nil {
		keyURL := s.opts.PublicKeyURL(domain)
		var err error
		if pub, err = s.fetchKey(r, keyURL); err != nil {
			status, b := keyDownloadFailed(keyURL, err.Error())
			writeJSON(w, status, b)
			return
		}
	}
	hexKey, err := fleetapi.PublicKeyHex(pub)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_key", err.Error()))
		return
	}
	s.mu.Lock()
	s.registered[region] = &registration{domain: domain, key: pub}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, registerAnswer(s.opts.ClientID, domain, hexKey))
}

// fetchKey downloads and parses a domain's public key, as Tesla does when
// registering (P-256 in SubjectPublicKeyInfo PEM only).
func (s *Server) fetchKey(r *http.Request, keyURL string) (*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, keyURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return nil, err
	}
	return fleetapi.ParsePublicKeyPEM(data)
}

func (s *Server) handlePublicKey(w http.ResponseWriter, r *http.Request, region fleetapi.Region) {
	q := r.URL.Query()
	if len(q) != 1 || len(q["domain"]) != 1 {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_field", "want exactly one query parameter: domain"))
		return
	}
	s.mu.Lock()
	reg := s.registered[region]
	s.mu.Unlock()
	if reg == nil || !strings.EqualFold(reg.domain, q.Get("domain")) {
		writeJSON(w, http.StatusNotFound, errorBody("not_found", "no public key registered for "+q.Get("domain")))
		return
	}
	hexKey, _ := fleetapi.PublicKeyHex(reg.key)
	writeJSON(w, http.StatusOK, publicKeyAnswer(hexKey))
}

// configKeys are the claims a signed config may carry.
var configKeys = []string{"hostname", "port", "ca", "exp", "fields", "alert_types", "delivery_policy", "prefer_typed", "iss", "aud"}

// checkConfigClaims checks a verified config's claims as Tesla and the car
// do; it returns every problem found.
func checkConfigClaims(claims []byte, key *ecdsa.PublicKey, now int64) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var m map[string]json.RawMessage
	if err := json.Unmarshal(claims, &m); err != nil || m == nil {
		return []string{"claims are not a JSON object"}
	}
	for k := range m {
		if !slices.Contains(configKeys, k) {
			bad("unknown claim %q", k)
		}
	}
	for _, k := range []string{"hostname", "port", "ca", "exp", "fields", "iss", "aud"} {
		if _, ok := m[k]; !ok {
			bad("missing claim %q", k)
		}
	}

	var aud, iss, hostname, ca string
	if raw, ok := m["aud"]; ok && (json.Unmarshal(raw, &aud) != nil || aud != fleetapi.TelemetryAudience) {
		bad("aud must be %q", fleetapi.TelemetryAudience)
	}
	if raw, ok := m["iss"]; ok {
		want, _ := fleetapi.PublicKeyBytes(key)
		if json.Unmarshal(raw, &iss) != nil || iss != stdBase64(want) {
			bad("iss must be the registered public key in standard base64")
		}
	}
	if raw, ok := m["hostname"]; ok {
		if json.Unmarshal(raw, &hostname) != nil || hostname == "" || strings.ContainsAny(hostname, ":/ ") {
			bad("hostname must be a bare host name string")
		}
	}
	if raw, ok := m["port"]; ok {
		if n, ok := jsonInteger(raw); !ok {
			bad("port must be an integer, not %s", raw)
		} else if n < 1 || n > 65535 {
			bad("port %d out of range", n)
		}
	}
	if raw, ok := m["exp"]; ok {
		if n, ok := jsonInteger(raw); !ok {
			bad("exp must be an integer (Unix seconds), not %s", raw)
		} else if n <= now {
			bad("exp %d is not in the future", n)
		}
	}
	if raw, ok := m["ca"]; ok {
		if json.Unmarshal(raw, &ca) != nil || !strings.Contains(ca, "-----BEGIN CERTIFICATE-----") {
			bad("ca must be a PEM certificate chain string")
		} else if err := checkCA(ca); err != nil {
			bad("ca: %v", err)
		}
	}
	if raw, ok := m["fields"]; ok {
		problems = append(problems, checkFieldClaims(raw)...)
	}
	if raw, ok := m["alert_types"]; ok {
		var types []string
		if json.Unmarshal(raw, &types) != nil {
			bad("alert_types must be an array of strings")
		}
	}
	if raw, ok := m["delivery_policy"]; ok {
		var p string
		if json.Unmarshal(raw, &p) != nil {
			bad("delivery_policy must be a string")
		}
	}
	if raw, ok := m["prefer_typed"]; ok {
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			bad("prefer_typed must be a boolean")
		}
	}
	return problems
}

// jsonInteger reports whether raw is a JSON number literal without fraction
// or exponent, and its value.
func jsonInteger(raw json.RawMessage) (int64, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || strings.ContainsAny(s, `.eE"`) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
