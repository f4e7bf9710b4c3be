package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/certmagic"
)

// newLogger is the process logger: text to stderr, level from SLUICE_LOG
// (debug, info, warn, error; default info).
func newLogger(stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(os.Getenv("SLUICE_LOG")))
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully. With
// acmeDomains it serves HTTPS with certificates certmagic obtains and renews.
// ready receives the bound address.
func serveHTTP(ctx context.Context, addr string, h http.Handler, acmeDomains []string, acmeEmail string, log *slog.Logger, ready func(net.Addr)) error {
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
	var ln net.Listener
	var err error
	if len(acmeDomains) > 0 {
		certmagic.DefaultACME.Agreed = true
		certmagic.DefaultACME.Email = acmeEmail
		tlsConf, terr := certmagic.TLS(acmeDomains)
		if terr != nil {
			return fmt.Errorf("acme: %w", terr)
		}
		tlsConf.NextProtos = append([]string{"h2", "http/1.1"}, tlsConf.NextProtos...)
		srv.TLSConfig = tlsConf
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			ready(ln.Addr())
			go func() { <-ctx.Done(); shutdown(srv) }()
			err = srv.ServeTLS(ln, "", "")
		}
	} else {
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			ready(ln.Addr())
			go func() { <-ctx.Done(); shutdown(srv) }()
			err = srv.Serve(ln)
		}
	}
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

// isLoopbackAddr reports whether a listen address only accepts local clients.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
