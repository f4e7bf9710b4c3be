package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// GStreamer's webrtcbin is the second WebRTC stack of the tests: its ICE is
// libnice, which never offers loopback candidates and pins each socket to its
// interface, so a libnice peer reaches a gateway only through an interface
// address. The test owns one: it makes a network namespace with a veth pair
// (10.77.0.1 and 10.77.0.2, visible only inside it) and runs itself again in
// there — sluice dev with its defaults, the webrtcbin publisher and the pion
// viewer — so no address of the machine is touched.

const (
	webrtcbinScript = "testdata/webrtcbin/whip_publish.py"
	netnsEnv        = "SLUICE_TEST_NETNS" // set in the run inside the namespace
)

// needWebRTCBin says why the webrtcbin test cannot run, if it cannot: skipped
// locally, failed under SLUICE_REQUIRE_WEBRTCBIN (.ci/run installs the packages).
func needWebRTCBin(t *testing.T, codec string) {
	t.Helper()
	const pkgs = "apt-get install -y iproute2 python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice"
	why := ""
	elems := "webrtcbin nicesrc vp8enc opusenc rtpvp8pay rtpopuspay videotestsrc audiotestsrc"
	if codec == "h264" {
		elems += " x264enc|openh264enc h264parse rtph264pay"
	}
	probe := `import sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
miss = [e for e in sys.argv[1:] if not any(Gst.ElementFactory.find(x) for x in e.split("|"))]
print(" ".join(miss)); sys.exit(1 if miss else 0)`
	switch {
	case os.Geteuid() != 0:
		why = "it must run as root (it makes a network namespace)"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			why = "no ip command (iproute2)"
		} else if out, err := exec.Command("/usr/bin/python3", append([]string{"-c", probe}, strings.Fields(elems)...)...).CombinedOutput(); err != nil {
			why = fmt.Sprintf("python3 with GStreamer lacks %s", strings.TrimSpace(lastLine(string(out))))
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("SLUICE_REQUIRE_WEBRTCBIN") != "" {
		t.Fatalf("SLUICE_REQUIRE_WEBRTCBIN is set but the webrtcbin test cannot run: %s (%s)", why, pkgs)
	}
	t.Skipf("SKIPPED: the webrtcbin test cannot run: %s (%s); .ci/run installs them and requires the test", why, pkgs)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// inNetns runs the calling test again inside a fresh network namespace and
// reports whether the caller is that inner run (true: go on with the test).
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return true
	}
	ns := fmt.Sprintf("sluice-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() }) // takes the veth pair with it
	run("-n", ns, "link", "set", "lo", "up")
	run("-n", ns, "link", "add", "sl0", "type", "veth", "peer", "name", "sl1")
	run("-n", ns, "addr", "add", "10.77.0.1/24", "dev", "sl0")
	run("-n", ns, "addr", "add", "10.77.0.2/24", "dev", "sl1")
	run("-n", ns, "link", "set", "sl0", "up")
	run("-n", ns, "link", "set", "sl1", "up")

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.timeout", "5m")
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	t.Logf("inside network namespace %s:\n%s", ns, out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the test failed inside the network namespace: %v", err)
	}
	return false
}

// gstPublisher is the webrtcbin WHIP publisher script as a child process.
type gstPublisher struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	out   strings.Builder
}

func startGstPublisher(t *testing.T, url, codec string) *gstPublisher {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", webrtcbinScript, url, codec)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	p := &gstPublisher{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 256)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_, _ = io.WriteString(stdin, "quit\n")
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("output of the webrtcbin publisher:\n%s", p.out.String())
			p.mu.Unlock()
		}
	})
	return p
}

// await waits for a line matching re; a line saying the session failed ends the test.
func (p *gstPublisher) await(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("the webrtcbin publisher exited before printing %q", re)
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
			if strings.HasPrefix(l, "error") || l == "ice failed" || l == "pc failed" || strings.HasPrefix(l, "answer ") && !strings.HasPrefix(l, "answer 201") {
				p.t.Fatalf("webrtcbin publisher: %s", l)
			}
		case <-deadline:
			p.t.Fatalf("the webrtcbin publisher did not print %q within %s", re, timeout)
		}
	}
}

var countRE = regexp.MustCompile(`^(?:count|paused) video=(\d+) audio=(\d+)$`)

// counts asks the publisher for the frames it has sent (cmd "count"), or
// stops its media and asks for the final counts (cmd "pause").
func (p *gstPublisher) counts(cmd string) (video, audio int) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		p.t.Fatal(err)
	}
	m := p.await(countRE, 10*time.Second)
	v, _ := strconv.Atoi(m[1])
	a, _ := strconv.Atoi(m[2])
	return v, a
}

// publishWithWebRTCBin runs sluice dev (with its defaults, or devArgs), publishes to it from
// webrtcbin with codec, plays the stream with a pion WHEP viewer, and checks
// that the viewer received at least 95% of the video frames and audio packets
// webrtcbin sent while it watched. It returns the viewer's video frames.
func publishWithWebRTCBin(t *testing.T, codec string, devArgs ...string) (view *mediatest.Viewer, frames [][]byte) {
	_, base := startDev(t, devArgs...)
	stream := "gst-" + codec
	pub := startGstPublisher(t, base+"/whip/"+stream, codec)
	pub.await(regexp.MustCompile(`^answer 201 /whip/`+stream+`/`), 20*time.Second)
	pub.await(regexp.MustCompile(`^pc connected$`), 20*time.Second)

	ctx := ctxT(t, 60*time.Second)
	api, err := mediatest.API()
	if err != nil {
		t.Fatal(err)
	}
	// A viewer gets the tracks the gateway has heard of when it joins (after
	// waiting a moment for the rest): on a loaded machine webrtcbin's first
	// audio packet can come late, so a viewer that got one track plays again.
	for try := 1; ; try++ {
		view = playBoth(t, ctx, api, base, stream)
		if view != nil {
			break
		}
		if try == 3 {
			t.Fatal("three WHEP viewers in a row got only one of webrtcbin's two tracks")
		}
	}
	t.Cleanup(func() { _ = view.Close() })
	time.Sleep(time.Second) // the viewer's first keyframe

	v0, a0 := view.Frames()
	sentV0, sentA0 := pub.counts("count")
	time.Sleep(3 * time.Second)
	sentV1, sentA1 := pub.counts("pause")
	time.Sleep(time.Second) // the last frames in flight
	v1, a1 := view.Frames()

	for _, c := range []struct {
		kind       string
		sent, got  int
		everBefore int
	}{{"video", sentV1 - sentV0, len(v1) - len(v0), len(v0)}, {"audio", sentA1 - sentA0, len(a1) - len(a0), len(a0)}} {
		t.Logf("%s: webrtcbin sent %d while the viewer watched, the viewer got %d (and %d before)", c.kind, c.sent, c.got, c.everBefore)
		if c.sent < 30 {
			t.Fatalf("%s: webrtcbin sent only %d frames in 3 s", c.kind, c.sent)
		}
		if c.got < c.sent*95/100 {
			t.Errorf("%s: the viewer got %d of the %d frames webrtcbin sent, want at least 95%%", c.kind, c.got, c.sent)
		}
	}
	return view, v1[len(v0):]
}

// playBoth plays stream and waits for its audio and video to arrive; it
// returns nil, with the viewer closed, if only one did within 5 s.
func playBoth(t *testing.T, ctx context.Context, api *webrtc.API, base, stream string) *mediatest.Viewer {
	t.Helper()
	var view *mediatest.Viewer
	var err error
	view, err = playWhenLive(ctx, api, base, stream, 15*time.Second)
	if err != nil {
		t.Fatalf("WHEP play: %v", err)
	}
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(view.Codecs()) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Logf("the viewer got only %v; playing again", view.Codecs())
			_ = view.Close()
			return nil
		}
	}
	return view
}

// TestWebRTCBinPublishesVP8AndOpusToDevWithItsDefaultsAndAPionViewerGetsTheFrames
// is a libnice WHIP client on the same machine as sluice dev: it must complete
// ICE with dev's defaults, and a WHEP viewer must get its 320×240 VP8 picture
// and its Opus audio.
func TestWebRTCBinPublishesVP8AndOpusToDevWithItsDefaultsAndAPionViewerGetsTheFrames(t *testing.T) {
	needWebRTCBin(t, "vp8")
	if !inNetns(t) {
		return
	}
	view, frames := publishWithWebRTCBin(t, "vp8")
	if got := view.Codecs(); !hasCodec(got, "video/VP8") || !hasCodec(got, "audio/opus") {
		t.Fatalf("viewer tracks %v, want VP8 and Opus", got)
	}
	keys := 0
	for _, f := range frames {
		w, h, ok := vp8KeyframeSize(f)
		if !ok {
			continue
		}
		keys++
		if w != 320 || h != 240 {
			t.Fatalf("a VP8 keyframe at the viewer is %dx%d, want webrtcbin's 320x240", w, h)
		}
	}
	if keys == 0 {
		t.Fatal("the viewer got no VP8 keyframe in 3 s (webrtcbin sends one a second)")
	}
}

// TestWebRTCBinPublishesToAGatewayBoundOnEveryInterface is the production
// setting, iceBind 0.0.0.0: one port on every interface address, no loopback
// candidate, and webrtcbin and a pion viewer both connect through the
// namespace's interfaces.
func TestWebRTCBinPublishesToAGatewayBoundOnEveryInterface(t *testing.T) {
	needWebRTCBin(t, "vp8")
	if !inNetns(t) {
		return
	}
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("gateway:\n  iceBind: 0.0.0.0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	view, _ := publishWithWebRTCBin(t, "vp8", "--config", cfg)
	if sdp := view.PC.RemoteDescription().SDP; strings.Contains(sdp, " 127.0.0.1 ") || !strings.Contains(sdp, " 10.77.0.") {
		t.Fatalf("the gateway's answer offers %q; want the namespace's interface addresses and no loopback", candRE.FindAllString(sdp, -1))
	}
}

// TestWebRTCBinPublishesH264AndOpusAndAViewerGetsH264Frames publishes H.264
// as encoders write it (x264 or openh264, constrained baseline,
// profile-level-id 42c0xx), and a WHEP viewer must get H.264 access units of
// the 320×240 picture.
func TestWebRTCBinPublishesH264AndOpusAndAViewerGetsH264Frames(t *testing.T) {
	needWebRTCBin(t, "h264")
	if !inNetns(t) {
		return
	}
	view, frames := publishWithWebRTCBin(t, "h264")
	if got := view.Codecs(); !hasCodec(got, "video/H264") {
		t.Fatalf("viewer tracks %v, want H.264", got)
	}
	idr := 0
	for _, f := range frames {
		sps, hasIDR := h264Parts(f)
		if !hasIDR {
			continue
		}
		idr++
		w, h, err := spsSize(sps)
		if err != nil || w != 320 || h != 240 {
			t.Fatalf("an H.264 IDR access unit at the viewer has picture %dx%d (%v), want webrtcbin's 320x240", w, h, err)
		}
	}
	if idr == 0 {
		t.Fatal("the viewer got no H.264 IDR access unit with its SPS in 3 s (webrtcbin sends one a second)")
	}
}

func hasCodec(got []string, want string) bool {
	for _, g := range got {
		if strings.EqualFold(g, want) {
			return true
		}
	}
	return false
}

// vp8KeyframeSize reads a VP8 keyframe's picture size (RFC 6386 §9.1).
func vp8KeyframeSize(f []byte) (w, h int, ok bool) {
	if len(f) < 10 || f[0]&1 != 0 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, false
	}
	return int(f[6]) | int(f[7]&0x3f)<<8, int(f[8]) | int(f[9]&0x3f)<<8, true
}

// h264Parts splits an Annex B access unit and returns its SPS and whether it
// holds an IDR slice.
func h264Parts(au []byte) (sps []byte, idr bool) {
	for _, nal := range bytes.Split(au, []byte{0, 0, 1}) {
		nal = bytes.TrimRight(nal, "\x00")
		if len(nal) == 0 {
			continue
		}
		switch nal[0] & 0x1f {
		case 5:
			idr = true
		case 7:
			sps = nal
		}
	}
	return sps, idr && sps != nil
}

// spsSize reads the picture size of a baseline or main profile SPS
// (ITU-T H.264 §7.3.2.1.1), frame-cropping included.
func spsSize(nal []byte) (w, h int, err error) {
	rbsp := bytes.ReplaceAll(nal[1:], []byte{0, 0, 3}, []byte{0, 0})
	r := &bitReader{b: rbsp}
	profile := r.bits(8)
	r.bits(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	if profile != 66 && profile != 77 && profile != 88 {
		return 0, 0, fmt.Errorf("profile_idc %d: only baseline, main and extended are read here", profile)
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue()
	case 1:
		r.bits(1)
		r.se()
		r.se()
		for n := r.ue(); n > 0; n-- {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.bits(1) // gaps_in_frame_num_value_allowed_flag
	mbW := r.ue() + 1
	mapH := r.ue() + 1
	frameMBsOnly := r.bits(1)
	if frameMBsOnly == 0 {
		r.bits(1) // mb_adaptive_frame_field_flag
	}
	r.bits(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb int
	if r.bits(1) == 1 {
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil {
		return 0, 0, r.err
	}
	h = (2 - frameMBsOnly) * mapH * 16
	return mbW*16 - 2*(cl+cr), h - 2*(2-frameMBsOnly)*(ct+cb), nil
}

type bitReader struct {
	b   []byte
	pos int
	err error
}

func (r *bitReader) bits(n int) int {
	v := 0
	for range n {
		if r.pos >= len(r.b)*8 {
			r.err = io.ErrUnexpectedEOF
			return 0
		}
		v = v<<1 | int(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) ue() int {
	zeros := 0
	for r.bits(1) == 0 && r.err == nil && zeros < 32 {
		zeros++
	}
	return 1<<zeros - 1 + r.bits(zeros)
}

func (r *bitReader) se() int {
	v := r.ue()
	if v%2 == 1 {
		return (v + 1) / 2
	}
	return -v / 2
}
