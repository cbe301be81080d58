package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

const testHost = "vehicle.fleet2mqtt.test"

func TestCheck(t *testing.T) {
	pki := newTestPKI(t, "Test")
	other := newTestPKI(t, "Other")
	vehicleCAs := x509.NewCertPool()
	vehicleCAs.AddCert(newTestPKI(t, "Vehicle").root)
	longList := x509.NewCertPool()
	for range maxAcceptableCAs + 5 {
		longList.AddCert(newTestPKI(t, "Many").root)
	}

	good := pki.leaf(t, serverTemplate(testHost))
	noSAN := serverTemplate(testHost)
	noSAN.DNSNames = nil
	expired := serverTemplate(testHost)
	expired.NotBefore, expired.NotAfter = time.Now().Add(-100*24*time.Hour), time.Now().Add(-10*24*time.Hour)
	expiring := serverTemplate(testHost)
	expiring.NotAfter = time.Now().Add(10 * 24 * time.Hour)
	notYet := serverTemplate(testHost)
	notYet.NotBefore, notYet.NotAfter = time.Now().Add(48*time.Hour), time.Now().Add(90*24*time.Hour)

	selfKey := newKey(t)
	selfTmpl := serverTemplate(testHost)
	selfSigned := sign(t, selfTmpl, nil, selfKey.Public(), selfKey)

	leafOnly := good
	leafOnly.Certificate = good.Certificate[:1]
	outOfOrder := good
	outOfOrder.Certificate = [][]byte{good.Certificate[0], other.inter.Raw, pki.inter.Raw}

	server := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: vehicleCAs}
	}

	type want struct {
		sev  Severity
		text string // in the message, if not empty
	}
	tests := []struct {
		name   string
		server *tls.Config // nil: nothing listens
		ca     []byte
		want   map[string]want
	}{
		{
			name:   "all good",
			server: server(good),
			ca:     pki.caPEM(),
			want: map[string]want{
				CheckConnect: {Pass, ""}, CheckName: {Pass, ""}, CheckChain: {Pass, "Test Root"},
				CheckCA: {Pass, ""}, CheckExpiry: {Pass, ""}, CheckClientCert: {Pass, "1 authorities"},
			},
		},
		{
			name:   "name only in the Common Name",
			server: server(pki.leaf(t, noSAN)),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckName: {Fail, "legacy Common Name field"}, CheckCA: {Pass, ""}},
		},
		{
			name:   "certificate for another name",
			server: server(pki.leaf(t, serverTemplate("other.example.com"))),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckName: {Fail, "is for other.example.com, not " + testHost}},
		},
		{
			name:   "intermediate not sent",
			server: server(leafOnly),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckChain: {Fail, `not the intermediate "Test Intermediate"`}, CheckCA: {Pass, ""}},
		},
		{
			name:   "ca of another authority",
			server: server(good),
			ca:     other.caPEM(),
			want:   map[string]want{CheckCA: {Fail, "does not validate the served chain"}, CheckName: {Pass, ""}},
		},
		{
			name:   "ca without the intermediate",
			server: server(good),
			ca:     pemOf(pki.root),
			want:   map[string]want{CheckCA: {Warn, "check_server_cert.sh"}, CheckChain: {Pass, ""}},
		},
		{
			name:   "no ca and a private root",
			server: server(good),
			want:   map[string]want{CheckCA: {Fail, "No ca to check against"}},
		},
		{
			name:   "expired",
			server: server(pki.leaf(t, expired)),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckExpiry: {Fail, "expired on"}, CheckCA: {Fail, "expired"}},
		},
		{
			name:   "expiring soon",
			server: server(pki.leaf(t, expiring)),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckExpiry: {Warn, "in 9 days"}, CheckCA: {Pass, ""}},
		},
		{
			name:   "not yet valid",
			server: server(pki.leaf(t, notYet)),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckExpiry: {Fail, "not valid before"}},
		},
		{
			name:   "self-signed",
			server: server(tls.Certificate{Certificate: [][]byte{selfSigned.Raw}, PrivateKey: selfKey}),
			ca:     pemOf(selfSigned),
			want:   map[string]want{CheckChain: {Warn, "self-signed"}, CheckCA: {Pass, ""}},
		},
		{
			name:   "chain out of order",
			server: server(outOfOrder),
			ca:     pki.caPEM(),
			want:   map[string]want{CheckChain: {Warn, "out of order"}, CheckCA: {Pass, ""}},
		},
		{
			name:   "TLS terminated by a proxy",
			server: &tls.Config{Certificates: []tls.Certificate{good}, NextProtos: []string{"h2", "http/1.1"}},
			ca:     pki.caPEM(),
			want:   map[string]want{CheckClientCert: {Fail, "HTTP/2"}, CheckName: {Pass, ""}},
		},
		{
			name:   "long list of client authorities",
			server: &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: longList},
			ca:     pki.caPEM(),
			want:   map[string]want{CheckClientCert: {Warn, "25 authorities"}},
		},
		{
			name:   "client certificate required (TLS 1.2)",
			server: &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAnyClientCert, MaxVersion: tls.VersionTLS12},
			ca:     pki.caPEM(),
			want:   map[string]want{CheckConnect: {Warn, "asked for a client certificate"}, CheckClientCert: {Pass, ""}, CheckCA: {Pass, ""}},
		},
		{
			name: "nothing listening",
			want: map[string]want{CheckConnect: {Fail, "Nothing accepts connections"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			if tt.server != nil {
				addr = testenv.ServeTLS(t, tt.server)
			} else {
				addr = closedAddr(t)
			}
			r, err := Check(context.Background(), CheckOptions{Host: testHost, Addr: addr, CA: tt.ca, Roots: x509.NewCertPool()})
			if err != nil {
				t.Fatal(err)
			}
			for check, w := range tt.want {
				f, ok := r.Find(check)
				if !ok {
					t.Errorf("%s: no finding; report: %+v", check, r.Findings)
					continue
				}
				if f.Severity != w.sev || !strings.Contains(f.Message, w.text) {
					t.Errorf("%s: got %v %q, want %v containing %q", check, f.Severity, f.Message, w.sev, w.text)
				}
			}
			wantOK := true
			for _, w := range tt.want {
				if w.sev == Fail {
					wantOK = false
				}
			}
			if r.OK() != wantOK {
				t.Errorf("OK() = %v, want %v; findings: %+v", r.OK(), wantOK, r.Findings)
			}
		})
	}
}

func TestCheckOptions(t *testing.T) {
	tests := []struct {
		name string
		opts CheckOptions
		want string
	}{
		{"no host", CheckOptions{}, "no host name"},
		{"bad port", CheckOptions{Host: testHost, Port: 70000}, "port 70000"},
		{"ca without certificates", CheckOptions{Host: testHost, CA: []byte("hello")}, "ca: no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestServedCA(t *testing.T) {
	pki := newTestPKI(t, "Test")
	roots := x509.NewCertPool()
	roots.AddCert(pki.root)
	good := pki.leaf(t, serverTemplate(testHost))

	selfKey := newKey(t)
	privateRoot := sign(t, caTemplate("Private Root"), nil, selfKey.Public(), selfKey)
	leafKey := newKey(t)
	privateLeaf := sign(t, serverTemplate(testHost), privateRoot, leafKey.Public(), selfKey)

	tests := []struct {
		name  string
		chain [][]byte
		roots *x509.CertPool
		want  []byte
		err   error
	}{
		{"trusted root", good.Certificate, roots, pki.caPEM(), nil},
		{"root sent with a private chain", [][]byte{privateLeaf.Raw, privateRoot.Raw}, x509.NewCertPool(), pemOf(privateRoot), nil},
		{"intermediate missing", good.Certificate[:1], roots, nil, ErrUntrustedChain},
		{"unknown root", good.Certificate, x509.NewCertPool(), nil, ErrUntrustedChain},
		{"empty", nil, roots, nil, ErrNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServedCA(tt.chain, tt.roots)
			if tt.err != nil {
				if err == nil || !strings.Contains(err.Error(), tt.err.Error()) {
					t.Fatalf("got %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestMergePEM(t *testing.T) {
	a := newTestPKI(t, "A")
	b := newTestPKI(t, "B")
	got := mergePEM(pemOf(a.inter, a.root), pemOf(b.inter, a.root), nil)
	want := pemOf(a.inter, a.root, b.inter)
	if string(got) != string(want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"disabled ignores everything", Config{Email: "nonsense", Hostnames: []string{"x"}}, ""},
		{"defaults", Config{Enabled: true}, ""},
		{"full", Config{Enabled: true, Email: "me@example.com", DirectoryURL: "https://acme.example.com/dir", Hostnames: []string{"car.example.com"}}, ""},
		{"email with name", Config{Enabled: true, Email: "Me <me@example.com>"}, "email:"},
		{"http directory", Config{Enabled: true, DirectoryURL: "http://acme.example.com/dir"}, "directory_url:"},
		{"wildcard", Config{Enabled: true, Hostnames: []string{"*.example.com"}}, "wildcard"},
		{"port", Config{Enabled: true, Hostnames: []string{"car.example.com:443"}}, "port"},
		{"ip", Config{Enabled: true, Hostnames: []string{"192.0.2.1"}}, "IP address"},
		{"single label", Config{Enabled: true, Hostnames: []string{"localhost"}}, "one label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestReportWriteText(t *testing.T) {
	r := &Report{Host: testHost, Addr: "127.0.0.1:443", Findings: []Finding{
		{Check: CheckName, Severity: Pass, Message: "the name is covered"},
		{Check: CheckExpiry, Severity: Warn, Message: "expires soon"},
	}}
	var b strings.Builder
	if err := r.WriteText(&b, "ca.pem"); err != nil {
		t.Fatal(err)
	}
	want := "Checking " + testHost + " as a car would (connecting to 127.0.0.1:443), with the ca from ca.pem:\n\n" +
		"  [ok] the name is covered\n  [warning] expires soon\n\nA car would connect, but see the warnings.\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	r.Findings = append(r.Findings, Finding{Check: CheckChain, Severity: Fail, Message: "incomplete"})
	b.Reset()
	_ = r.WriteText(&b, "")
	if s := b.String(); strings.Contains(s, "with the ca") || !strings.HasSuffix(s, "  [problem] incomplete\n\nA car would not connect: fix the problems above.\n") {
		t.Errorf("got\n%s", s)
	}
	r.Findings = r.Findings[:1]
	b.Reset()
	_ = r.WriteText(&b, "")
	if s := b.String(); !strings.HasSuffix(s, "\nA car would connect.\n") {
		t.Errorf("got\n%s", s)
	}
}
