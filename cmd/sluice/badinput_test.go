package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// goroutines reads the dev process's goroutine count from its metrics.
func goroutines(t *testing.T, base string) int {
	t.Helper()
	_, body := get(t, base+"/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

func post(t *testing.T, url, ctype, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp, b.String()
}

var problemType = regexp.MustCompile(`"type":\s*"https://sluice.dev/problems/([a-z-]+)"`)

// TestBadInputGetsAPreciseErrorAndLeavesTheLiveStreamRunning sends every kind of
// bad request to a gateway carrying a live stream, checks each answer, and then
// checks that the stream still plays and that nothing was left behind.
func TestBadInputGetsAPreciseErrorAndLeavesTheLiveStreamRunning(t *testing.T) {
	p, base := startDev(t)
	ctx := ctxT(t, 90*time.Second)
	api, _ := mediatest.API()
	video, audio := knownMedia(t)

	pub, err := mediatest.Publish(ctx, api, base, "live")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	go func() {
		for sendCtx.Err() == nil {
			_ = pub.Send(sendCtx, video, audio)
		}
	}()
	time.Sleep(time.Second)
	nodesBefore := len(children(p.cmd.Process.Pid))
	goBefore := goroutines(t, base)

	goodOffer := func() string {
		pc, _ := api.NewPeerConnection(webrtc.Configuration{})
		defer pc.Close()
		return offerSDP(t, pc, true)
	}()

	cases := []struct {
		name, path, ctype, body string
		status                  int
		kind                    string
	}{
		{"malformed SDP", "/whip/fresh", "application/sdp", "v=0\r\nthis is not sdp\r\n", 400, "bad-sdp"},
		{"stream id outside the allowed set", "/whip/bad%20id", "application/sdp", goodOffer, 400, "bad-stream-id"},
		{"stream id too long", "/whip/" + strings.Repeat("x", 129), "application/sdp", goodOffer, 400, "bad-stream-id"},
		{"offer over 64 KiB", "/whip/fresh", "application/sdp", goodOffer + strings.Repeat("a=x-pad:"+strings.Repeat("p", 100)+"\r\n", 700), 413, "body-too-large"},
		{"wrong content type", "/whip/fresh", "application/json", `{"sdp":"v=0"}`, 415, "unsupported-media-type"},
		{"second publisher", "/whip/live", "application/sdp", goodOffer, 409, "stream-busy"},
		{"play a stream that is not live", "/whep/nothing-here", "application/sdp", recvOffer(t, api), 404, "stream-not-live"},
	}
	for _, c := range cases {
		resp, body := post(t, base+c.path, c.ctype, c.body)
		m := problemType.FindStringSubmatch(body)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" || m == nil || m[1] != c.kind {
			t.Errorf("%s: got %d %s %s; want %d problem %q", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.kind)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, base+"/whip/live/0123456789abcdef01234567", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("DELETE of an unknown session: %d, want 404", resp.StatusCode)
	}

	// The live stream still plays.
	view, err := mediatest.Play(ctx, api, base, "live")
	if err != nil {
		t.Fatalf("the live stream no longer plays after the bad requests: %v", err)
	}
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, _ := view.Frames()
		if len(v) > 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewer received %d video frames of the live stream", len(v))
		}
		time.Sleep(100 * time.Millisecond)
	}
	view.Close()

	// Nothing was left behind: no extra node process, no goroutine growth once
	// the viewer is gone. The ICE port is one for all sessions, so no UDP port
	// can be left open by a session.
	if n := len(children(p.cmd.Process.Pid)); n != nodesBefore {
		t.Errorf("node processes: %d before the bad requests, %d after", nodesBefore, n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		n := goroutines(t, base)
		if n <= goBefore+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines: %d before the bad requests, %d after", goBefore, n)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, body := get(t, base+"/v1/streams/live")
	var sv struct{ Stream string }
	if code != 200 || json.Unmarshal([]byte(body), &sv) != nil || sv.Stream != "live" {
		t.Errorf("the live stream is gone from the API: %d %s", code, body)
	}
}
