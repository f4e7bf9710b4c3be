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
	// GossipKeyringFile is where a member keeps the gossip keys it has after
	// a rotation (`sluice ca gossip-key rotate`); it wins over GossipKeyFile.
	GossipKeyringFile = "gossip.keyring"
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
	der, key, err := certify(&x509.Certificate{
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, name, CAValidity, nil, nil)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM(der)}, nil
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
	key, err := keyPEM(ca.Key)
	if err != nil {
		return err
	}
	gossip := make([]byte, 32)
	if _, err := rand.Read(gossip); err != nil {
		return fmt.Errorf("pki: gossip key: %w", err)
	}
	return writeFiles(dir,
		file{CACertFile, ca.CertPEM, 0o644},
		file{CAKeyFile, key, 0o600},
		file{GossipKeyFile, gossip, 0o600})
}

// LoadCA reads the CA that InitDir wrote.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := readFile(dir, CACertFile)
	if err != nil {
		return nil, err
	}
	key, err := readFile(dir, CAKeyFile)
	if err != nil {
		return nil, err
	}
	pair, err := keyPair(certPEM, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA in %s: %w", dir, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: CA key in %s cannot sign", dir)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: pair.Leaf, Key: signer, CertPEM: certPEM}, nil
}

// LoadGossipKey reads the serf encryption key that InitDir wrote.
func LoadGossipKey(dir string) ([]byte, error) {
	key, err := readFile(dir, GossipKeyFile)
	if err != nil {
		return nil, err
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("pki: gossip key %s is %d bytes; want 16, 24 or 32", GossipKeyFile, n)
	}
	return key, nil
}

// Issue makes a member certificate valid for client and server use. hosts are extra
// DNS names or IP addresses to put in the certificate.
func (ca *CA) Issue(name string, hosts []string) (*Identity, error) {
	tmpl := &x509.Certificate{
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{ServerName},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, key, err := certify(tmpl, name, MemberValidity, ca.Cert, ca.Key)
	if err != nil {
		return nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return IdentityFromPEM(certPEM(der), kp, ca.CertPEM)
}

// WriteIdentity stores id as NAME.crt and NAME.key (0600) in dir.
func WriteIdentity(dir string, id *Identity) error {
	return writeFiles(dir,
		file{id.Name + ".crt", id.CertPEM, 0o644},
		file{id.Name + ".key", id.KeyPEM, 0o600})
}

// LoadIdentity reads NAME.crt, NAME.key and ca.crt from dir.
func LoadIdentity(dir, name string) (*Identity, error) {
	var pems [3][]byte
	for i, f := range []string{name + ".crt", name + ".key", CACertFile} {
		b, err := readFile(dir, f)
		if err != nil {
			return nil, fmt.Errorf("%w (make it with `sluice ca issue --dir %s --name %s`)", err, dir, name)
		}
		pems[i] = b
	}
	return IdentityFromPEM(pems[0], pems[1], pems[2])
}

// IdentityFromPEM builds an Identity and checks that the certificate chains to the CA.
func IdentityFromPEM(certPEM, keyPEM, caPEM []byte) (*Identity, error) {
	pair, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: key pair: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: no CA certificate in CA PEM")
	}
	leaf := pair.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: certificate %q is not from this cluster's CA: %w", leaf.Subject.CommonName, err)
	}
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

// serialLimit bounds certificate serial numbers: 127 random bits, positive and
// within the 20 octets RFC 5280 allows.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

// certify makes a fresh P-256 key and the DER certificate of tmpl for it, named
// name, valid from an hour ago (for clocks a little behind) for validity, and
// signed by parent and its key, or self-signed when parent is nil. It fills in
// tmpl's serial number, subject and validity.
func certify(tmpl *x509.Certificate, name string, validity time.Duration, parent *x509.Certificate, parentKey crypto.Signer) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate the key of %q: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: serial: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.Subject = pkix.Name{CommonName: name, Organization: []string{"sluice"}}
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign %q: %w", name, err)
	}
	return der, key, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyPEM encodes a private key as PKCS #8 in PEM, the form tls.X509KeyPair reads.
func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// keyPair parses a certificate and its key, with the parsed leaf.
func keyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && pair.Leaf == nil { // GODEBUG=x509keypairleaf=0 leaves it out
		pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	}
	return pair, err
}

type file struct {
	name string
	data []byte
	mode os.FileMode
}

func writeFiles(dir string, files ...file) error {
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

func readFile(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return b, nil
}
