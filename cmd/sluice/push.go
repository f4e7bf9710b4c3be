package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/internal/loopback"
	"github.com/sluicegw/sluice/internal/mediafile"
	"github.com/sluicegw/sluice/sdk/push"
)

const pushUsage = `Usage: sluice push --stream ID [--video FILE.ivf|-] [--audio FILE.ogg|-] [flags]

Pushes VP8 (IVF) and Opus (Ogg) to a gateway's MoQ endpoint over QUIC, in real
time from the files' timestamps. "-" reads stdin, e.g. a live encoder:
  ffmpeg -re -i input -c:v libvpx -deadline realtime -f ivf - | sluice push --stream cam1 --video -

Flags:
`

// runPush is `sluice push`: one line on stderr and a non-zero status say what
// failed.
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, pushUsage); fs.PrintDefaults() }
	stream := fs.String("stream", "", "stream id to publish (required)")
	video := fs.String("video", "", "VP8 IVF file, or - for stdin")
	audio := fs.String("audio", "", "Opus Ogg file, or - for stdin")
	rawURL := fs.String("url", "moqt://127.0.0.1:4443", "the gateway's MoQ endpoint")
	loop := fs.Bool("loop", false, "repeat the files, timestamps continuing")
	token := fs.String("token", "", "auth token (sent as MoQT AUTHORIZATION_TOKEN)")
	certHash := fs.String("cert-sha256", "", "pin the server certificate by its hex SHA-256 (default on loopback: fetched from /certificate.sha256)")
	caFile := fs.String("ca", "", "PEM file of CA certificates to verify the server with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
		fmt.Fprintln(stderr, "sluice push: "+msg)
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fail(2, "unexpected argument %q", fs.Arg(0))
	case *stream == "":
		return fail(2, "--stream is required")
	case *video == "" && *audio == "":
		return fail(2, "nothing to push: give --video, --audio or both")
	case *video == "-" && *audio == "-":
		return fail(2, "only one of --video and --audio can read stdin")
	case *loop && (*video == "-" || *audio == "-"):
		return fail(2, "--loop needs files, not stdin")
	case *certHash != "" && *caFile != "":
		return fail(2, "give --cert-sha256 or --ca, not both")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "moqt" || u.Hostname() == "" {
		return fail(2, "--url %q: want moqt://host:port", *rawURL)
	}
	var sources []mediafile.Source
	for _, in := range []struct {
		path string
		flag string
		open func(string) (mediafile.Source, error)
	}{{*video, "--video", mediafile.OpenIVF}, {*audio, "--audio", mediafile.OpenOgg}} {
		if in.path == "" {
			continue
		}
		src, err := in.open(in.path)
		if err != nil {
			return fail(1, "%s: %v", in.flag, err)
		}
		defer src.Close()
		sources = append(sources, src)
	}
	opts := &push.Options{Token: *token, CertSHA256: *certHash}
	if err := trustFor(ctx, u, *caFile, opts); err != nil {
		return fail(1, "%v", err)
	}
	sent, elapsed, err := pushSources(ctx, u.String(), *stream, opts, sources, *loop)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "sluice push: %s: %s in %.1fs\n", *stream, strings.Join(sent, ", "), elapsed.Seconds())
	return 0
}

// trustFor fills how the server's certificate is checked: a CA file, a given
// hash, or on loopback the hash `sluice dev` serves at /certificate.sha256.
func trustFor(ctx context.Context, u *url.URL, caFile string, opts *push.Options) error {
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no PEM certificates", caFile)
		}
		opts.RootCAs = pool
		return nil
	}
	if opts.CertSHA256 != "" {
		return nil
	}
	if !loopback.Host(u.Hostname()) {
		return nil // verify the chain against the system roots
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	hashURL := "http://" + net.JoinHostPort(u.Hostname(), port) + "/certificate.sha256"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hashURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no gateway at %s: connection refused (start `sluice dev`, or point --url at a gateway)", u.Host)
		}
		return fmt.Errorf("fetch the certificate hash: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (pass --cert-sha256 or --ca)", hashURL, resp.Status)
	}
	opts.CertSHA256 = strings.TrimSpace(string(body))
	return nil
}

// pushSources publishes the sources as one broadcast and paces their frames
// in real time until they end (or ctx does).
func pushSources(ctx context.Context, rawURL, stream string, opts *push.Options, sources []mediafile.Source, loop bool) ([]string, time.Duration, error) {
	s, err := push.Dial(ctx, rawURL, opts)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	tracks := make([]push.Track, len(sources))
	for i, src := range sources {
		tracks[i] = src.Track()
	}
	b, err := s.Publish(ctx, stream, tracks...)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	counts := make([]int, len(sources))
	errs := make([]error, len(sources))
	for i, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = pace(ctx, b, tracks[i].Name, src, start, loop)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, elapsed, err
	}
	if err := b.Close(); err != nil {
		return nil, elapsed, err
	}
	if err := s.Close(); err != nil {
		return nil, elapsed, err
	}
	sent := make([]string, len(sources))
	for i := range sources {
		sent[i] = fmt.Sprintf("%d %s frames", counts[i], tracks[i].Name)
	}
	return sent, elapsed, nil
}

// pace writes src's frames when their timestamps fall due after start, as
// ffmpeg -re reads input; --loop continues the timestamps across repeats.
func pace(ctx context.Context, b *push.Broadcast, track string, src mediafile.Source, start time.Time, loop bool) (int, error) {
	n := 0
	for {
		f, err := src.Next()
		if errors.Is(err, io.EOF) {
			if !loop {
				return n, nil
			}
			if err := src.Rewind(); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if wait := time.Until(start.Add(f.TS)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return n, nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return n, nil
		}
		if err := b.WriteFrame(track, f.TS, f.Key, f.Data); err != nil {
			if errors.Is(err, push.ErrNoKeyframe) {
				continue // a live input joined mid-GOP: wait for a keyframe
			}
			return n, err
		}
		n++
	}
}
