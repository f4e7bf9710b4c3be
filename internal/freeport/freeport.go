// Package freeport finds and checks ports free on both UDP and TCP, for programs
// that bind one port number on both (serf gossips on UDP and TCP at one address;
// the MoQ endpoint serves QUIC on UDP and its certificate hash on TCP). A port
// free on TCP alone is often taken on UDP by another process's QUIC or ICE
// socket.
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
		_ = u.Close()
		if Both(addr) {
			return addr
		}
	}
	tb.Fatal(fmt.Errorf("freeport: no port free on both UDP and TCP in 50 tries"))
	return ""
}

// Both reports whether addr's port is free on UDP and on TCP right now.
func Both(addr string) bool {
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	defer u.Close()
	t, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	return t.Close() == nil
}
