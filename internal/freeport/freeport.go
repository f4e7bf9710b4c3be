// Package freeport finds a loopback port that is free on both UDP and TCP, for
// tests of programs that bind one port number on both (serf gossips on UDP and
// TCP at one address). A port free on TCP alone is often taken on UDP by a
// parallel test's QUIC or ICE socket.
package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Loopback returns "127.0.0.1:PORT" with PORT free on UDP and TCP when it
// returns. Another process may still take it before the caller binds it; two
// protocols make that rarer, not impossible.
func Loopback(tb testing.TB) string {
	tb.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := u.LocalAddr().String()
		t, err := net.Listen("tcp", addr)
		_ = u.Close()
		if err != nil {
			continue // taken on TCP: try another
		}
		_ = t.Close()
		return addr
	}
	tb.Fatal(fmt.Errorf("freeport: no port free on both UDP and TCP in 50 tries"))
	return ""
}
