package hostport

import "testing"

func TestCheck(t *testing.T) {
	good := []string{":443", "127.0.0.1:8080", "[::1]:1883", "[fe80::1%eth0]:1883", "0.0.0.0:0", "localhost:65535", "fleet.example.com.:443", "a-b.c:1"}
	for _, addr := range good {
		if err := Check(addr); err != nil {
			t.Errorf("Check(%q) = %v, want nil", addr, err)
		}
	}
	bad := []string{"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1", ":", "127.0.0.1:-1", "127.0.0.1:http", "[127.0.0.1:80",
		"[not-v6]:80", "bad_host:80", "-a.b:80", "a..b:80", "ex ample:80", "999.1.1.1.1/8:80", ""}
	for _, addr := range bad {
		if err := Check(addr); err == nil {
			t.Errorf("Check(%q) = nil, want an error", addr)
		}
	}
}
