package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// Browsers take a self-signed WebTransport certificate through
// serverCertificateHashes only if it is ECDSA P-256 and valid for at most 14
// days in all (W3C WebTransport, "custom certificate requirements"). A dev
// certificate is valid for certValidity and replaced every certRotate, so a
// browser that fetches the hash gets one with days left.
const (
	certValidity = 13 * 24 * time.Hour
	certRotate   = 6 * 24 * time.Hour
	certBackdate = time.Hour // clock skew between the gateway and a browser
)

// selfCert is a rotating self-signed certificate for loopback and dev use.
type selfCert struct {
	hosts []string
	now   func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
	hash string // hex SHA-256 of the leaf's DER
	made time.Time
}

func newSelfCert(hosts []string, now func() time.Time) (*selfCert, error) {
	s := &selfCert{hosts: hosts, now: now}
	if err := s.renew(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *selfCert) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("moq: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sluice moq"},
		NotBefore:    now.Add(-certBackdate),
		NotAfter:     now.Add(certValidity - certBackdate),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range s.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("moq: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	s.hash = hex.EncodeToString(sum[:])
	s.made = now
	return nil
}

// current returns the certificate and its hash, renewing it once it is
// certRotate old.
func (s *selfCert) current() (*tls.Certificate, string, error) {
	s.mu.Lock()
	due := s.now().Sub(s.made) >= certRotate
	s.mu.Unlock()
	if due {
		if err := s.renew(); err != nil {
			return nil, "", err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, s.hash, nil
}

func (s *selfCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _, err := s.current()
	return c, err
}
