package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/pion/rtp/codecs"

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
func benchRunMoQ(ctx context.Context, base, moqURL string, pid, n int, warmup, window time.Duration, stderr io.Writer) (benchResult, error) {
	return benchPushes(ctx, base, moqURL, pid, 1, n, benchFrames{video: 3000, key: 9000}, warmup, window, stderr)
}

// benchFrames are the sizes of a pushed stream's frames: video at 30 frames a
// second with a keyframe every second, and 120-byte Opus frames 50 times a
// second.
type benchFrames struct{ video, key int }

// benchPushes pushes `pushes` streams at once over MoQ, each watched by n WHEP
// viewers, and measures them together in one window.
func benchPushes(ctx context.Context, base, moqURL string, pid, pushes, n int, sizes benchFrames, warmup, window time.Duration, stderr io.Writer) (benchResult, error) {
	hash, err := certificateHash(ctx, moqURL)
	if err != nil {
		return benchResult{}, err
	}
	m := &benchMeter{stamped: true}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	var views []*mediatest.Session
	defer func() {
		for _, v := range views {
			_ = v.Close()
		}
	}()
	for i := range pushes {
		s, err := push.Dial(ctx, moqURL, &push.Options{CertSHA256: hash})
		if err != nil {
			return benchResult{}, fmt.Errorf("push %d: %w", i, err)
		}
		defer s.Close()
		stream := fmt.Sprintf("bench-moq-%d-%d-%d", n, i, rand.IntN(1e6))
		b, err := s.Publish(ctx, stream,
			push.Track{Name: "video", Codec: push.VP8, Width: 640, Height: 360, Framerate: 30},
			push.Track{Name: "audio", Codec: push.Opus})
		if err != nil {
			return benchResult{}, fmt.Errorf("push %d: %w", i, err)
		}
		go benchPush(sendCtx, b, sizes, m)
		v, err := m.addViewers(ctx, base, stream, n)
		views = append(views, v...)
		if err != nil {
			return benchResult{}, fmt.Errorf("push %d: %w", i, err)
		}
	}
	time.Sleep(warmup)
	return m.measure(pid, n, window, stderr)
}

// certificateHash fetches the dev MoQ endpoint's certificate hash, as `sluice
// push` does on loopback.
func certificateHash(ctx context.Context, moqURL string) (string, error) {
	u, err := url.Parse(moqURL)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+u.Host+"/certificate.sha256", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("certificate hash: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 128))
	return string(b), err
}

// benchPush pushes frames of the given sizes (benchRunMoQ's are what benchSend
// publishes over WHIP), each stamped with the time it is written. sent counts the RTP
// packets the gateway makes of them (its VP8 payloader, with picture ids, into
// 1,200-byte packets).
func benchPush(ctx context.Context, b *push.Broadcast, sizes benchFrames, m *benchMeter) {
	vp := &codecs.VP8Payloader{EnablePictureID: true}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	vi, ai := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		el := time.Since(start)
		for ; time.Duration(vi)*time.Second/30 <= el; vi++ {
			key := vi%30 == 0
			f := make([]byte, sizes.video)
			if key {
				f = make([]byte, sizes.key)
			} else {
				f[0] = 1 // VP8 frame tag: an interframe
			}
			now := time.Now().UnixNano()
			binary.BigEndian.PutUint64(f[3:], uint64(now))
			if b.WriteFrame("video", time.Duration(vi)*time.Second/30, key, f) == nil {
				m.sent.Add(int64(len(vp.Payload(1200, f))))
				m.wrote(now)
			}
		}
		for ; time.Duration(ai)*20*time.Millisecond <= el; ai++ {
			f := make([]byte, 120)
			now := time.Now().UnixNano()
			binary.BigEndian.PutUint64(f[3:], uint64(now))
			if b.WriteFrame("audio", time.Duration(ai)*20*time.Millisecond, true, f) == nil {
				m.sent.Add(1)
				m.wrote(now)
			}
		}
	}
}

// wrote counts a frame stamped now if the window is open.
func (m *benchMeter) wrote(now int64) {
	if m.inWindow(now) {
		m.framesSent.Add(1)
	}
}

// stampOf reads a pushed frame's send time from the packet that starts it.
func stampOf(kind int, payload []byte) (int64, bool) {
	if kind == 0 {
		var vp codecs.VP8Packet
		if _, err := vp.Unmarshal(payload); err != nil || vp.S != 1 || vp.PID != 0 {
			return 0, false
		}
		payload = vp.Payload
	}
	if len(payload) < 11 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(payload[3:11])), true
}

// benchManyPushes starts `sluice dev` and pushes n streams of ~1 Mbit/s (4,200
// bytes of video 30 times a second, a 12,600-byte keyframe every second, and
// Opus), each to one WHEP viewer.
func benchManyPushes(ctx context.Context, self string, devArgs []string, n int, warmup, window time.Duration, stderr io.Writer) (benchResult, error) {
	srv, urls, err := startServer(ctx, self, devArgs, devReadyRE, true)
	if err != nil {
		return benchResult{}, err
	}
	defer stopServer(srv)
	r, err := benchPushes(ctx, urls[0], urls[1], srv.Process.Pid, n, 1, benchFrames{video: 4200, key: 12600}, warmup, window, stderr)
	if err == nil {
		fmt.Fprintf(stderr, "%d MoQ pushes: %.0f pkt/s delivered, %.1f µs CPU/pkt, latency p50 %s p99 %s, loss %.2f%%\n",
			n, r.pps, r.cpuPerPkt, r.p50, r.p99, 100*r.loss)
	}
	return r, err
}
