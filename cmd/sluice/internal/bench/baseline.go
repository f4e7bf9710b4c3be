package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// baseline is another server measured under the bench's load in the same run
// (MediaMTX, say): a shell command that starts it, and where its WHIP and WHEP
// endpoints are, as URL templates with {stream} in them.
type baseline struct {
	cmd        string
	whip, whep string
}

// name is how the bench's tables call the baseline: its program's base name.
func (b baseline) name() string {
	f := strings.Fields(b.cmd)
	if len(f) == 0 {
		return "baseline"
	}
	return "baseline: " + f[0][strings.LastIndexByte(f[0], '/')+1:]
}

// check refuses templates that cannot name a stream's endpoints.
func (b baseline) check() error {
	for _, t := range []string{b.whip, b.whep} {
		u, err := url.Parse(strings.ReplaceAll(t, "{stream}", "s"))
		if err != nil || u.Scheme != "http" || u.Host == "" || !strings.Contains(t, "{stream}") {
			return fmt.Errorf("baseline URL template %q: want http://host:port/…{stream}…", t)
		}
	}
	return nil
}

// start runs the baseline's command and, in front of it, a reverse proxy on
// loopback that gives it sluice's URL shapes (POST /whip/{stream} and
// /whep/{stream}; every other request, such as the DELETE on a Location, passes
// as it is), so the bench drives it exactly as it drives sluice. The proxy runs
// in the bench's own process, whose CPU is not counted. It returns the server's
// process (its CPU and its children's are measured), the proxy's base URL and
// the function that stops both.
func (b baseline) start(ctx context.Context) (*exec.Cmd, string, func(), error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "exec "+b.cmd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if path := os.Getenv("SLUICE_BENCH_SERVER_LOG"); path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, "", nil, fmt.Errorf("start %q: %w", b.cmd, err)
	}
	whip, _ := url.Parse(strings.ReplaceAll(b.whip, "{stream}", "s"))
	if err := waitListening(ctx, whip.Host, 30*time.Second); err != nil {
		stopServer(cmd)
		return nil, "", nil, fmt.Errorf("%q: %w", b.cmd, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopServer(cmd)
		return nil, "", nil, fmt.Errorf("baseline proxy: %w", err)
	}
	srv := &http.Server{Handler: b.proxy(whip)}
	go func() { _ = srv.Serve(ln) }()
	stop := func() {
		_ = srv.Close()
		stopServer(cmd)
	}
	return cmd, "http://" + ln.Addr().String(), stop, nil
}

// proxy maps sluice's WHIP and WHEP paths onto the templates, and any other
// path onto the WHIP template's host.
func (b baseline) proxy(whip *url.URL) http.Handler {
	rewrite := func(r *httputil.ProxyRequest) {
		target := whip.Scheme + "://" + whip.Host + r.In.URL.RequestURI()
		if r.In.Method == http.MethodPost {
			parts := strings.Split(strings.Trim(r.In.URL.Path, "/"), "/")
			if len(parts) == 2 && (parts[0] == "whip" || parts[0] == "whep") {
				t := b.whip
				if parts[0] == "whep" {
					t = b.whep
				}
				target = strings.ReplaceAll(t, "{stream}", parts[1])
			}
		}
		u, err := url.Parse(target)
		if err != nil {
			return
		}
		r.Out.URL = u
		r.Out.Host = u.Host
	}
	return &httputil.ReverseProxy{Rewrite: rewrite, ModifyResponse: func(resp *http.Response) error {
		// A Location the baseline gives as an absolute URL of its own host is
		// made relative, so that the bench's DELETE comes back through here.
		if loc := resp.Header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil && u.IsAbs() {
				resp.Header.Set("Location", u.RequestURI())
			}
		}
		return nil
	}}
}

// waitListening waits until something accepts TCP connections on addr.
func waitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s within %s: %w", addr, within, err)
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPlayable waits until a WHEP viewer of stream is answered with 201: a
// server may refuse viewers (404) until the publisher's tracks have arrived
// (MediaMTX does), and the load generator's viewers are counted from the
// first. Each try is a fresh peer connection, closed at once.
func waitPlayable(ctx context.Context, base, stream string, within time.Duration) error {
	api, err := mediatest.APIWithoutStats()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			_, _ = pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		}
		s, err := mediatest.Negotiate(ctx, pc, base, "/whep/"+stream)
		if err == nil {
			_ = s.Close()
		}
		_ = pc.Close()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("stream %s not playable within %s: %w", stream, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
