// Package loopback tells addresses that only this machine can reach: what
// sluice dev insists on, what an unauthenticated API or a self-signed MoQ
// certificate is allowed on, and where a client may fetch a dev certificate's
// hash.
package loopback

import "net"

// Host reports whether host ("localhost", or an IP address) is a loopback
// address.
func Host(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr reports whether a host:port address is on a loopback host; an address
// that does not parse is not.
func Addr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && Host(host)
}
