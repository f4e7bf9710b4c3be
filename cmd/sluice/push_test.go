package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/sdk/moqt"
)

func TestPushFlagErrorsExitTwoWithOneLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--video", "x.ivf"}, "--stream is required"},
		{[]string{"--stream", "cam1"}, "nothing to push"},
		{[]string{"--stream", "cam1", "--video", "-", "--audio", "-"}, "only one of --video and --audio"},
		{[]string{"--stream", "cam1", "--video", "-", "--loop"}, "--loop needs files"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "--url", "https://127.0.0.1:4443/"}, "want moqt://host:port"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "--cert-sha256", "ab", "--ca", "ca.pem"}, "not both"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"push"}, c.args...), &stdout, &stderr)
		line := stderr.String()
		if code != 2 || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "sluice push: ") || !strings.Contains(line, c.want) {
			t.Errorf("push %v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, line, c.want)
		}
	}
}

func TestPushReportsAMissingFileAndAFileOfTheWrongKind(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stream", "cam1", "--video", "no-such.ivf"}, "no such file"},
		{[]string{"--stream", "cam1", "--video", "../../testdata/audio.ogg"}, "not an IVF file"},
		{[]string{"--stream", "cam1", "--audio", "../../testdata/video.ivf"}, "not an Ogg Opus file"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"push"}, c.args...), &stdout, &stderr)
		if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("push %v: exit %d, stderr %q; want 1 and one line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}

func TestPushWithNoGatewayOnLoopbackSaysConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--video", "../../testdata/video.ivf", "--url", "moqt://" + addr}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "connection refused") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line saying connection refused", code, stderr.String())
	}
}

func TestPushToAServerWithoutMoQSaysVersionNegotiationFailed(t *testing.T) {
	ln, hash := quicServer(t, "h3") // HTTP/3 only
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--video", "../../testdata/video.ivf",
		"--url", "moqt://" + ln.Addr().String(), "--cert-sha256", hash}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "version negotiation") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line about version negotiation", code, stderr.String())
	}
}

// quicServer listens on loopback with a fresh certificate for alpns and
// returns it with the certificate's hex SHA-256.
func quicServer(t *testing.T, alpns ...string) (*quic.Listener, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: alpns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sum := sha256.Sum256(der)
	return ln, hex.EncodeToString(sum[:])
}

func TestPushThatTheServerRefusesPrintsItsCodeAndReason(t *testing.T) {
	ln, hash := quicServer(t, "moqt-16")
	go func() {
		// A draft 16 server that refuses every announcement.
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		ctrl, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		v := moqt.Draft16
		if _, err := moqt.ReadMessage(ctrl, v, 0); err != nil {
			return
		}
		ctrl.Write((&moqt.ServerSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 10}}}).Append(nil, v))
		m, err := moqt.ReadMessage(ctrl, v, 0)
		if pn, ok := m.(*moqt.PublishNamespace); ok && err == nil {
			ctrl.Write((&moqt.RequestError{RequestID: pn.RequestID, Code: moqt.ReqUnauthorized, Reason: "no publish grant for cam1"}).Append(nil, v))
		}
		<-conn.Context().Done()
	}()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--audio", "../../testdata/audio.ogg",
		"--url", "moqt://" + ln.Addr().String(), "--cert-sha256", hash}, &stdout, &stderr)
	line := stderr.String()
	if code != 1 || strings.Count(line, "\n") != 1 || !strings.Contains(line, "no publish grant for cam1") || !strings.Contains(line, "0x1") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line with the server's reason and code", code, line)
	}
}

func TestTheIVFSourceGivesEveryFrameWithItsTimeAndKeyframesAndLoopsOn(t *testing.T) {
	want, err := mediatest.LoadIVF("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	src, err := openIVF("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if tr := src.Track(); tr.Width != 320 || tr.Height != 240 || tr.Framerate != 30 {
		t.Fatalf("track %+v, want 320x240 at 30 fps", tr)
	}
	for pass := range 2 {
		for i, w := range want {
			f, err := src.Next()
			if err != nil {
				t.Fatalf("pass %d frame %d: %v", pass, i, err)
			}
			n := pass*len(want) + i
			if wantTS := time.Duration(n) * time.Second / 30; (f.ts - wantTS).Abs() > time.Microsecond {
				t.Fatalf("frame %d at %s, want %s", n, f.ts, wantTS)
			}
			if f.key != (i%30 == 0) || !bytes.Equal(f.data, w) {
				t.Fatalf("frame %d: key %v (want %v) or payload differs", n, f.key, i%30 == 0)
			}
		}
		if _, err := src.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, want EOF", err)
		}
		if err := src.Rewind(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheOggSourceGivesEveryOpusPacketTwentyMillisecondsApart(t *testing.T) {
	want, err := mediatest.LoadOgg("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	src, err := openOgg("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if tr := src.Track(); tr.Channels != 1 || tr.SampleRate != 48000 {
		t.Fatalf("track %+v, want mono 48 kHz", tr)
	}
	var prev time.Duration
	for pass := range 2 {
		for i, w := range want {
			f, err := src.Next()
			if err != nil {
				t.Fatalf("pass %d packet %d: %v", pass, i, err)
			}
			if !f.key || !bytes.Equal(f.data, w) {
				t.Fatalf("packet %d differs", i)
			}
			if n := pass*len(want) + i; n > 1 && f.ts-prev != 20*time.Millisecond {
				t.Fatalf("packet %d at %s, %s after the previous, want 20ms", n, f.ts, f.ts-prev)
			}
			prev = f.ts
		}
		if _, err := src.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last packet: %v, want EOF", err)
		}
		if err := src.Rewind(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpusPacketDurationsFromTheTOCByte(t *testing.T) {
	for _, c := range []struct {
		p    []byte
		want int
	}{
		{[]byte{0xfc}, 960},           // CELT 20 ms, one frame
		{[]byte{0x78}, 960},           // hybrid 20 ms (config 15)
		{[]byte{0x11}, 2 * 1920},      // SILK 40 ms, two frames
		{[]byte{0xe3, 0x03}, 3 * 120}, // CELT 2.5 ms, code 3 with three frames
		{nil, 0},
	} {
		if got := opusSamples(c.p); got != c.want {
			t.Errorf("opusSamples(%x) = %d, want %d", c.p, got, c.want)
		}
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// FuzzPushSources feeds arbitrary bytes to the IVF and Ogg readers of
// `sluice push` (its own Ogg packet splitting and Opus timing included): they
// must return frames or an error, never panic or loop.
func FuzzPushSources(f *testing.F) {
	for _, path := range []string{"../../testdata/audio.ogg", "../../testdata/video.ivf"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4096)])
		f.Add(b[:min(len(b), 200)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, open := range []func() (source, error){
			func() (source, error) { return newOggSource("fuzz", nopCloser{bytes.NewReader(b)}) },
			func() (source, error) { return newIVFSource("fuzz", nopCloser{bytes.NewReader(b)}) },
		} {
			src, err := open()
			if err != nil {
				continue
			}
			src.Track()
			for range 10000 {
				if _, err := src.Next(); err != nil {
					break
				}
			}
		}
	})
}

// An IVF frame header that announces more than the limit is refused before any
// buffer of that size is made, and a real file passes through unchanged.
func TestAnIVFFrameOverTheLimitIsRefusedAndARealFilePassesUnchanged(t *testing.T) {
	real, err := os.ReadFile("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, &ivfFrameLimit{r: bytes.NewReader(real), max: maxIVFFrame, next: ivfFileHeaderSize}); err != nil || !bytes.Equal(out.Bytes(), real) {
		t.Fatalf("the real file did not pass through: %v (%d of %d bytes)", err, out.Len(), len(real))
	}
	bad := append([]byte(nil), real[:ivfFileHeaderSize]...)
	bad = append(bad, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0) // a 4 GiB frame
	s, err := newIVFSource("bad.ivf", nopSeekCloser{bytes.NewReader(bad)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a 4 GiB frame header: %v", err)
	}
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }
