package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sluicegw/sluice/internal/config"
)

// newLogger is the process logger: text to stderr, level from SLUICE_LOG
// (debug, info, warn, error; default info).
func newLogger(stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(os.Getenv("SLUICE_LOG")))
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully:
// plain HTTP, and h2c for gRPC clients. With acmeDomains it is serveACME with
// every other gateway.acme setting at its default. ready receives the bound
// address.
func serveHTTP(ctx context.Context, addr string, h http.Handler, acmeDomains []string, acmeEmail string, log *slog.Logger, ready func(net.Addr)) error {
	if len(acmeDomains) > 0 {
		return serveACME(ctx, addr, acmeFromConfig(config.ACME{Domains: acmeDomains, Email: acmeEmail}), h, log, ready)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ready(ln.Addr())
	return serveUntil(ctx, newServer(h, log), func(srv *http.Server) error { return srv.Serve(ln) })
}

// newServer is the gateway's HTTP server for h.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	// HTTP/2 without TLS too, for gRPC clients of proxied routes on a plain
	// listener (h2c with prior knowledge, as grpc-go's insecure credentials).
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// serveUntil runs serve (srv.Serve or ServeTLS on a bound listener) until it
// fails or ctx ends, then shuts srv down; a server closed by ctx is no error.
func serveUntil(ctx context.Context, srv *http.Server, serve func(*http.Server) error) error {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() { // ends with ctx, after the shutdown, or when serve has returned
		defer close(stopped)
		select {
		case <-ctx.Done():
			shutdown(srv)
		case <-done:
		}
	}()
	err := serve(srv)
	close(done)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown stops srv: requests in flight get exitLimit to finish (a gateway
// has drained its sessions by now), then the connections are closed.
func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), exitLimit)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		_ = srv.Close()
	}
}

// acmeSettings is gateway.acme with its defaults resolved (acmeFromConfig).
type acmeSettings struct {
	Domains    []string
	Email      string
	CA         string // the ACME directory URL
	CARoot     string // PEM file trusted for the CA's own HTTPS; "" = the system's roots
	Storage    string // directory certmagic keeps the account, keys and certificates in
	HTTPListen string // the HTTP-01 and redirect listener; "" = none
	// HTTP01 and TLSALPN01 are the challenge types offered to the CA.
	HTTP01, TLSALPN01 bool
	// RenewInterval is how often certmagic checks its certificates for renewal.
	RenewInterval time.Duration
}

// summary is the line the gateway prints about its certificates when ready.
func (a acmeSettings) summary() string {
	var ch []string
	if a.HTTP01 {
		ch = append(ch, "http-01 on "+a.HTTPListen)
	}
	if a.TLSALPN01 {
		ch = append(ch, "tls-alpn-01")
	}
	s := fmt.Sprintf("%s from %s (%s)", strings.Join(a.Domains, ", "), a.CA, strings.Join(ch, ", "))
	if a.HTTPListen != "" {
		s += "; plain HTTP on " + a.HTTPListen + " redirects to HTTPS"
	}
	return s
}

// serveACME serves h over HTTPS on addr until ctx ends, with certificates
// certmagic obtains for a.Domains and renews from a.CA, answering TLS-ALPN-01
// on addr itself. With a.HTTPListen it also serves plain HTTP there: HTTP-01
// challenges, and a redirect to HTTPS for every other request. ready receives
// the HTTPS address once both listeners are bound, before any certificate is
// obtained (the CA's validation must reach them).
func serveACME(ctx context.Context, addr string, a acmeSettings, h http.Handler, log *slog.Logger, ready func(net.Addr)) error {
	log = log.With("component", "acme")
	tlsLn, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer tlsLn.Close()
	var httpLn net.Listener
	if a.HTTPListen != "" {
		if httpLn, err = net.Listen("tcp", a.HTTPListen); err != nil {
			return fmt.Errorf("gateway.acme.httpListen: %w", err)
		}
		defer httpLn.Close()
	}
	magic, issuer, stop, err := newCertManager(a, tlsLn.Addr(), addrOf(httpLn), log)
	if err != nil {
		return err
	}
	defer stop()
	srv := newServer(h, log)
	srv.TLSConfig = magic.TLSConfig()
	srv.TLSConfig.MinVersion = tls.VersionTLS12
	// certmagic's NextProtos is acme-tls/1 alone; it must stay offered
	// beside HTTP's, or TLS-ALPN-01 validation fails.
	srv.TLSConfig.NextProtos = append([]string{"h2", "http/1.1"}, srv.TLSConfig.NextProtos...)
	ready(tlsLn.Addr())

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	var running sync.WaitGroup
	running.Go(func() { errs <- serveUntil(sctx, srv, func(s *http.Server) error { return s.ServeTLS(tlsLn, "", "") }) })
	if httpLn != nil {
		redirect := newServer(issuer.HTTPChallengeHandler(redirectToHTTPS(tlsLn.Addr())), log)
		running.Go(func() { errs <- serveUntil(sctx, redirect, func(s *http.Server) error { return s.Serve(httpLn) }) })
	}
	// In the background: the CA's validation needs the listeners above
	// serving. certmagic retries failures with backoff until sctx ends.
	if err := magic.ManageAsync(sctx, a.Domains); err != nil {
		err = fmt.Errorf("gateway.acme: %w", err)
		cancel()
		running.Wait()
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-errs: // a listener failed: stop the other too
	}
	cancel()
	running.Wait()
	return err
}

// newCertManager makes the certmagic Config and ACME issuer for a, with their
// own certificate cache, so that two gateways in one process share no state;
// stop ends the cache's renewal loop. tlsAddr and httpAddr (nil: none) are the
// bound listeners that answer the challenges.
func newCertManager(a acmeSettings, tlsAddr, httpAddr net.Addr, log *slog.Logger) (*certmagic.Config, *certmagic.ACMEIssuer, func(), error) {
	var roots *x509.CertPool
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("gateway.acme.caRoot: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("gateway.acme.caRoot: %s holds no PEM certificate", a.CARoot)
		}
	}
	if err := os.MkdirAll(a.Storage, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("gateway.acme.storage: %w", err)
	}
	zl := zap.New(slogCore{log: log})
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: a.RenewInterval,
		Logger:             zl,
	})
	magic = certmagic.New(cache, certmagic.Config{Storage: &certmagic.FileStorage{Path: a.Storage}, Logger: zl})
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA: a.CA, Email: a.Email, Agreed: true, TrustedRoots: roots, Logger: zl,
		DisableHTTPChallenge: !a.HTTP01, DisableTLSALPNChallenge: !a.TLSALPN01,
		// certmagic's solvers bind a challenge server of their own on
		// these ports (default 80 and 443, every interface) unless the
		// port is taken. Naming the ports serveACME has bound makes them
		// find it taken, so the challenges are answered by its listeners
		// and nothing else is bound.
		AltHTTPPort: portOf(httpAddr), AltTLSALPNPort: portOf(tlsAddr),
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	return magic, issuer, cache.Stop, nil
}

// redirectToHTTPS answers every request with a permanent redirect to the same
// host and path over HTTPS on tlsAddr's port. 308 keeps the method and body, so
// a WHIP POST sent to http:// is repeated over HTTPS, not turned into a GET.
func redirectToHTTPS(tlsAddr net.Addr) http.Handler {
	port := strconv.Itoa(portOf(tlsAddr))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/\\@?#") {
			http.Error(w, "HTTPS only: give a host name", http.StatusBadRequest)
			return
		}
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		if port != "443" {
			target.Host = net.JoinHostPort(host, port)
		}
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
}

// addrOf is ln's address; nil for no listener.
func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// portOf is a TCP address's port; 0 for nil.
func portOf(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// slogCore is a zapcore.Core that writes to a slog.Logger: certmagic logs
// through zap, sluice through slog, and an operator reads one stream.
type slogCore struct {
	log   *slog.Logger
	attrs []slog.Attr
}

func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.log.Enabled(context.Background(), slogLevel(l))
}

func (c slogCore) With(fs []zapcore.Field) zapcore.Core {
	return slogCore{log: c.log, attrs: append(slices.Clip(c.attrs), fieldAttrs(fs)...)}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(c.attrs...)
	r.AddAttrs(fieldAttrs(fs)...)
	return c.log.Handler().Handle(context.Background(), r)
}

func (c slogCore) Sync() error { return nil }

// fieldAttrs turns zap fields into slog attributes, in the fields' order.
func fieldAttrs(fs []zapcore.Field) []slog.Attr {
	out := make([]slog.Attr, 0, len(fs))
	for _, f := range fs {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		for k, v := range enc.Fields {
			out = append(out, slog.Any(k, v))
		}
	}
	return out
}

// slogLevel maps zap's levels onto slog's; DPanic and above are errors.
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

var _ zapcore.Core = slogCore{}
