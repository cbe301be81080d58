package ingest_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
)

const identityVIN = "5YJ3TESTVIN000001"

// Tesla device-type OIDs as they appear in extended key usage.
var (
	oidEngVehicle    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 4, 1}
	oidProdVehicle   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 5, 1}
	oidProdEnergy    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 5, 2}
	oidEngBoard      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 4, 11}
	oidProdWifiEAP   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 5, 1, 1}
	oidProdUnknown   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 5, 99}
	oidOtherEnv      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2, 3, 1}
	oidOtherVendor   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2, 5, 1}
	oidShortTeslaArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 49279, 2}
)

// identityCert issues a leaf from a fresh authority named issuer.
func identityCert(t *testing.T, issuer, subject string, ou []string, ekus ...asn1.ObjectIdentifier) *x509.Certificate {
	t.Helper()
	ca, err := certs.NewAuthority(issuer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(&x509.Certificate{
		Subject:            pkix.Name{CommonName: subject, OrganizationalUnit: ou},
		KeyUsage:           x509.KeyUsageDigitalSignature,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		UnknownExtKeyUsage: ekus,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf
}

func TestIdentityFromCertificate(t *testing.T) {
	tests := []struct {
		name     string
		issuer   string
		subject  string
		ou       []string
		ekus     []asn1.ObjectIdentifier
		wantType string
		wantID   string
		wantErr  error
	}{
		// Issuers that make a vehicle by name alone.
		{name: "TeslaMotors", issuer: "TeslaMotors", subject: identityVIN, wantType: "vehicle_device", wantID: identityVIN},
		{name: "Tesla Issuing CA", issuer: "Tesla Issuing CA", subject: identityVIN, wantType: "vehicle_device", wantID: identityVIN},
		{name: "Tesla Motors Products CA", issuer: "Tesla Motors Products CA", subject: identityVIN, wantType: "vehicle_device", wantID: identityVIN},
		{name: "products CA ignores EKU", issuer: "Tesla Motors Products CA", subject: identityVIN, ekus: []asn1.ObjectIdentifier{oidProdEnergy},
			wantType: "vehicle_device", wantID: identityVIN},
		{name: "products CA board", issuer: "Tesla Motors Products CA", subject: "board.42", ou: []string{"Tesla Motors SN"},
			wantType: "vehicle_board_device", wantID: "board-42"},
		{name: "products CA other unit", issuer: "Tesla Motors Products CA", subject: identityVIN, ou: []string{"Fleet", "Tesla Motors SN"},
			wantType: "vehicle_device", wantID: identityVIN},

		// Product issuing CAs: the type comes from extended key usage.
		{name: "product CA prod vehicle", issuer: "Tesla Motors Product Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidProdVehicle}, wantType: "vehicle_device", wantID: identityVIN},
		{name: "product CA eng vehicle", issuer: "Tesla Motors GF Austin Product Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidEngVehicle}, wantType: "vehicle_device", wantID: identityVIN},
		{name: "access CA vehicle after foreign OIDs", issuer: "Tesla GF Berlin Product Access Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidOtherVendor, oidShortTeslaArc, oidOtherEnv, oidProdUnknown, oidProdVehicle}, wantType: "vehicle_device", wantID: identityVIN},
		{name: "first known OID wins", issuer: "Tesla China Product Access Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidEngBoard, oidProdVehicle}, wantType: "vehicle_board_device", wantID: identityVIN},
		{name: "energy device", issuer: "Tesla Energy GF0 Product Issuing CA", subject: "1232100-00-E--TG1234",
			ekus: []asn1.ObjectIdentifier{oidProdEnergy}, wantType: "energy_device", wantID: "1232100-00-E--TG1234"},
		{name: "wall connector by unit", issuer: "Tesla Energy Product Issuing CA", subject: "wc.1",
			ou: []string{"Gen3 Wall Connector"}, ekus: []asn1.ObjectIdentifier{oidProdEnergy}, wantType: "wall_connector_device", wantID: "wc-1"},
		{name: "wifi EAP excluded", issuer: "Tesla Motors GF3 Product Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidProdWifiEAP, oidProdVehicle}, wantErr: ingest.ErrExcludedCertificate},
		{name: "no device OID", issuer: "Tesla Motors Product RSA Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidOtherVendor, oidProdUnknown}, wantErr: ingest.ErrUnknownDeviceType},
		{name: "no extended key usage", issuer: "Tesla Product Access Issuing CA", subject: identityVIN,
			wantErr: ingest.ErrUnknownDeviceType},

		// Everything else is refused.
		{name: "unknown issuer", issuer: "Unknown Issuer CA", subject: identityVIN, wantErr: ingest.ErrUnknownIssuer},
		{name: "development server CA", issuer: certs.ServerAuthorityName, subject: identityVIN, wantErr: ingest.ErrUnknownIssuer},
		{name: "issuer case differs", issuer: "tesla issuing ca", subject: identityVIN, wantErr: ingest.ErrUnknownIssuer},
		{name: "unknown issuer with vehicle OID", issuer: "Acme Product Issuing CA", subject: identityVIN,
			ekus: []asn1.ObjectIdentifier{oidProdVehicle}, wantErr: ingest.ErrUnknownIssuer},
		{name: "empty common name", issuer: "Tesla Issuing CA", subject: "", wantErr: ingest.ErrEmptyCommonName},

		// Dots become dashes.
		{name: "common name with dots", issuer: "Tesla Issuing CA", subject: "device.abc.123", wantType: "vehicle_device", wantID: "device-abc-123"},

		// Common names that cannot be a level of an MQTT topic.
		{name: "MQTT wildcards", issuer: "Tesla Issuing CA", subject: "+/#", wantErr: ingest.ErrInvalidDeviceID},
		{name: "single-level wildcard", issuer: "TeslaMotors", subject: "5YJ3E1EA0SF00000+", wantErr: ingest.ErrInvalidDeviceID},
		{name: "topic separator", issuer: "Tesla Motors Products CA", subject: "tesla/5YJ3E1EA0SF000001", wantErr: ingest.ErrInvalidDeviceID},
		{name: "NUL", issuer: "Tesla Issuing CA", subject: identityVIN + "\x00", wantErr: ingest.ErrInvalidDeviceID},
		{name: "board with a wildcard", issuer: "Tesla Motors Products CA", subject: "board.#", ou: []string{"Tesla Motors SN"}, wantErr: ingest.ErrInvalidDeviceID},
		{name: "energy device with a space", issuer: "Tesla Energy Product Issuing CA", subject: "TG 1234",
			ekus: []asn1.ObjectIdentifier{oidProdEnergy}, wantErr: ingest.ErrInvalidDeviceID},
		{name: "only a dot", issuer: "Tesla Issuing CA", subject: ".", wantErr: ingest.ErrInvalidDeviceID},
		{name: "unknown issuer before the name", issuer: "Unknown Issuer CA", subject: "+", wantErr: ingest.ErrUnknownIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := identityCert(t, tt.issuer, tt.subject, tt.ou, tt.ekus...)
			got, err := ingest.IdentityFromCertificate(leaf)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				msg := err.Error()
				if !strings.Contains(msg, strconv.Quote(tt.issuer)) || (tt.subject != "" && !strings.Contains(msg, strconv.Quote(tt.subject))) {
					t.Errorf("error %q does not name issuer %q and subject %q", msg, tt.issuer, tt.subject)
				}
				if got != (ingest.Identity{}) {
					t.Errorf("identity %+v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := ingest.Identity{DeviceID: tt.wantID, DeviceType: tt.wantType, SenderID: tt.wantType + "." + tt.wantID}
			if got != want {
				t.Errorf("identity %+v, want %+v", got, want)
			}
			if got.IsVehicle() != (tt.wantType == ingest.DeviceTypeVehicle) {
				t.Errorf("IsVehicle() = %v for type %q", got.IsVehicle(), got.DeviceType)
			}
		})
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"5YJ3E1EA0SF000001", true},
		{"5YJ3TESTVIN000001", true}, // the test fixtures' name, not a VIN
		{"LRW3E7FS2RC000001", true},
		{"1232100-00-E--TG1234", true},
		{"board-42", true},
		{"device_abc", true},
		{"a", true},
		{strings.Repeat("A", 64), true},

		{"", false},
		{strings.Repeat("A", 65), false},
		{"+", false},
		{"#", false},
		{"5YJ3E1EA0SF00000+", false},
		{"5YJ3E1EA0SF00000#", false},
		{"tesla/5YJ3E1EA0SF000001", false},
		{"5YJ3E1EA0SF000001/", false},
		{"$SYS", false},
		{"-5YJ3E1EA0SF000001", false},
		{"_x", false},
		{"5YJ3E1EA0SF000001\x00", false},
		{"\x005YJ3E1EA0SF000001", false},
		{"5YJ3E1EA0SF\n000001", false},
		{"5YJ3E1EA0SF 000001", false},
		{"5YJ3E1EA0SF.000001", false}, // IdentityFromCertificate turns dots into dashes first
		{"5YJ3E1EA0SFÄ00001", false},
		{"5YJ3E1EA0SF\xff00001", false},
		{"5YJ3E1EA0SF\\000001", false},
		{"5YJ3E1EA0SF\"000001", false},
	}
	for _, tt := range tests {
		if got := ingest.ValidDeviceID(tt.id); got != tt.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// A common name that is not valid UTF-8 cannot be issued with this
// package's authorities; IdentityFromCertificate must refuse it all the
// same.
func TestIdentityFromCertificateInvalidUTF8(t *testing.T) {
	leaf := &x509.Certificate{
		Issuer:  pkix.Name{CommonName: "Tesla Issuing CA"},
		Subject: pkix.Name{CommonName: "5YJ3E1EA0SF\xff00001"},
	}
	if id, err := ingest.IdentityFromCertificate(leaf); !errors.Is(err, ingest.ErrInvalidDeviceID) {
		t.Fatalf("identity %+v, error %v, want %v", id, err, ingest.ErrInvalidDeviceID)
	}
}

func TestIdentityFromCertificateNil(t *testing.T) {
	if _, err := ingest.IdentityFromCertificate(nil); !errors.Is(err, ingest.ErrNoCertificate) {
		t.Fatalf("error %v, want %v", err, ingest.ErrNoCertificate)
	}
}

// The development vehicle authority must produce certificates the server
// accepts as cars: that is what the simulator and dev-certs rely on.
func TestIdentityFromDevelopmentVehicle(t *testing.T) {
	ca, err := certs.NewVehicleAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueVehicle(identityVIN)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ingest.IdentityFromCertificate(cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ingest.Identity{DeviceID: identityVIN, DeviceType: "vehicle_device", SenderID: "vehicle_device." + identityVIN}); got != want {
		t.Fatalf("identity %+v, want %+v", got, want)
	}
}

func BenchmarkIdentityFromCertificate(b *testing.B) {
	for _, bc := range []struct {
		name   string
		issuer string
		ekus   []asn1.ObjectIdentifier
	}{
		{name: "by issuer", issuer: "Tesla Motors Products CA"},
		{name: "by EKU", issuer: "Tesla Motors GF Berlin Product Issuing CA", ekus: []asn1.ObjectIdentifier{oidProdVehicle}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ca, err := certs.NewAuthority(bc.issuer)
			if err != nil {
				b.Fatal(err)
			}
			cert, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: identityVIN}, UnknownExtKeyUsage: bc.ekus})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ingest.IdentityFromCertificate(cert.Leaf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
