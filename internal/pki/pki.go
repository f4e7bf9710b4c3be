// Package pki is sluice's cluster certificate authority: it makes the CA, issues
// member certificates, and builds the mutual-TLS configurations of every internal
// link (gateway ↔ agent API, gateway ↔ node media).
//
// Every internal certificate carries the DNS name ServerName, so a client verifies
// "signed by the cluster CA" without knowing which host it dialled; the member's
// own name and addresses are added as further SANs for operators' tools. Keys are
// ECDSA P-256: small, fast handshakes, and supported by every TLS stack sluice meets.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ServerName is the DNS SAN on every member certificate and the name clients verify.
const ServerName = "sluice.internal"

// File names inside a CA directory.
const (
	CACertFile    = "ca.crt"
	CAKeyFile     = "ca.key"
	GossipKeyFile = "gossip.key"
)

// Validity periods. Member certificates are short-lived relative to the CA so that a
// leaked member key stops working without a revocation list.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	MemberValidity = 365 * 24 * time.Hour
)

// CA is a cluster certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// Identity is one member's certificate and the CA it trusts.
type Identity struct {
	Name    string
	Cert    tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte
	Pool    *x509.CertPool
}

// NewCA makes a fresh CA in memory.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sluice"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// InitDir makes a CA and a gossip encryption key in dir (created 0700). It refuses
// to overwrite an existing CA, so a cluster's trust root is never replaced by accident.
func InitDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("pki: %s already holds a CA; remove it first to make a new one", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ca, err := NewCA("sluice cluster CA")
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("pki: encode CA key: %w", err)
	}
	gossip := make([]byte, 32)
	if _, err := rand.Read(gossip); err != nil {
		return fmt.Errorf("pki: gossip key: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CACertFile, ca.CertPEM, 0o644},
		{CAKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{GossipKeyFile, gossip, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

// LoadCA reads the CA that InitDir wrote.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA in %s: %w", dir, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: CA key in %s cannot sign", dir)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM}, nil
}

// LoadGossipKey reads the serf encryption key that InitDir wrote.
func LoadGossipKey(dir string) ([]byte, error) {
	key, err := os.ReadFile(filepath.Join(dir, GossipKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("pki: gossip key %s is %d bytes; want 16, 24 or 32", GossipKeyFile, n)
	}
	return key, nil
}

// Issue makes a member certificate valid for client and server use. hosts are extra
// DNS names or IP addresses to put in the certificate.
func (ca *CA) Issue(name string, hosts []string) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"sluice"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(MemberValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %q: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return IdentityFromPEM(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		ca.CertPEM)
}

// WriteIdentity stores id as NAME.crt and NAME.key (0600) in dir.
func WriteIdentity(dir string, id *Identity) error {
	if err := os.WriteFile(filepath.Join(dir, id.Name+".crt"), id.CertPEM, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, id.Name+".key"), id.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// LoadIdentity reads NAME.crt, NAME.key and ca.crt from dir.
func LoadIdentity(dir, name string) (*Identity, error) {
	read := func(f string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("pki: %w (make it with `sluice ca issue --dir %s --name %s`)", err, dir, name)
		}
		return b, nil
	}
	certPEM, err := read(name + ".crt")
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(name + ".key")
	if err != nil {
		return nil, err
	}
	caPEM, err := read(CACertFile)
	if err != nil {
		return nil, err
	}
	return IdentityFromPEM(certPEM, keyPEM, caPEM)
}

// IdentityFromPEM builds an Identity and checks that the certificate chains to the CA.
func IdentityFromPEM(certPEM, keyPEM, caPEM []byte) (*Identity, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: key pair: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: no CA certificate in CA PEM")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: certificate %q is not from this cluster's CA: %w", leaf.Subject.CommonName, err)
	}
	pair.Leaf = leaf
	return &Identity{Name: leaf.Subject.CommonName, Cert: pair, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: caPEM, Pool: pool}, nil
}

// ServerTLS is the configuration of an internal listener: it presents the member
// certificate and demands a client certificate signed by the cluster CA.
func (id *Identity) ServerTLS(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.Pool,
		NextProtos:   alpn,
	}
}

// ClientTLS is the configuration of an internal dialer: it presents the member
// certificate and accepts only a server certificate from the cluster CA.
func (id *Identity) ClientTLS(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.Pool,
		ServerName:   ServerName,
		NextProtos:   alpn,
	}
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return n, nil
}
