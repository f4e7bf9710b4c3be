package main

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/webrtc/v4"
)

// stunListener records the STUN methods (Binding 0x001, TURN Allocate 0x003)
// of the requests that reach a loopback UDP socket. It answers nothing: that
// a client sent to it is what the test asks.
type stunListener struct {
	conn    net.PacketConn
	mu      sync.Mutex
	methods map[uint16]int
}

func listenSTUN(t *testing.T) *stunListener {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &stunListener{conn: c, methods: map[uint16]int{}}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return // closed by the cleanup
			}
			// A STUN request: top bits 00, class bits C1 C0 = 00, the magic
			// cookie (RFC 8489 §5); the method's 12 bits are spread around them.
			typ := binary.BigEndian.Uint16(buf[0:2])
			if n >= 20 && typ&0xc110 == 0 && binary.BigEndian.Uint32(buf[4:8]) == 0x2112A442 {
				l.mu.Lock()
				l.methods[typ&0x000f|typ>>1&0x0070|typ>>2&0x0f80]++
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *stunListener) addr() string { return l.conn.LocalAddr().String() }

func (l *stunListener) got(method uint16) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.methods[method]
}

// TestICEServersAreNamedInLinkHeadersAndUsedByThePage configures a STUN and a
// TURN server (gateway.iceServers): OPTIONS and the 201 of a WHIP offer name
// both in Link headers (RFC 9725 §4.6), the page at / gathers through them —
// its STUN binding request and TURN allocation reach the servers — and the
// credential appears in no log line.
func TestICEServersAreNamedInLinkHeadersAndUsedByThePage(t *testing.T) {
	bin := chromium(t)
	stun, turn := listenSTUN(t), listenSTUN(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	const secret = "s3cret-turn-credential"
	yaml := "gateway:\n  iceServers:\n    - urls: stun:" + stun.addr() + "\n" +
		"    - urls: [\"turn:" + turn.addr() + "?transport=udp\"]\n      username: alice\n      credential: " + secret + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, base := startDev(t, "--config", cfg)
	want := []string{
		"<stun:" + stun.addr() + `>; rel="ice-server"`,
		"<turn:" + turn.addr() + `?transport=udp>; rel="ice-server"; username="alice"; credential="` + secret + `"; credential-type="password"`,
	}
	req, _ := http.NewRequest(http.MethodOptions, base+"/whip/linked", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Link"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("OPTIONS Link headers %q, want %q", got, want)
	}
	api, _ := mediatestAPI()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	resp, body := post(t, base+"/whip/linked", "application/sdp", offerSDP(t, pc, true))
	if got := resp.Header.Values("Link"); resp.StatusCode != http.StatusCreated || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("POST 201: %d, Link headers %q, want %q (%s)", resp.StatusCode, got, want, body)
	}

	tab := chromiumTab(t, bin)
	if err := chromedp.Do(tab,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#publish"),
		chromedp.SetValue("#stream", "linked-cam"),
		chromedp.Click("#publish"),
	); err != nil {
		t.Fatal(err)
	}
	const binding, allocate = 0x001, 0x003
	for deadline := time.Now().Add(20 * time.Second); stun.got(binding) == 0 || turn.got(allocate) == 0; {
		if time.Now().After(deadline) {
			cfgJSON, _ := chromedp.Run(tab, chromedp.Evaluate[string](`JSON.stringify(sessions.publish && sessions.publish.pc.getConfiguration().iceServers)`))
			t.Fatalf("the page's STUN binding requests %d, TURN allocations %d; want both (its iceServers: %s)", stun.got(binding), turn.got(allocate), cfgJSON)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.mu.Lock()
	logs := p.out.String()
	p.mu.Unlock()
	if strings.Contains(logs, secret) {
		t.Error("the TURN credential appears in sluice's log")
	}
}

// chromiumTab starts headless Chromium with the flags RECIPES.md lists (fake
// camera, loopback candidates) and returns a tab, closed with the test.
func chromiumTab(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromiumOptions(t, bin, true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true), chromedp.Flag("allow-loopback-in-peer-connection", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	return tab
}
