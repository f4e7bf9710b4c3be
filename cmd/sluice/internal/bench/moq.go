package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/mediaload"
	"github.com/sluicegw/sluice/sdk/push"
)

// prepareMoQ is prepareWHIP with the stream pushed over MoQ, as `sluice push`
// does, instead of published over WHIP: the same frame sizes and rates and the
// same viewers.
//
// The gateway packetizes pushed frames itself, so a viewer cannot look a packet's
// send time up by its sequence number as with WHIP: every frame carries the time
// it was written instead (unix nanoseconds at bytes 3–10), and the latency is
// that of the packets that start a frame.
func prepareMoQ(ctx context.Context, deps Deps, base, moqURL string, pid, n int) (*load, error) {
	return preparePushes(ctx, deps, base, moqURL, pid, 1, n, mediaload.Frames{Video: 3000, Key: 9000})
}

// preparePushes pushes `pushes` streams at once over MoQ, each watched by n
// WHEP viewers, to be measured together in one window.
func preparePushes(ctx context.Context, deps Deps, base, moqURL string, pid, pushes, n int, sizes mediaload.Frames) (*load, error) {
	u, err := url.Parse(moqURL)
	if err != nil {
		return nil, err
	}
	opts := &push.Options{}
	if err := deps.Trust(ctx, u, "", opts); err != nil {
		return nil, err
	}
	l := &load{m: &mediaload.Meter{Stamped: true}, pid: pid, n: n}
	sendCtx, stopSend := context.WithCancel(ctx)
	l.closers = append(l.closers, stopSend)
	for i := range pushes {
		if err := pushOne(ctx, sendCtx, l, opts, base, moqURL, fmt.Sprintf("bench-moq-%d-%d-%d", n, i, rand.IntN(1e6)), sizes); err != nil {
			l.close()
			return nil, fmt.Errorf("push %d: %w", i, err)
		}
	}
	return l, nil
}

// pushOne dials the gateway, pushes one stream on it until sendCtx ends, and
// joins l's viewers to it.
func pushOne(ctx, sendCtx context.Context, l *load, opts *push.Options, base, moqURL, stream string, sizes mediaload.Frames) error {
	s, err := push.Dial(ctx, moqURL, opts)
	if err != nil {
		return err
	}
	l.closers = append(l.closers, func() { _ = s.Close() })
	b, err := s.Publish(ctx, stream,
		push.Track{Name: "video", Codec: push.VP8, Width: 640, Height: 360, Framerate: 30},
		push.Track{Name: "audio", Codec: push.Opus})
	if err != nil {
		return err
	}
	go mediaload.Push(sendCtx, b, sizes, l.m)
	v, err := l.m.AddViewers(ctx, base, stream, l.n)
	l.viewers(v)
	return err
}

// benchManyPushes starts `sluice dev` and pushes n streams of ~1 Mbit/s (4,200
// bytes of video 30 times a second, a 12,600-byte keyframe every second, and
// Opus), each to one WHEP viewer.
func benchManyPushes(ctx context.Context, deps Deps, self string, devArgs []string, n int, warmup, window time.Duration, stderr io.Writer) (mediaload.Result, error) {
	srv, urls, err := startServer(ctx, self, devArgs, devReadyRE, true)
	if err != nil {
		return mediaload.Result{}, err
	}
	defer stopServer(srv)
	l, err := preparePushes(ctx, deps, urls[0], urls[1], srv.Process.Pid, n, 1, mediaload.Frames{Video: 4200, Key: 12600})
	if err != nil {
		return mediaload.Result{}, err
	}
	defer l.close()
	time.Sleep(warmup)
	r, err := l.m.Measure(l.pid, l.n, window, stderr)
	if err == nil {
		fmt.Fprintf(stderr, "%d MoQ pushes: %.0f pkt/s delivered, %.1f µs CPU/pkt, latency p50 %s p99 %s, loss %.2f%%%s%s\n",
			n, r.PPS, r.CPUPerPkt, r.P50, r.P99, 100*r.Loss, dropNote(r), serverDrops(ctx, urls[0]))
	}
	return r, err
}

// serverDrops names the gateway's drop counters that are not zero after a
// run (from its /metrics): where a loss the viewers saw was made, if it was
// made in the gateway rather than on the way.
func serverDrops(ctx context.Context, base string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasSuffix(strings.SplitN(name, "{", 2)[0], "_dropped_total") && value != "0" {
			out = append(out, name+" "+value)
		}
	}
	if len(out) == 0 {
		return ", no drop counted by the gateway"
	}
	return " (the gateway counted " + strings.Join(out, ", ") + ")"
}
