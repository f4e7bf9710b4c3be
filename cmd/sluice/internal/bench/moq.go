package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/sluicegw/sluice/internal/mediaload"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/sdk/push"
)

// benchRunMoQ is benchRun with the stream pushed over MoQ, as `sluice push`
// does, instead of published over WHIP: the same frame sizes and rates, the same
// viewers and the same window.
//
// The gateway packetizes pushed frames itself, so a viewer cannot look a packet's
// send time up by its sequence number as with WHIP: every frame carries the time
// it was written instead (unix nanoseconds at bytes 3–10), and the latency is
// that of the packets that start a frame.
func benchRunMoQ(ctx context.Context, deps Deps, base, moqURL string, pid, n int, warmup, window time.Duration, stderr io.Writer) (mediaload.Result, error) {
	return benchPushes(ctx, deps, base, moqURL, pid, 1, n, mediaload.Frames{Video: 3000, Key: 9000}, warmup, window, stderr)
}

// benchPushes pushes `pushes` streams at once over MoQ, each watched by n WHEP
// viewers, and measures them together in one window.
func benchPushes(ctx context.Context, deps Deps, base, moqURL string, pid, pushes, n int, sizes mediaload.Frames, warmup, window time.Duration, stderr io.Writer) (mediaload.Result, error) {
	u, err := url.Parse(moqURL)
	if err != nil {
		return mediaload.Result{}, err
	}
	opts := &push.Options{}
	if err := deps.Trust(ctx, u, "", opts); err != nil {
		return mediaload.Result{}, err
	}
	m := &mediaload.Meter{Stamped: true}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	var views []*mediatest.Session
	defer func() {
		for _, v := range views {
			_ = v.Close()
		}
	}()
	for i := range pushes {
		s, err := push.Dial(ctx, moqURL, opts)
		if err != nil {
			return mediaload.Result{}, fmt.Errorf("push %d: %w", i, err)
		}
		defer s.Close()
		stream := fmt.Sprintf("bench-moq-%d-%d-%d", n, i, rand.IntN(1e6))
		b, err := s.Publish(ctx, stream,
			push.Track{Name: "video", Codec: push.VP8, Width: 640, Height: 360, Framerate: 30},
			push.Track{Name: "audio", Codec: push.Opus})
		if err != nil {
			return mediaload.Result{}, fmt.Errorf("push %d: %w", i, err)
		}
		go mediaload.Push(sendCtx, b, sizes, m)
		v, err := m.AddViewers(ctx, base, stream, n)
		views = append(views, v...)
		if err != nil {
			return mediaload.Result{}, fmt.Errorf("push %d: %w", i, err)
		}
	}
	time.Sleep(warmup)
	return m.Measure(pid, n, window, stderr)
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
	r, err := benchPushes(ctx, deps, urls[0], urls[1], srv.Process.Pid, n, 1, mediaload.Frames{Video: 4200, Key: 12600}, warmup, window, stderr)
	if err == nil {
		fmt.Fprintf(stderr, "%d MoQ pushes: %.0f pkt/s delivered, %.1f µs CPU/pkt, latency p50 %s p99 %s, loss %.2f%%%s\n",
			n, r.PPS, r.CPUPerPkt, r.P50, r.P99, 100*r.Loss, dropNote(r))
	}
	return r, err
}
