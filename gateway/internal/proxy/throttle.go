package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/wire"
)

// admit asks the throttle policy about a proxied call, as M2 throttles heavy
// requests by path: it reports whether the call goes on to the service, and
// answers it itself when not — M2's 510, a redirect to the origin, or the
// call forwarded to the route's origin instead of the service.
func (p *Proxy) admit(w http.ResponseWriter, r *http.Request, rt *Route, stream, client string) bool {
	out, ok, err := p.loc.Admit(r.Context(), session.Admission{Kind: wire.KindProxy, Stream: stream, Path: r.URL.Path,
		Protocol: protocolOf(r), Client: client})
	switch {
	case err != nil:
		refuse(w, r, http.StatusServiceUnavailable, "throttle-failed", "Admission failed", fmt.Sprintf("route %s, stream %s: %v", rt.Prefix, stream, err))
		return false
	case !ok:
		p.m.throttled.Inc()
		session.WriteThrottled(w, out)
		return false
	case out.Action == session.Origin && rt.origin != nil:
		p.m.toOrigin.Inc()
		rt.origin.ServeHTTP(w, r)
		return false
	}
	return true
}

func protocolOf(r *http.Request) string {
	if isGRPC(r) {
		return "grpc"
	}
	return "http"
}

// newOriginProxy forwards calls, path and query unchanged, to a route's
// origin: the unprocessed original a throttled call may be answered from.
func newOriginProxy(origin *url.URL, fail func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(origin)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			pr.SetXForwarded()
		},
		BufferPool:   &copyBufs,
		ErrorHandler: fail,
	}
}

// limitedConcurrency is how many calls at once an upstream that answered 504
// is given until it answers 200 again (M2's rule for an origin that timed
// out).
const limitedConcurrency = 2

// limiter holds M2's 504 rule per upstream (an agent's service): after a 504,
// at most limitedConcurrency calls at once go to it, and more get a 504 from
// the gateway at once, until the upstream answers 200.
type limiter struct {
	mu       sync.Mutex
	limited  map[string]bool
	inflight map[string]int
}

// acquire counts a call to key in, or refuses it when key is limited and full.
func (l *limiter) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limited[key] && l.inflight[key] >= limitedConcurrency {
		return false
	}
	l.inflight[key]++
	return true
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[key]--; l.inflight[key] <= 0 {
		delete(l.inflight, key)
	}
}

// answered applies an upstream's status to its limit.
func (l *limiter) answered(key string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch status {
	case http.StatusGatewayTimeout:
		l.limited[key] = true
	case http.StatusOK:
		delete(l.limited, key)
	}
}

// Limited lists the upstreams under the 504 rule ("agent/service"), for the
// operator API and metrics.
func (l *limiter) Limited() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.limited))
	for k := range l.limited {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// releasingBody releases a call's place with the limiter when its response
// body is closed (the reverse proxy closes it when the call ends).
type releasingBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// releasingConn is releasingBody for the writable body of a protocol upgrade
// (101), which the reverse proxy uses as the connection.
type releasingConn struct {
	*releasingBody
	io.Writer
}

// releasing wraps a response body so that closing it calls done once.
func releasing(body io.ReadCloser, done func()) io.ReadCloser {
	if rw, ok := body.(io.ReadWriteCloser); ok {
		return &releasingConn{&releasingBody{ReadCloser: rw, done: done}, rw}
	}
	return &releasingBody{ReadCloser: body, done: done}
}
