package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// moqWebDir is the npm project of the MoQ browser test's page: package.json pins
// @moq/publish and esbuild, `npm ci && npm run build` writes dist/.
const moqWebDir = "testdata/moqweb"

// moqPage returns the directory of the built test page, or says why the MoQ
// browser test cannot run: skipped locally, failed under SLUICE_REQUIRE_BROWSER
// (.ci/run builds the page). A bundle older than its sources fails: it would
// test a page that no longer exists.
func moqPage(t *testing.T) string {
	t.Helper()
	dist := filepath.Join(moqWebDir, "dist")
	bundle, err := os.Stat(filepath.Join(dist, "bundle.js"))
	if err != nil {
		const how = "cd cmd/sluice/" + moqWebDir + " && npm ci && npm run build (npm: apt-get install -y npm)"
		if os.Getenv("SLUICE_REQUIRE_BROWSER") != "" {
			t.Fatalf("SLUICE_REQUIRE_BROWSER is set but the MoQ test page is not built: %s", how)
		}
		t.Skipf("SKIPPED: the MoQ browser test needs its page built: %s; .ci/run builds it and requires the test", how)
	}
	var stale []string
	check := func(path string) {
		if fi, err := os.Stat(path); err == nil && fi.ModTime().After(bundle.ModTime()) {
			stale = append(stale, path)
		}
	}
	check(filepath.Join(moqWebDir, "package.json"))
	check(filepath.Join(moqWebDir, "package-lock.json"))
	_ = filepath.WalkDir(filepath.Join(moqWebDir, "src"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			check(path)
		}
		return nil
	})
	if len(stale) > 0 {
		t.Fatalf("the MoQ test page's bundle is older than %v: rebuild it (cd cmd/sluice/%s && npm ci && npm run build)", stale, moqWebDir)
	}
	return dist
}

// moqAddrRE finds the MoQ endpoint's address in `sluice dev`'s ready message.
var moqAddrRE = regexp.MustCompile(`MoQ\s+moqt://(\S+)`)

// TestChromiumPublishesOverMoQWithMoqDevsElementAndAWHEPViewerGetsH264AndOpus
// is interop with a client no one here wrote: moq-dev's <moq-publish> (npm
// @moq/publish, bundled by esbuild) in headless Chromium publishes its fake
// camera and microphone over WebTransport to `sluice dev`'s MoQ endpoint, and a
// pion WHEP viewer reassembles decodable H.264 access units and Opus frames.
func TestChromiumPublishesOverMoQWithMoqDevsElementAndAWHEPViewerGetsH264AndOpus(t *testing.T) {
	bin := chromium(t)
	page := servePage(t, moqPage(t))
	dev, base := startDev(t, "--moq", "127.0.0.1:0")
	// An http:// URL makes @moq/net fetch /certificate.sha256 from the same
	// host and port and pin the self-signed certificate with it.
	moqURL := "http://" + dev.outputMatch(moqAddrRE, 10*time.Second)[1] + "/"
	// moq-dev's element wants the .hang suffix; the gateway drops it from the
	// stream id (gateway/internal/moq/RATIONALE.md).
	const broadcast, stream = "moq-browser.hang", "moq-browser"

	ctx := ctxT(t, 5*time.Minute)
	pub := openMoqPublish(t, ctx, bin, page, moqURL, broadcast)
	// The machine is slow under load: the page needs 15–45 s to reach media.
	pub.waitConnected(t, 90*time.Second)

	view := watchWhenLive(t, ctx, pub, base, stream, 90*time.Second)
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	got := waitForMedia(t, pub, view, 30, 50, 90*time.Second)
	t.Logf("viewer: %s", got)
}

// servePage serves dir on a loopback port for the test's lifetime and returns
// its URL. It is a different origin from the MoQ endpoint, as a real site's page
// would be.
func servePage(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

// outputMatch finds a line matching re in what p has printed so far, waiting up
// to timeout for it.
func (p *proc) outputMatch(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		m := re.FindStringSubmatch(p.out.String())
		p.mu.Unlock()
		if m != nil {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("sluice did not print %q within %s", re, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moqPublish is the test page in a headless Chromium, publishing.
type moqPublish struct {
	tab context.Context
	mu  sync.Mutex
	log []string // the page's console, to explain a failure
}

// openMoqPublish starts Chromium on the test page with <moq-publish url=moqURL
// name=broadcast>. Its flags are the WHIP browser test's except --disable-quic:
// WebTransport runs over QUIC. The page's console goes to the test log if the
// test fails.
func openMoqPublish(t *testing.T, ctx context.Context, bin, page, moqURL, broadcast string) *moqPublish {
	t.Helper()
	opts := append(chromiumOptions(t, bin, false),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	p := &moqPublish{tab: tab}
	console := chromedp.Console(tab)
	done := make(chan struct{})
	go func() { // ends when the tab's context does (t.Cleanup below)
		defer close(done)
		for m, err := range console {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.log = append(p.log, m.Time.Format("15:04:05.000")+" "+m.String())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the page's console:\n%s", strings.Join(p.console(), "\n"))
		}
		cancelTab()
		cancelAlloc()
		<-done
	})
	q := url.Values{"url": {moqURL}, "name": {broadcast}}
	if err := chromedp.Do(tab, chromedp.Navigate(page+"/index.html?"+q.Encode())); err != nil {
		t.Fatalf("open the MoQ test page: %v", err)
	}
	return p
}

func (p *moqPublish) console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// moqState is what the page's window.moqState() reports of its connection.
type moqState struct {
	Status  string `json:"status"`  // connecting, connected, disconnected
	Version string `json:"version"` // the protocol of the session, once up
}

func (p *moqPublish) state() (moqState, error) {
	js, err := chromedp.Run(p.tab, chromedp.Evaluate[string](`JSON.stringify(window.moqState ? window.moqState() : {status: "no bundle"})`))
	var s moqState
	if err == nil {
		err = json.Unmarshal([]byte(js), &s)
	}
	return s, err
}

// waitConnected waits until the element's MoQ session is up.
func (p *moqPublish) waitConnected(t *testing.T, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	var s moqState
	var err error
	for time.Since(start) < timeout {
		if s, err = p.state(); err == nil && s.Status == "connected" {
			t.Logf("moq-publish connected (%s) after %s", s.Version, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("moq-publish did not connect within %s: state %+v, err %v", timeout, s, err)
}

// streamPublisher is a stream's publisher as GET /v1/streams shows it.
type streamPublisher struct {
	Protocol string `json:"protocol"`
	Packets  uint64 `json:"packets"`
}

// liveOverMoQ reads GET /v1/streams: whether stream is listed, published over
// MoQ with packets flowing, and the body to explain why not.
func liveOverMoQ(base, stream string) (bool, string) {
	resp, err := http.Get(base + "/v1/streams")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	var list struct {
		Streams []struct {
			Stream    string           `json:"stream"`
			Publisher *streamPublisher `json:"publisher"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(body.Bytes(), &list); err != nil {
		return false, fmt.Sprintf("%s: %v", body.String(), err)
	}
	for _, s := range list.Streams {
		if s.Stream == stream && s.Publisher != nil && s.Publisher.Protocol == "moq" && s.Publisher.Packets > 0 {
			return true, body.String()
		}
	}
	return false, body.String()
}

// watchWhenLive waits for stream to be listed in GET /v1/streams as published
// over MoQ with packets flowing, then opens a WHEP viewer on it.
func watchWhenLive(t *testing.T, ctx context.Context, pub *moqPublish, base, stream string, timeout time.Duration) *mediatest.Viewer {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		live, body := liveOverMoQ(base, stream)
		if live {
			break
		}
		if time.Now().After(deadline) {
			s, _ := pub.state()
			t.Fatalf("within %s of connecting, GET /v1/streams never listed %q with protocol moq and packets; last answer %s; page state %+v", timeout, stream, body, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
	api, err := mediatest.API()
	if err != nil {
		t.Fatal(err)
	}
	for {
		view, err := mediatest.Play(ctx, api, base, stream)
		if err == nil {
			return view
		}
		if time.Now().After(deadline) {
			t.Fatalf("WHEP play of %s: %v", stream, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// mediaSeen sums up what a viewer has reassembled.
type mediaSeen struct {
	codecs     []string
	videoAUs   int // H.264 access units holding a coded slice
	badAUs     int // H.264 access units holding none
	afterIDR   int // good access units from the first decodable keyframe on
	opus       int // non-empty Opus frames
	emptyAudio int
}

func (m mediaSeen) String() string {
	return fmt.Sprintf("tracks %v; %d H.264 access units (%d from the first keyframe with SPS and PPS, %d without a slice); %d Opus frames (%d empty)",
		m.codecs, m.videoAUs, m.afterIDR, m.badAUs, m.opus, m.emptyAudio)
}

// seen classifies what view has received so far.
func seen(view *mediatest.Viewer) mediaSeen {
	video, audio := view.Frames()
	m := mediaSeen{codecs: view.Codecs()}
	started := false
	for _, au := range video {
		types := h264NALTypes(au)
		idr := containsAll(types, h264SPS, h264PPS, h264IDR)
		if !containsAny(types, h264NonIDR, h264IDR) {
			m.badAUs++
			continue
		}
		m.videoAUs++
		started = started || idr
		if started {
			m.afterIDR++
		}
	}
	for _, f := range audio {
		if len(f) == 0 {
			m.emptyAudio++
			continue
		}
		m.opus++
	}
	return m
}

// waitForMedia waits until the viewer has an H.264 track and an Opus track, a
// keyframe a decoder can start at (an IDR slice with its SPS and PPS) followed by
// at least wantAUs access units, and at least wantOpus Opus frames; no access
// unit may lack a coded slice and no Opus frame may be empty.
func waitForMedia(t *testing.T, pub *moqPublish, view *mediatest.Viewer, wantAUs, wantOpus int, timeout time.Duration) mediaSeen {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := seen(view)
		if m.badAUs > 0 || m.emptyAudio > 0 {
			t.Fatalf("the viewer reassembled frames no decoder takes: %s", m)
		}
		hasCodecs := containsFold(m.codecs, "video/H264") && containsFold(m.codecs, "audio/opus")
		if hasCodecs && m.afterIDR >= wantAUs && m.opus >= wantOpus {
			return m
		}
		if time.Now().After(deadline) {
			s, _ := pub.state()
			t.Fatalf("within %s the WHEP viewer got %s (%d RTP packets); want video/H264 and audio/opus, %d access units from a keyframe and %d Opus frames; page state %+v",
				timeout, m, view.Packets(), wantAUs, wantOpus, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// H.264 NAL unit types (ITU-T H.264 table 7-1) a decoder needs to start.
const (
	h264NonIDR = 1
	h264IDR    = 5
	h264SPS    = 7
	h264PPS    = 8
)

// h264NALTypes lists the NAL unit types of an Annex B access unit, as pion's
// H.264 depacketizer writes it (a start code before each NAL unit).
func h264NALTypes(au []byte) []byte {
	var types []byte
	for len(au) > 0 {
		i := bytes.Index(au, []byte{0, 0, 1})
		if i < 0 {
			break
		}
		au = au[i+3:]
		if len(au) > 0 {
			types = append(types, au[0]&0x1f)
		}
	}
	return types
}

func containsAny(types []byte, want ...byte) bool {
	for _, w := range want {
		if bytes.IndexByte(types, w) >= 0 {
			return true
		}
	}
	return false
}

func containsAll(types []byte, want ...byte) bool {
	for _, w := range want {
		if bytes.IndexByte(types, w) < 0 {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

// TestH264NALTypesReadsAnnexBAsPionWritesIt pins the check the MoQ browser test
// relies on: a keyframe access unit (SPS, PPS, IDR) and a delta one, with 4- and
// 3-byte start codes, give their NAL unit types, and bytes without a start code
// give none.
func TestH264NALTypesReadsAnnexBAsPionWritesIt(t *testing.T) {
	key := []byte{0, 0, 0, 1, 0x67, 0x64, 0, 0x28, 0, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0x88, 0x84}
	if got := h264NALTypes(key); !bytes.Equal(got, []byte{h264SPS, h264PPS, h264IDR}) {
		t.Fatalf("keyframe: NAL types %v", got)
	}
	if !containsAll(h264NALTypes(key), h264SPS, h264PPS, h264IDR) {
		t.Fatal("keyframe not recognised as decodable")
	}
	delta := []byte{0, 0, 0, 1, 0x41, 0x9a, 0x02}
	if got := h264NALTypes(delta); !bytes.Equal(got, []byte{h264NonIDR}) {
		t.Fatalf("delta: NAL types %v", got)
	}
	if got := h264NALTypes([]byte{0x41, 0x9a, 0x02}); len(got) != 0 {
		t.Fatalf("no start code: NAL types %v", got)
	}
}
