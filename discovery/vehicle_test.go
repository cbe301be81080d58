package discovery

import "testing"

func TestModelFromVIN(t *testing.T) {
	tests := []struct {
		vin  string
		want string
		ok   bool
	}{
		{"5YJ3E1EA7KF000001", "Model 3 (2019)", true},
		{"5YJSA1E26MF000001", "Model S (2021)", true},
		{"5YJXCAE43LF000001", "Model X (2020)", true},
		{"7SAYGDEE8PA000001", "Model Y (2023)", true},
		{"XP7YGCEK5SB000001", "Model Y (2025)", true},
		{"LRW3E7FS2RC000001", "Model 3 (2024)", true},
		{"7G2CEHED8RA000001", "Cybertruck (2024)", true},
		{"7G2T1AAA0PA000001", "Semi (2023)", true},
		{"5YJRE11B081000001", "Roadster (2008)", true},
		{"5YJRE1A19A1000001", "Roadster (2010)", true},
		{"5yj3e1ea7kf000001", "Model 3 (2019)", true},
		{"5YJ3E1EA7UF000001", "Model 3", true}, // U is no year code
		{"5YJ3E1EA71F000001", "Model 3 (2031)", true},
		{"5YJZE1EA7KF000001", "", false}, // no model Z
		{"5YJ3E1EA7KF00000", "", false},  // 16 characters
		{"5YJ3E1EA7KFO00001", "", false}, // O is not a VIN character
		{"", "", false},
	}
	for _, tt := range tests {
		m, ok := ModelFromVIN(tt.vin)
		if ok != tt.ok || m.String() != tt.want {
			t.Errorf("ModelFromVIN(%q) = %q, %v; want %q, %v", tt.vin, m.String(), ok, tt.want, tt.ok)
		}
	}
}
