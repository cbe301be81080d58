// Package fleetapitest is an in-process fake of Tesla's authentication
// server and Fleet API, for tests of the setup page and of package
// fleetapi. It listens on loopback only (one server for authentication,
// one per Fleet API region) and checks requests as strictly as Tesla does:
// methods, paths, content types, form fields per grant type, client
// credentials, single-use codes and rotating single-use refresh tokens,
// bearer tokens of the right kind (partner or owner) and audience for the
// region, strict JSON bodies, and the signed streaming config, verified
// with the public key registered for the application (fetched from the
// domain, as Tesla does, or injected) and checked claim by claim.
//
// Knobs simulate what real setups meet: the owner in another region (421),
// an unregistered region (412), a grant that is gone (401
// login_required), rate limits (429), server errors and malformed answers
// (Fail), skip reasons, configs that sync after a few polls or are
// rejected by the car, pairing that completes after a few polls, and the
// cars' streaming errors.
//
//	fake := fleetapitest.New(fleetapitest.Options{
//		RedirectURIs: []string{"https://example.com/callback"},
//		Vehicles:     []fleetapitest.Vehicle{{VIN: "5YJ3E1EA7KF000001", PairAfterPolls: 2}},
//	})
//	defer fake.Close()
//	client, _ := fleetapi.New(fleetapi.Config{ClientID: fake.ClientID(),
//		ClientSecret: fake.ClientSecret(), RedirectURL: "https://example.com/callback",
//		Endpoints: fake.Endpoints()}, nil)
//
// Every answer shape lives in fixtures.go, to compare with FLEET-API.md.
package fleetapitest
