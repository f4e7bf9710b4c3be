package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/sluicegw/sluice/internal/rawudp"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// Endpoint is the MoQ listener: one UDP port serving raw QUIC (an ALPN per MoQT
// draft) and WebTransport over HTTP/3 (ALPN h3, the draft chosen from the
// client's WT-Available-Protocols), and, for a self-signed certificate, the same
// port number on TCP serving /certificate.sha256 so browsers can pin it.
type Endpoint struct {
	log       *slog.Logger
	protocols []string // MoQT ALPNs / WebTransport protocols, most preferred first
	handle    func(conn Conn, protocol string)

	udp   net.PacketConn
	tr    *quic.Transport
	ln    *quic.Listener
	wt    *webtransport.Server
	self  *selfCert // nil with a configured certificate
	hashH *http.Server

	wg     sync.WaitGroup
	closed sync.Once
}

// Config is what an Endpoint is made from.
type Config struct {
	// Listen is the UDP address (and the self-signed hash's TCP address).
	Listen string
	// TLS is the certificate; nil: a rotating self-signed one for Hosts.
	TLS   *tls.Config
	Hosts []string
	// Protocols are the MoQT ALPNs / WebTransport protocols, most preferred first.
	Protocols []string
	// Handle serves one session on its own goroutine (the Endpoint's for raw
	// QUIC, http3's for WebTransport) and returns when it ends.
	Handle func(conn Conn, protocol string)
	Log    *slog.Logger
	// Now is the clock of certificate rotation. Default time.Now.
	Now func() time.Time
}

// Listen binds the endpoint's UDP port (and, self-signed, the TCP port of
// /certificate.sha256). Nothing is accepted until Serve.
func Listen(cfg Config) (*Endpoint, error) {
	e := &Endpoint{log: cfg.Log, protocols: cfg.Protocols, handle: cfg.Handle}
	tlsConf := cfg.TLS
	if tlsConf == nil {
		if cfg.Now == nil {
			cfg.Now = time.Now
		}
		self, err := newSelfCert(cfg.Hosts, cfg.Now)
		if err != nil {
			return nil, err
		}
		e.self = self
		tlsConf = &tls.Config{GetCertificate: self.getCertificate}
	}
	tlsConf = tlsConf.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	tlsConf.NextProtos = append([]string{http3.NextProtoH3}, cfg.Protocols...)
	udp, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("moq: listen %s: %w", cfg.Listen, err)
	}
	e.udp = udp
	e.tr = &quic.Transport{Conn: quicConn(udp)}
	e.ln, err = e.tr.Listen(tlsConf, &quic.Config{
		EnableDatagrams:                  true, // WebTransport requires both
		EnableStreamResetPartialDelivery: true,
		MaxIdleTimeout:                   30 * time.Second,
		KeepAlivePeriod:                  10 * time.Second,
		MaxIncomingStreams:               1000,
		MaxIncomingUniStreams:            1000,
	})
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("moq: QUIC listener: %w", err)
	}
	mux := http.NewServeMux()
	e.wt = &webtransport.Server{
		H3:                   &http3.Server{Handler: mux},
		ApplicationProtocols: cfg.Protocols,
		// Any page may publish: admission and auth decide, as for WHIP.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	webtransport.ConfigureHTTP3Server(e.wt.H3)
	mux.HandleFunc("/", e.upgrade)
	if e.self != nil {
		if err := e.serveHash(udp.LocalAddr().String()); err != nil {
			_ = e.ln.Close()
			_ = udp.Close()
			return nil, err
		}
	}
	return e, nil
}

// serveHash serves the certificate's hash on TCP at the UDP port's address, where
// moq-dev's browser client looks for it: GET /certificate.sha256, 64 hex digits.
func (e *Endpoint) serveHash(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("moq: certificate hash listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /certificate.sha256", func(w http.ResponseWriter, _ *http.Request) {
		_, hash, err := e.self.current()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(hash))
	})
	e.hashH = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.hashH.Serve(ln)
	}()
	return nil
}

// quicConn is how quic-go reads and writes the endpoint's socket. Bound to one
// address, with raw system calls (package rawudp), one packet a call: at a
// push's pace every packet arrives alone, and each of quic-go's own reads and
// acknowledgements would wake the runtime's sysmon thread for a millisecond
// of polling (0.76–0.84× the CPU per delivered packet of a MoQ push with it,
// internal/rawudp/RATIONALE.md). A wildcard bind keeps quic-go's own socket
// path, which reads each packet's destination address to answer from the
// address it came to.
func quicConn(udp net.PacketConn) net.PacketConn {
	c, ok := udp.(*net.UDPConn)
	if !ok || c.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		return udp
	}
	r, err := rawudp.New(c)
	if err != nil {
		return udp
	}
	return r.AsPacketConn()
}

// Serve accepts connections until ctx ends or the endpoint closes.
func (e *Endpoint) Serve(ctx context.Context) {
	for {
		conn, err := e.ln.Accept(ctx)
		if err != nil {
			return
		}
		proto := conn.ConnectionState().TLS.NegotiatedProtocol
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if proto == http3.NextProtoH3 {
				if err := e.wt.ServeQUICConn(conn); err != nil && !errors.Is(err, http.ErrServerClosed) {
					e.log.Debug("moq: HTTP/3 connection ended", "client", conn.RemoteAddr(), "err", err)
				}
				return
			}
			e.handle(rawConn{conn}, proto)
		}()
	}
}

// upgrade turns an extended CONNECT into a WebTransport session and serves it
// with the MoQT draft both sides prefer.
func (e *Endpoint) upgrade(w http.ResponseWriter, r *http.Request) {
	sess, err := e.wt.Upgrade(w, r)
	if err != nil {
		e.log.Debug("moq: WebTransport upgrade refused", "client", r.RemoteAddr, "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	proto := sess.SessionState().ApplicationProtocol
	if !slices.Contains(e.protocols, proto) {
		// The client offered no draft we speak (or none at all).
		_ = sess.CloseWithError(webtransport.SessionErrorCode(moqt.CodeVersionNegotiationFailed), "no common MoQT version")
		return
	}
	e.handle(wtConn{s: sess, query: r.URL.Query()}, proto)
}

// CertificateHash is the hex SHA-256 of the self-signed certificate, or "".
func (e *Endpoint) CertificateHash() string {
	if e.self == nil {
		return ""
	}
	_, h, _ := e.self.current()
	return h
}

// Addr is the bound UDP address.
func (e *Endpoint) Addr() net.Addr { return e.udp.LocalAddr() }

// Close stops accepting, ends every connection and waits for the raw QUIC
// handlers. It is safe to call twice.
func (e *Endpoint) Close() {
	e.closed.Do(func() {
		_ = e.wt.Close()
		_ = e.ln.Close()
		_ = e.tr.Close() // closes the accepted connections too
		if e.hashH != nil {
			_ = e.hashH.Close()
		}
		_ = e.udp.Close()
		e.wg.Wait()
	})
}
