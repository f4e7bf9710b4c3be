package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/pion/rtp/codecs"

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
	hash, err := certificateHash(ctx, moqURL)
	if err != nil {
		return benchResult{}, err
	}
	s, err := push.Dial(ctx, moqURL, &push.Options{CertSHA256: hash})
	if err != nil {
		return benchResult{}, err
	}
	defer s.Close()
	stream := fmt.Sprintf("bench-moq-%d-%d", n, rand.IntN(1e6))
	b, err := s.Publish(ctx, stream,
		push.Track{Name: "video", Codec: push.VP8, Width: 640, Height: 360, Framerate: 30},
		push.Track{Name: "audio", Codec: push.Opus})
	if err != nil {
		return benchResult{}, err
	}
	m := &benchMeter{stamped: true}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	go benchPush(sendCtx, b, &m.sent)
	views, err := m.addViewers(ctx, base, stream, n)
	defer func() {
		for _, v := range views {
			_ = v.Close()
		}
	}()
	if err != nil {
		return benchResult{}, err
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

// benchPush pushes what benchSend publishes — 30 VP8-shaped frames a second of
// 3,000 bytes, a 9,000-byte keyframe every second, and 50 Opus-shaped frames of
// 120 bytes — each stamped with the time it is written. sent counts the RTP
// packets the gateway makes of them (its VP8 payloader, with picture ids, into
// 1,200-byte packets).
func benchPush(ctx context.Context, b *push.Broadcast, sent *atomic.Int64) {
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
			f := make([]byte, 3000)
			if key {
				f = make([]byte, 9000)
			} else {
				f[0] = 1 // VP8 frame tag: an interframe
			}
			binary.BigEndian.PutUint64(f[3:], uint64(time.Now().UnixNano()))
			if b.WriteFrame("video", time.Duration(vi)*time.Second/30, key, f) == nil {
				sent.Add(int64(len(vp.Payload(1200, f))))
			}
		}
		for ; time.Duration(ai)*20*time.Millisecond <= el; ai++ {
			f := make([]byte, 120)
			binary.BigEndian.PutUint64(f[3:], uint64(time.Now().UnixNano()))
			if b.WriteFrame("audio", time.Duration(ai)*20*time.Millisecond, true, f) == nil {
				sent.Add(1)
			}
		}
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
