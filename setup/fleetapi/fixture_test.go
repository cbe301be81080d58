package fleetapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi/fleetapitest"
)

const (
	testDomain   = "fleet2mqtt.example.com"
	testCallback = "https://fleet2mqtt.example.com/setup/callback"
)

// fixture is a fake Tesla, a client of it, the application's key pair
// served by a loopback "domain", and a log of everything the client logged.
type fixture struct {
	fake   *fleetapitest.Server
	client *fleetapi.Client
	key    *ecdsa.PrivateKey
	logs   *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture(t *testing.T, opts fleetapitest.Options) *fixture {
	t.Helper()
	key, err := fleetapi.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := fleetapi.MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// The application's domain, serving the public key where Tesla looks.
	domain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != fleetapi.PublicKeyPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(pemKey)
	}))
	t.Cleanup(domain.Close)
	if opts.PublicKeyURL == nil {
		opts.PublicKeyURL = func(d string) string { return domain.URL + fleetapi.PublicKeyPath }
	}
	if opts.RedirectURIs == nil {
		opts.RedirectURIs = []string{testCallback}
	}
	opts.Logf = t.Logf
	fake := fleetapitest.New(opts)
	t.Cleanup(fake.Close)

	logs := &syncBuffer{}
	client, err := fleetapi.New(fleetapi.Config{
		ClientID:     fake.ClientID(),
		ClientSecret: fake.ClientSecret(),
		RedirectURL:  testCallback,
		Endpoints:    fake.Endpoints(),
	}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{fake: fake, client: client, key: key, logs: logs}
}

// register registers the application in every region.
func (f *fixture) register(t *testing.T) {
	t.Helper()
	for _, r := range fleetapi.Regions {
		if _, err := f.client.RegisterPartner(context.Background(), r, testDomain); err != nil {
			t.Fatalf("register in %s: %v", r, err)
		}
	}
}

// login walks the owner login and returns the session.
func (f *fixture) login(t *testing.T, store fleetapi.TokenStore) *fleetapi.Owner {
	t.Helper()
	ctx := context.Background()
	state, nonce := rand.Text(), rand.Text()
	callback, err := f.fake.Login(ctx, f.client.AuthCodeURL(state, nonce, fleetapi.AuthURLOptions{ShowKeypairStep: true}))
	if err != nil {
		t.Fatal(err)
	}
	code, err := fleetapi.ParseCallback(callback.Query(), state)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := f.client.Exchange(ctx, code, nonce, store)
	if err != nil {
		t.Fatal(err)
	}
	return owner
}

// memStore is a TokenStore in memory that records every save and can be
// told to fail or to check something at save time.
type memStore struct {
	mu      sync.Mutex
	tok     *oauth2.Token
	saves   []*oauth2.Token
	failErr error
	onSave  func(*oauth2.Token)
}

func (s *memStore) LoadToken() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		return nil, nil
	}
	tok := *s.tok
	return &tok, nil
}

func (s *memStore) SaveToken(tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onSave != nil {
		s.onSave(tok)
	}
	if s.failErr != nil {
		return s.failErr
	}
	c := *tok
	s.tok = &c
	s.saves = append(s.saves, &c)
	return nil
}

func (s *memStore) saved() []*oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*oauth2.Token(nil), s.saves...)
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failErr = err
}

// expire makes the stored token's access token look expired to the client.
func (s *memStore) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tok.Expiry = time.Now().Add(-time.Minute)
}

// testCA returns the PEM of a fresh self-signed CA certificate.
func testCA(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fleet2mqtt test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// validConfig returns a config that passes Validate.
func validConfig(t testing.TB) fleetapi.TelemetryConfig {
	delta := 1.0
	return fleetapi.TelemetryConfig{
		Hostname: "telemetry.example.com",
		Port:     443,
		CA:       testCA(t),
		Exp:      time.Now().Add(fleetapi.ConfigLifetime).Unix(),
		Fields: map[string]fleetapi.FieldConfig{
			"Soc":      {IntervalSeconds: 60, MinimumDelta: &delta, ResendIntervalSeconds: 3600},
			"Location": {IntervalSeconds: 30},
			"Gear":     {IntervalSeconds: 1},
		},
		AlertTypes:     []string{"service"},
		DeliveryPolicy: fleetapi.DeliveryPolicyLatest,
	}
}

// apiError returns err as *APIError or fails the test.
func apiError(t *testing.T, err error) *fleetapi.APIError {
	t.Helper()
	var e *fleetapi.APIError
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	return e
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
