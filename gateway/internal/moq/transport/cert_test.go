package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"sync"
	"testing"
	"time"
)

// The self-signed certificate is one a browser pins by hash: ECDSA P-256,
// valid at most 14 days in all, for the loopback names; it is replaced (with
// a new hash) once it is certRotate old, long before it expires.
func TestTheSelfSignedCertificateIsPinnableAndRotatesBeforeItExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sc, err := newSelfCert([]string{"127.0.0.1", "::1", "localhost"}, clock)
	if err != nil {
		t.Fatal(err)
	}
	c1, h1, err := sc.current()
	if err != nil {
		t.Fatal(err)
	}
	leaf := c1.Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 14*24*time.Hour {
		t.Fatalf("valid for %s, browsers pin at most 14 days", d)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if len(h1) != 64 {
		t.Fatalf("hash %q is not 64 hex digits", h1)
	}
	mu.Lock()
	now = now.Add(certRotate - time.Minute)
	mu.Unlock()
	if _, h, _ := sc.current(); h != h1 {
		t.Fatal("rotated early")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	c2, h2, _ := sc.current()
	if h2 == h1 {
		t.Fatal("not rotated after certRotate")
	}
	if left := c2.Leaf.NotAfter.Sub(clock()); left < 7*24*time.Hour {
		t.Fatalf("a fresh certificate has only %s left", left)
	}
	if !c1.Leaf.NotAfter.After(clock()) {
		t.Fatal("the previous certificate expired before it was replaced")
	}
}
