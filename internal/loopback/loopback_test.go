package loopback

import "testing"

func TestOnlyLoopbackAddressesAreLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:80": true, "127.9.9.9:0": true, "[::1]:4443": true, "localhost:8080": true,
		"0.0.0.0:80": false, "[::]:80": false, "10.0.0.1:80": false, "example.com:80": false,
		"127.0.0.1": false, // no port: not an address
	} {
		if got := Addr(addr); got != want {
			t.Errorf("Addr(%q) = %v, want %v", addr, got, want)
		}
	}
}
