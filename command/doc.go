// Package command sends Tesla vehicle commands. Build validates a command
// given by its Tesla REST name and JSON arguments (the names and arguments
// Tesla's HTTP proxy accepts, listed by Names) and encodes it for the
// domain that executes it; the wire and cryptography are in ./protocol.
//
// The Engine carries commands to the cars over the Fleet API
// (signed_command): one protocol session per car and domain, cached in
// memory and on disk (Config.SessionDir, one 0600 file per car and domain
// holding protocol.State, nothing secret), so that consecutive commands to
// an awake car cost one round trip each; commands of one car and domain
// are serialized. Processes sharing the directory (serve and the command
// line) reserve counters in blocks under the directory's exclusive lock,
// so that no counter is signed by two of them. Faults are handled as protocol.md says: epoch, expiry,
// counter and signature faults refresh the session from the fault's
// session info (or a new handshake) and retry once; BUSY, TIMEOUT and the
// security controller's WAIT are retried with a doubling back-off; an
// unknown key is explained with the pairing link; every other fault is
// named in words. A sleeping car (408) is woken and polled until online
// (Config.WakeTimeout) unless the request is OnlyIfAwake; a car that
// predates the protocol (422, or SetProtocolRequired(vin, false) from
// fleet_status) is sent Tesla's REST command instead. A token bucket per
// car (RateLimit, DefaultRateLimit) bounds what an automation loop can
// spend; Metrics (Counters) sees every billed request: OpenCounters keeps
// the monthly counts in <SessionDir>/usage.json, shared by every process
// that commands the cars. Every command is
// logged with who sent it, what, the result and the duration.
//
// Wiring:
//
//	key, _ := fleetapi.LoadPrivateKey(filepath.Join(dataDir, "setup", "private-key.pem"))
//	client, _ := fleetapi.New(fleetapi.Config{ClientID: id, Endpoints: endpoints}, log) // WithAPI for --api
//	owner := client.Owner(fleetapi.FileTokenStore{Path: tokenPath}, region)
//	counters := command.OpenCounters(filepath.Join(dataDir, "commands", command.UsageFileName),
//		log, command.CountersOptions{}) // counters.Close() when stopping
//	engine, _ := command.New(command.Config{Key: key, Transport: owner,
//		SessionDir: filepath.Join(dataDir, "commands"), PairingDomain: domain,
//		Metrics: counters}, log)
//	res := engine.Execute(ctx, command.Request{VIN: vin, Name: "charge_start", Who: "mqtt:alice"})
//
// A Tesla-proxy-compatible API uses the caller's own token for one
// request: Request.Via = client.Owner(fleetapi.BearerToken(token), region).
// RunCLI is `fleet2mqtt command`.
package command
