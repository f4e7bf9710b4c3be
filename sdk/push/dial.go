package push

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// ErrVersionNegotiation is a server that offers none of the MoQT drafts this
// client speaks (the QUIC handshake found no common ALPN). moqt.CodeOf gives
// VERSION_NEGOTIATION_FAILED.
var ErrVersionNegotiation = &SessionError{Code: moqt.CodeVersionNegotiationFailed, Reason: "version negotiation: no common MoQT draft"}

// tlsNoApplicationProtocol is QUIC's CRYPTO_ERROR for the TLS alert 120
// (no_application_protocol): the server has none of our ALPNs.
const tlsNoApplicationProtocol = 0x100 + 120

// Dial connects to a MoQT server over raw QUIC and completes SETUP. rawURL is
// moqt://host[:port][/path] (port 443 when absent; the path is sent as the
// PATH setup parameter). The returned Session is the caller's to Close.
func Dial(ctx context.Context, rawURL string, opts *Options) (*Session, error) {
	o := opts.withDefaults()
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("push: url %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "moqt":
	case "https":
		return nil, fmt.Errorf("push: url %q: WebTransport (https://) is not supported; use moqt://host:port for raw QUIC", rawURL)
	default:
		return nil, fmt.Errorf("push: url %q: scheme %q (want moqt://)", rawURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("push: url %q has no host", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	tlsConf, err := o.tlsConfig(u.Hostname())
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	conn, err := quic.DialAddr(hctx, addr, tlsConf, &quic.Config{
		HandshakeIdleTimeout: o.HandshakeTimeout,
		MaxIdleTimeout:       30 * time.Second,
		KeepAlivePeriod:      10 * time.Second,
		// The server opens one bidirectional stream per SUBSCRIBE in draft
		// 17+; a broadcast has a catalog and a few tracks.
		MaxIncomingStreams:    256,
		MaxIncomingUniStreams: 16,
	})
	if err != nil {
		return nil, dialError(addr, err)
	}
	v, ok := moqt.VersionFromALPN(conn.ConnectionState().TLS.NegotiatedProtocol)
	if !ok || !offered(o.Versions, v) {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(moqt.CodeVersionNegotiationFailed), "no common version")
		return nil, fmt.Errorf("push: %s chose ALPN %q: %w", addr, conn.ConnectionState().TLS.NegotiatedProtocol, ErrVersionNegotiation)
	}
	s := newSession(conn, v, o)
	if err := s.setup(hctx, setupParams(u, o.Token, v)); err != nil {
		s.abort(moqt.CodeOf(err), err)
		return nil, fmt.Errorf("push: setup with %s (%s): %w", addr, v, s.errOr(err))
	}
	s.start()
	return s, nil
}

func offered(vs []moqt.Version, v moqt.Version) bool {
	for _, o := range vs {
		if o == v {
			return true
		}
	}
	return false
}

func (o *Options) tlsConfig(host string) (*tls.Config, error) {
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS13, RootCAs: o.RootCAs}
	for _, v := range o.Versions {
		if !v.Valid() {
			return nil, fmt.Errorf("push: %s is not a version this client speaks", v)
		}
		conf.NextProtos = append(conf.NextProtos, v.ALPN())
	}
	if o.CertSHA256 == "" {
		return conf, nil
	}
	want, err := parseHash(o.CertSHA256)
	if err != nil {
		return nil, err
	}
	// A pinned hash replaces chain verification, as WebTransport's
	// serverCertificateHashes does for self-signed dev certificates.
	conf.InsecureSkipVerify = true
	conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("push: server sent no certificate")
		}
		got := sha256.Sum256(raw[0])
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return fmt.Errorf("push: server certificate SHA-256 %x does not match the pinned %x", got, want)
		}
		return nil
	}
	return conf, nil
}

func parseHash(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("push: certificate hash %q is not 64 hex digits", s)
	}
	return b, nil
}

// setupParams are the client's setup parameters: PATH and AUTHORITY (raw QUIC
// carries the URL in them), the implementation and the token.
func setupParams(u *url.URL, token string, v moqt.Version) moqt.Params {
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	ps := moqt.Params{
		{Type: moqt.SetupPath, Bytes: []byte(path)},
		{Type: moqt.SetupAuthority, Bytes: []byte(u.Host)},
		{Type: moqt.SetupImplementation, Bytes: []byte(implementation)},
	}
	if token != "" {
		ps = append(ps, moqt.Param{Type: moqt.SetupAuthToken, Bytes: authToken(v, token)})
	}
	return ps
}

// authToken is the drafts' Token structure for a token sent by value: Alias
// Type USE_VALUE (0x3), Token Type 0 (not registered, agreed out of band),
// then the token's bytes.
func authToken(v moqt.Version, token string) []byte {
	b := moqt.AppendVarint(nil, v, 0x3)
	b = moqt.AppendVarint(b, v, 0)
	return append(b, token...)
}

// dialError says in words what a failed QUIC dial means to a user.
func dialError(addr string, err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode == tlsNoApplicationProtocol {
		return fmt.Errorf("push: %s speaks no MoQT draft this client offers: %w", addr, ErrVersionNegotiation)
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return fmt.Errorf("push: dial %s: %w", addr, &SessionError{Code: moqt.ErrorCode(ae.ErrorCode), Reason: ae.ErrorMessage, Remote: ae.Remote})
	}
	var ht *quic.HandshakeTimeoutError
	var it *quic.IdleTimeoutError
	if errors.As(err, &ht) || errors.As(err, &it) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("push: no QUIC answer from %s (nothing listening, or UDP blocked): %w", addr, err)
	}
	return fmt.Errorf("push: dial %s: %w", addr, err)
}
