package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake over a pipe and returns the client's error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		return err
	}
	defer c.Close()
	// TLS 1.3 reports a refused client certificate on the first read.
	_, _ = c.Write([]byte("x"))
	one := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = c.Read(one)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	return err
}

func TestMembersOfOneCAAuthenticateEachOther(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ca.Issue("agent-1", []string{"127.0.0.1"})
	g, _ := ca.Issue("gw-1", nil)
	if err := handshake(t, a.ServerTLS(), g.ClientTLS()); err != nil {
		t.Fatalf("same-CA handshake failed: %v", err)
	}
}

func TestAMemberOfAnotherCAIsRefusedBothWays(t *testing.T) {
	ca1, _ := NewCA("one")
	ca2, _ := NewCA("two")
	a, _ := ca1.Issue("agent-1", nil)
	stranger, _ := ca2.Issue("stranger", nil)
	if err := handshake(t, a.ServerTLS(), stranger.ClientTLS()); err == nil {
		t.Fatal("a client from another CA was accepted")
	}
	if err := handshake(t, stranger.ServerTLS(), a.ClientTLS()); err == nil {
		t.Fatal("a server from another CA was trusted")
	}
	// Without any client certificate the server refuses too.
	noCert := a.ClientTLS()
	noCert.Certificates = nil
	if err := handshake(t, a.ServerTLS(), noCert); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestInitDirRoundTripsAndRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := InitDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := InitDir(dir); err == nil {
		t.Fatal("InitDir overwrote an existing CA")
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue("agent-7", []string{"10.0.0.7", "agent7.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	back, err := LoadIdentity(dir, "agent-7")
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != "agent-7" {
		t.Fatalf("name = %q", back.Name)
	}
	if k, err := LoadGossipKey(dir); err != nil || len(k) != 32 {
		t.Fatalf("gossip key: %v (%d bytes)", err, len(k))
	}
	other, _ := NewCA("other")
	if _, err := IdentityFromPEM(id.CertPEM, id.KeyPEM, other.CertPEM); err == nil {
		t.Fatal("an identity was accepted against the wrong CA")
	}
}

func TestCertificatesCarryTheirRoleNamesAndValidity(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if c := ca.Cert; !c.IsCA || !c.MaxPathLenZero || c.Subject.CommonName != "test CA" || c.CheckSignatureFrom(c) != nil {
		t.Fatalf("CA certificate: IsCA %v, MaxPathLenZero %v, name %q, self-signed %v", c.IsCA, c.MaxPathLenZero, c.Subject.CommonName, c.CheckSignatureFrom(c))
	}
	if d := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); d != CAValidity+time.Hour {
		t.Errorf("CA valid for %v, want %v and the hour before issue", d, CAValidity)
	}
	id, err := ca.Issue("agent-7", []string{"10.0.0.7", "agent7.example", ""})
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Cert.Leaf
	if leaf.IsCA || leaf.CheckSignatureFrom(ca.Cert) != nil {
		t.Fatalf("member certificate: IsCA %v, signed by the CA: %v", leaf.IsCA, leaf.CheckSignatureFrom(ca.Cert))
	}
	if got := strings.Join(leaf.DNSNames, ","); got != ServerName+",agent7.example" {
		t.Errorf("DNS names %q", got)
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("IP addresses %v", leaf.IPAddresses)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != MemberValidity+time.Hour {
		t.Errorf("member valid for %v, want %v and the hour before issue", d, MemberValidity)
	}
	if leaf.SerialNumber.Cmp(ca.Cert.SerialNumber) == 0 || leaf.SerialNumber.Sign() <= 0 {
		t.Errorf("serials: member %v, CA %v", leaf.SerialNumber, ca.Cert.SerialNumber)
	}
}

func TestLoadIdentitySaysHowToMakeAMissingOne(t *testing.T) {
	dir := t.TempDir()
	if err := InitDir(dir); err != nil {
		t.Fatal(err)
	}
	_, err := LoadIdentity(dir, "gw-9")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "sluice ca issue --dir "+dir+" --name gw-9") {
		t.Fatalf("err = %v", err)
	}
}
