// Package fleetapi is fleet2mqtt's side of Tesla's developer platform: the
// OAuth logins, the Fleet API calls the setup page needs, the application's
// key pair, and the Tesla.SS256 signature a car requires on its streaming
// config. Package fleetapitest is an in-process fake of Tesla to test
// against.
//
// # The setup sequence
//
// One Client serves one developer application (client id and secret):
//
//	c, err := fleetapi.New(fleetapi.Config{ClientID: id, ClientSecret: secret,
//		RedirectURL: "https://example.com/setup/callback"}, log)
//
// The wizard's steps then map onto the package like this:
//
//  1. Key pair: LoadOrCreateKey (0600, atomic), serve MarshalPublicKeyPEM
//     at PublicKeyPath on the vehicle listener.
//  2. Partner registration, per region: RegisterPartner, then
//     CheckPartnerKey (Tesla's copy of the key must equal ours).
//  3. Owner login: AuthCodeURL(state, nonce, …) in the browser; on the
//     callback ParseCallback(query, state) and Exchange(ctx, code, nonce,
//     store), which saves the tokens and returns an *Owner. Then
//     Owner.DiscoverRegion.
//  4. Owner.Vehicles; pairing: PairingURL (as a link and a QR code for the
//     phone), then poll Owner.FleetStatus until FleetStatus.Paired.
//  5. Fields: TelemetryConfig.Validate, EstimateMonthlySignals.
//  6. Owner.ConfigureTelemetry (validate, sign, push); explain each
//     PushResult.Skipped reason with SkipReason.Explain.
//  7. Poll Owner.TelemetryConfig until its State is ConfigActive (or
//     ConfigRejected: the car refused it); show Owner.TelemetryErrors.
//  8. Push again when NeedsRepush; Owner.DeleteTelemetryConfig to stop.
//
// Later runs rebuild the session with Client.Owner(store, region).
//
// # Tokens
//
// Tesla's refresh tokens are single use. Every refreshed token is handed to
// the TokenStore (FileTokenStore writes it atomically, mode 0600) before
// its access token is used; ErrLoginRequired (errors.Is) means the grant is
// gone and the owner must log in again. Partner tokens are fetched and
// cached per region by the client. No token or secret is ever logged or put
// in an error message.
//
// # Errors
//
// Tesla's error answers are *APIError values that match a sentinel with
// errors.Is (ErrLoginRequired, ErrNotRegistered for 412, ErrWrongRegion for
// 421, ErrRateLimited for 429 with APIError.RateLimit, ErrServer, …).
// Explain turns any error of this package into plain words for the page;
// SkipReason, VehicleConfig and StreamError have Explain methods too.
package fleetapi
