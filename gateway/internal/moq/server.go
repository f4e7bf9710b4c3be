package moq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/loopback"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// Config configures the MoQ endpoint. Zero values mean the defaults given.
type Config struct {
	// Listen is the UDP address of raw QUIC and WebTransport (and, with a
	// self-signed certificate, the TCP address of /certificate.sha256). Required.
	Listen string
	// TLS is the production certificate (from the cluster's TLS setup,
	// certmagic or a configured file pair). Nil means a rotating self-signed
	// certificate, which New allows only on a loopback Listen address.
	TLS *tls.Config
	// Hosts are the names the self-signed certificate is valid for. Default:
	// 127.0.0.1, ::1 and localhost.
	Hosts []string
	// Metrics receives the endpoint's series. Default: a private set.
	Metrics *metrics.Set

	// MaxRequests bounds a session's open requests in each direction (draft 16:
	// the MAX_REQUEST_ID window; 17+: request streams). Default 64.
	MaxRequests int
	// MaxDataStreams bounds a session's concurrently open incoming data
	// streams; one more is stopped at once. Default 256.
	MaxDataStreams int
	// MaxObjectBytes bounds one object's payload (one hang frame). A larger
	// object ends its track's subscription. Default 4 MiB.
	MaxObjectBytes int
	// SetupTimeout is how long a client has to complete SETUP. Default 10s.
	SetupTimeout time.Duration
	// TrackTimeout is how long a subscribed track (or an announced broadcast's
	// catalog) may stay silent before its subscription is ended. A publisher
	// in a browser may take tens of seconds to start its encoder, so it is
	// generous. Default 60s.
	TrackTimeout time.Duration
	// StreamIdleTimeout is how long a data stream may sit between objects
	// before it is stopped. Default 15s.
	StreamIdleTimeout time.Duration
	// WriteTimeout bounds every control message write: a client that stops
	// reading its control stream loses the session. Default 5s.
	WriteTimeout time.Duration
	// Authorize, if set, decides whether a client may publish (PUBLISH,
	// PUBLISH_NAMESPACE) or view (SUBSCRIBE) a stream, before the throttle
	// policy; its error is the reason of an UNAUTHORIZED refusal. Nil admits
	// every request the throttle policy admits.
	Authorize func(ctx context.Context, a Auth) error
}

// Auth is what Config.Authorize decides on.
type Auth struct {
	Kind   string // wire.KindPublish or wire.KindPlay
	Stream string
	Path   string // the namespace
	Client string
	// Token is the token's value: of the request's AUTHORIZATION_TOKEN
	// parameter, else of SETUP's, else the "jwt" query parameter of the
	// session's URL (nil if none).
	Token []byte
}

func (c Config) withDefaults() Config {
	if len(c.Hosts) == 0 {
		c.Hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxRequests, 64)
	def(&c.MaxDataStreams, 256)
	def(&c.MaxObjectBytes, 4<<20)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.SetupTimeout, 10*time.Second)
	defd(&c.TrackTimeout, 60*time.Second)
	defd(&c.StreamIdleTimeout, 15*time.Second)
	defd(&c.WriteTimeout, 5*time.Second)
	return c
}

// Server is a gateway's MoQ endpoint: MoQT sessions over raw QUIC and
// WebTransport whose publishers become the session core's Sources.
type Server struct {
	cfg  Config
	core *session.Core
	log  *slog.Logger
	m    *serverMetrics
	ep   *transport.Endpoint

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	mu       sync.Mutex
	sessions map[*moqSession]struct{}
}

// New binds the endpoint's port. Nothing is served until Serve.
func New(cfg Config, core *session.Core, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Listen == "" {
		return nil, errors.New("moq: no listen address")
	}
	if cfg.TLS == nil && !loopback.Addr(cfg.Listen) {
		return nil, fmt.Errorf("moq: %s is not a loopback address: configure a certificate (a self-signed one is for loopback only)", cfg.Listen)
	}
	s := &Server{cfg: cfg, core: core, log: log, m: newServerMetrics(cfg.Metrics), sessions: map[*moqSession]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	protos := make([]string, 0, len(moqt.Supported))
	for _, v := range moqt.Supported {
		protos = append(protos, v.ALPN())
	}
	ep, err := transport.Listen(transport.Config{Listen: cfg.Listen, TLS: cfg.TLS, Hosts: cfg.Hosts, Protocols: protos,
		Handle: s.handle, Log: log})
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.ep = ep
	return s, nil
}

// EndPublisher ends the MoQ publishes of stream on this gateway (a publisher
// over its token's limits), with the announcement cancelled by code, and
// reports how many there were. The session itself goes on.
func (s *Server) EndPublisher(stream, reason string, code moqt.ErrorCode) int {
	s.mu.Lock()
	sessions := make([]*moqSession, 0, len(s.sessions))
	for ms := range s.sessions {
		sessions = append(sessions, ms)
	}
	s.mu.Unlock()
	var bs []*broadcast
	for _, ms := range sessions {
		ms.mu.Lock()
		if b := ms.bcasts[stream]; b != nil {
			bs = append(bs, b)
		}
		ms.mu.Unlock()
	}
	for _, b := range bs {
		b.end(reason, &refusal{code: code, reason: reason})
	}
	return len(bs)
}

// Serve accepts sessions until ctx ends or the server closes.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
			cancel()
		}
	}()
	s.ep.Serve(ctx)
	return nil
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.ep.Addr() }

// CertificateHash is the hex SHA-256 of the self-signed certificate that
// /certificate.sha256 serves, or "" with a configured certificate.
func (s *Server) CertificateHash() string { return s.ep.CertificateHash() }

// Close ends every session (NO_ERROR, "shutting down"), stops the endpoint and
// waits for every goroutine. It is safe to call twice.
func (s *Server) Close() error {
	s.closed.Do(func() {
		s.cancel()
		s.mu.Lock()
		live := make([]*moqSession, 0, len(s.sessions))
		for ms := range s.sessions {
			live = append(live, ms)
		}
		s.mu.Unlock()
		for _, ms := range live {
			ms.terminate(moqt.CodeNoError, "gateway shutting down")
		}
		s.ep.Close()
		s.wg.Wait()
	})
	return nil
}

// handle runs one session on an accepted transport; the endpoint owns the
// goroutine and waits for it on close.
func (s *Server) handle(conn transport.Conn, protocol string) {
	v, ok := moqt.VersionFromALPN(protocol)
	if !ok {
		_ = conn.CloseWithError(uint64(moqt.CodeVersionNegotiationFailed), "no common MoQT version")
		s.m.sessionError(moqt.CodeVersionNegotiationFailed)
		return
	}
	ms := newSession(s, conn, v)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		_ = conn.CloseWithError(uint64(moqt.CodeNoError), "gateway shutting down")
		return
	}
	s.sessions[ms] = struct{}{}
	s.wg.Add(1) // WebTransport handlers run on http3's goroutines: Close waits here
	s.mu.Unlock()
	defer s.wg.Done()
	ms.run()
	s.mu.Lock()
	delete(s.sessions, ms)
	s.mu.Unlock()
}

// serverMetrics are the endpoint's Prometheus series.
type serverMetrics struct {
	set         *metrics.Set
	sessions    *liveGauge
	sessionsAll *metrics.Counter
	objects     *metrics.Counter
	bytes       *metrics.Counter
	dropped     *metrics.Counter
}

// liveGauge is the number of live sessions, moved by Inc and Dec.
type liveGauge struct{ n atomic.Int64 }

func (g *liveGauge) Inc() { g.n.Add(1) }
func (g *liveGauge) Dec() { g.n.Add(-1) }

func newServerMetrics(set *metrics.Set) *serverMetrics {
	live := &liveGauge{}
	set.NewGauge(`sluice_moq_sessions`, func() float64 { return float64(live.n.Load()) })
	return &serverMetrics{
		set:         set,
		sessions:    live,
		sessionsAll: set.NewCounter(`sluice_moq_sessions_total`),
		objects:     set.NewCounter(`sluice_moq_objects_total`),
		bytes:       set.NewCounter(`sluice_moq_object_bytes_total`),
		dropped:     set.NewCounter(`sluice_moq_objects_dropped_total`),
	}
}

// sessionError counts a session ended with a MoQT termination code.
func (m *serverMetrics) sessionError(code moqt.ErrorCode) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_moq_errors_total{scope="session",code="0x%x"}`, uint64(code))).Inc()
}

// requestError counts a request refused or ended with a request error code.
func (m *serverMetrics) requestError(code moqt.ErrorCode) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_moq_errors_total{scope="request",code="0x%x"}`, uint64(code))).Inc()
}

// streamError counts a data stream stopped with a reset code.
func (m *serverMetrics) streamError(code moqt.ErrorCode) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_moq_errors_total{scope="stream",code="0x%x"}`, uint64(code))).Inc()
}
