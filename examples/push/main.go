// Command push is an example of sdk/push: it publishes a stream of generated
// frames, 30 video frames and 50 Opus packets a second, to a MoQ server such
// as `sluice dev`:
//
//	go run ./examples/push -url moqt://127.0.0.1:4443 -cert-sha256 $(curl -s http://127.0.0.1:4443/certificate.sha256)
//
// The audio is real Opus (20 ms of silence per packet); the video frames are
// numbered placeholder bytes, which show the framing (a keyframe opens a group
// every second) but do not decode.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/sluicegw/sluice/sdk/push"
)

func main() {
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	url := fs.String("url", "moqt://127.0.0.1:4443", "the MoQ server")
	hash := fs.String("cert-sha256", "", "the server certificate's hex SHA-256 (sluice dev serves it at /certificate.sha256)")
	stream := fs.String("stream", "example", "stream id")
	seconds := fs.Float64("seconds", 5, "how long to push")
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *url, *hash, *stream, time.Duration(*seconds*float64(time.Second))); err != nil {
		log.Fatal(err)
	}
}

// opusSilence is one 20 ms Opus packet of silence (CELT, fullband, mono).
var opusSilence = []byte{0xf8, 0xff, 0xfe}

func run(ctx context.Context, url, hash, stream string, length time.Duration) error {
	s, err := push.Dial(ctx, url, &push.Options{CertSHA256: hash})
	if err != nil {
		return err
	}
	defer s.Close()
	b, err := s.Publish(ctx, stream,
		push.Track{Codec: push.VP8, Width: 320, Height: 240, Framerate: 30},
		push.Track{Codec: push.Opus, Channels: 1})
	if err != nil {
		return err
	}
	start := time.Now()
	video, audio := time.NewTicker(time.Second/30), time.NewTicker(20*time.Millisecond)
	defer video.Stop()
	defer audio.Stop()
	var nv, na int
	for time.Since(start) < length {
		select {
		case <-ctx.Done():
			return b.Close()
		case <-video.C:
			frame := fmt.Appendf(nil, "frame %d", nv)
			if err := b.WriteFrame("video", time.Duration(nv)*time.Second/30, nv%30 == 0, frame); err != nil {
				return err
			}
			nv++
		case <-audio.C:
			if err := b.WriteFrame("audio", time.Duration(na)*20*time.Millisecond, true, opusSilence); err != nil {
				return err
			}
			na++
		}
	}
	if err := b.Close(); err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Printf("pushed %d video frames and %d audio packets to %s over %s\n", nv, na, stream, s.Version())
	return nil
}
