package certs_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
)

// TestNewBundleVINs makes development PKIs for vehicle names as dev-certs
// does: names the vehicle listener would refuse are refused with the
// rule, names that cannot be file names with that reason, and every name
// accepted gives a certificate the listener takes the same name from.
func TestNewBundleVINs(t *testing.T) {
	const rule = "the vehicle listener accepts only names of 1 to 64 ASCII letters, digits, '-' and '_', starting with a letter or a digit"
	tests := []struct {
		vin     string
		wantErr string // "" = accepted
		wantID  string // the device id the listener sees; "" = vin
	}{
		{vin: "5YJ3E1EA0SF000001"},
		{vin: "5YJ3TESTVIN000001"},
		{vin: "my_car-2"},
		{vin: "car.one", wantID: "car-one"},
		{vin: strings.Repeat("A", 64)},

		{vin: "my car", wantErr: rule},
		{vin: "-car", wantErr: rule},
		{vin: "_car", wantErr: rule},
		{vin: ".car", wantErr: rule}, // "-car" once the dot is a dash
		{vin: strings.Repeat("A", 65), wantErr: rule},
		{vin: "car+1", wantErr: rule},
		{vin: "car#", wantErr: rule},
		{vin: "$SYS", wantErr: rule},
		{vin: "Käfer", wantErr: rule},
		{vin: "car\n1", wantErr: rule},

		{vin: "", wantErr: "not usable as a file name"},
		{vin: "..", wantErr: "not usable as a file name"},
		{vin: "a/b", wantErr: "not usable as a file name"},
		{vin: `a\b`, wantErr: "not usable as a file name"},
		{vin: "a:b", wantErr: "not usable as a file name"},
		{vin: "car-key", wantErr: "not usable as a file name"}, // car-key.pem reads as a key file
	}
	for _, tt := range tests {
		t.Run(tt.vin, func(t *testing.T) {
			b, err := certs.NewBundle(nil, tt.vin)
			if tt.wantErr != "" {
				if !errors.Is(err, certs.ErrBadVIN) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewBundle(%q) error %v, want %v saying %q", tt.vin, err, certs.ErrBadVIN, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewBundle(%q): %v", tt.vin, err)
			}
			leaf, err := x509.ParseCertificate(b.Vehicles[tt.vin].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			id, err := ingest.IdentityFromCertificate(leaf)
			if err != nil {
				t.Fatalf("the listener refuses the certificate issued for %q: %v", tt.vin, err)
			}
			want := tt.wantID
			if want == "" {
				want = tt.vin
			}
			if id.DeviceID != want || !id.IsVehicle() {
				t.Errorf("identity %+v, want vehicle %q", id, want)
			}
		})
	}
}

// TestCheckVINAgreesWithListener tries every byte at the start, in the
// middle and at the end of a name, and names around the length limit:
// checkVIN refuses every name whose certificate the vehicle listener
// would refuse, and refuses names the listener takes only when they
// cannot be file names.
func TestCheckVINAgreesWithListener(t *testing.T) {
	var names []string
	for c := range 256 {
		s := string([]byte{byte(c)})
		names = append(names, s, s+"CAR1", "CAR"+s+"1", "CAR1"+s)
	}
	for _, n := range []int{1, 63, 64, 65, 200} {
		names = append(names, strings.Repeat("7", n), strings.Repeat("a.", n/2))
	}
	for _, name := range names {
		leaf := &x509.Certificate{
			Issuer:  pkix.Name{CommonName: certs.VehicleAuthorityName},
			Subject: pkix.Name{CommonName: name},
		}
		_, listenerErr := ingest.IdentityFromCertificate(leaf)
		if listenerErr != nil && !errors.Is(listenerErr, ingest.ErrInvalidDeviceID) && !errors.Is(listenerErr, ingest.ErrEmptyCommonName) {
			t.Fatalf("%q: the listener refuses for another reason: %v", name, listenerErr)
		}
		err := certs.CheckVIN(name)
		switch {
		case listenerErr != nil && err == nil:
			t.Errorf("checkVIN(%q) accepts a name the listener refuses (%v)", name, listenerErr)
		case listenerErr == nil && err != nil && !strings.Contains(err.Error(), "as a file name"):
			t.Errorf("checkVIN(%q) = %v, but the listener accepts the name", name, err)
		}
	}
}
