package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// patchFrag sends a PATCH with an application/trickle-ice-sdpfrag body to a
// WHIP or WHEP resource and returns the response and its body.
func patchFrag(t *testing.T, s *mediatest.Session, base, ifMatch, frag string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, base+s.Location, strings.NewReader(frag))
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	ufragRE = regexp.MustCompile(`(?m)^a=ice-ufrag:(\S+)\r?$`)
	pwdRE   = regexp.MustCompile(`(?m)^a=ice-pwd:(\S+)\r?$`)
	candRE  = regexp.MustCompile(`(?m)^a=candidate:.*\r?$`)
	midRE   = regexp.MustCompile(`(?m)^a=mid:(\S+)\r?$`)
)

// restartICE restarts ICE on a client's peer connection through PATCH (RFC
// 9725 §4.3.2): a new offer with ICERestart, its credentials and candidates in
// a fragment with If-Match: *, and the server's 200 fragment applied as the
// new answer. It returns the server's new ufrag and the response's ETag.
func restartICE(t *testing.T, ctx context.Context, s *mediatest.Session, base string) (ufrag, etag string) {
	t.Helper()
	pc := s.PC
	oldUfrag := ufragRE.FindStringSubmatch(pc.RemoteDescription().SDP)[1]
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	local := pc.LocalDescription().SDP
	frag := "a=ice-ufrag:" + ufragRE.FindStringSubmatch(local)[1] + "\r\na=ice-pwd:" + pwdRE.FindStringSubmatch(local)[1] +
		"\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + midRE.FindStringSubmatch(local)[1] + "\r\n"
	for _, c := range candRE.FindAllString(local, -1) {
		frag += strings.TrimRight(c, "\r") + "\r\n"
	}
	resp, body := patchFrag(t, s, base, "*", frag+"a=end-of-candidates\r\n")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("ICE restart PATCH: %d %s %q, want 200 with an sdpfrag", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	m, p := ufragRE.FindStringSubmatch(body), pwdRE.FindStringSubmatch(body)
	cands := candRE.FindAllString(body, -1)
	if m == nil || p == nil || len(cands) == 0 || m[1] == oldUfrag {
		t.Fatalf("ICE restart answer %q: want a new ufrag (was %s), a pwd and candidates", body, oldUfrag)
	}
	// The server's answer, as before, with its new credentials and candidates.
	var answer []string
	for _, line := range strings.Split(strings.TrimSpace(pc.RemoteDescription().SDP), "\r\n") {
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			answer = append(answer, "a=ice-ufrag:"+m[1])
		case strings.HasPrefix(line, "a=ice-pwd:"):
			answer = append(answer, "a=ice-pwd:"+p[1])
		case strings.HasPrefix(line, "a=candidate:"):
		case line == "a=end-of-candidates":
			answer = append(answer, trimAll(cands)...)
			answer = append(answer, line)
		default:
			answer = append(answer, line)
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: strings.Join(answer, "\r\n") + "\r\n"}); err != nil {
		t.Fatalf("applying the restart answer: %v", err)
	}
	return m[1], resp.Header.Get("ETag")
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimRight(s, "\r")
	}
	return out
}

// waitICE waits until pc's ICE connection reaches want.
func waitICE(ctx context.Context, t *testing.T, pc *webrtc.PeerConnection, states <-chan webrtc.ICEConnectionState, want webrtc.ICEConnectionState) {
	t.Helper()
	for {
		select {
		case s := <-states:
			if s == want {
				return
			}
			if s == webrtc.ICEConnectionStateFailed {
				t.Fatalf("ICE failed while waiting for %s", want)
			}
		case <-ctx.Done():
			t.Fatalf("ICE is %s, never reached %s", pc.ICEConnectionState(), want)
		}
	}
}

func iceStates(pc *webrtc.PeerConnection) <-chan webrtc.ICEConnectionState {
	ch := make(chan webrtc.ICEConnectionState, 32)
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		select {
		case ch <- s:
		default:
		}
	})
	return ch
}

// TestICERestartThroughPATCHKeepsTheMediaFlowingToTheViewer restarts ICE on a
// WHIP publisher and then on a WHEP viewer with PATCH (RFC 9725 §4.3.2); each
// time both sides must check again with the new credentials, and a known
// sequence sent afterwards must reach the viewer (95%, in order, byte for
// byte). A trickle PATCH with the current ufrag is 204, a stale If-Match 412,
// and a malformed fragment a 400 problem.
func TestICERestartThroughPATCHKeepsTheMediaFlowingToTheViewer(t *testing.T) {
	_, base := startDev(t)
	video, audio := knownMedia(t)
	ctx := ctxT(t, 90*time.Second)
	api, err := mediatest.API()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := mediatest.Publish(ctx, api, base, "restart")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pubICE := iceStates(pub.PC)
	waitICE(ctx, t, pub.PC, pubICE, webrtc.ICEConnectionStateConnected)
	stopWarm := keepWarm(ctx, pub, video, audio)
	var view *mediatest.Viewer
	view, err = playWhenLive(ctx, api, base, "restart", 15*time.Second)
	if err != nil {
		t.Fatalf("WHEP play: %v", err)
	}
	defer view.Close()
	viewICE := iceStates(view.PC)
	waitICE(ctx, t, view.PC, viewICE, webrtc.ICEConnectionStateConnected)
	stopWarm()

	sendAndCheck := func(label string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // DTLS-SRTP carries on over the new pair
		v0, a0 := view.Frames()
		if err := pub.Send(ctx, video[1:], audio[1:]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		v1, a1 := view.Frames()
		// The sample builders held back the last frame of the sequence before
		// until this one's first packets came.
		gotV, gotA := v1[len(v0):], a1[len(a0):]
		for len(gotV) > 0 && bytes.Equal(gotV[0], video[len(video)-1]) {
			gotV = gotV[1:]
		}
		for len(gotA) > 0 && bytes.Equal(gotA[0], audio[len(audio)-1]) {
			gotA = gotA[1:]
		}
		checkFrames(t, label, video, audio, gotV, gotA)
	}

	pubUfrag, pubTag := restartICE(t, ctx, pub.Session, base)
	waitICE(ctx, t, pub.PC, pubICE, webrtc.ICEConnectionStateChecking)
	waitICE(ctx, t, pub.PC, pubICE, webrtc.ICEConnectionStateConnected)
	sendAndCheck("after the publisher's ICE restart: ")

	viewUfrag, _ := restartICE(t, ctx, view.Session, base)
	waitICE(ctx, t, view.PC, viewICE, webrtc.ICEConnectionStateChecking)
	waitICE(ctx, t, view.PC, viewICE, webrtc.ICEConnectionStateConnected)
	sendAndCheck("after the viewer's ICE restart: ")
	t.Logf("new server ufrags: publisher %s, viewer %s; publisher ETag %s", pubUfrag, viewUfrag, pubTag)

	// The publisher's current ufrag, with its new ETag: a trickle.
	cur := ufragRE.FindStringSubmatch(pub.PC.LocalDescription().SDP)[1]
	resp, body := patchFrag(t, pub.Session, base, pubTag, "a=ice-ufrag:"+cur+"\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("trickle PATCH with the current ufrag: %d %s, want 204", resp.StatusCode, body)
	}
	resp, body = patchFrag(t, pub.Session, base, `"`+strings.Trim(pubTag, `"`)+`x"`, "a=end-of-candidates\r\n")
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PATCH with a stale If-Match: %d %s, want 412", resp.StatusCode, body)
	}
	for _, bad := range []string{"this is no fragment", "a=ice-ufrag:ab\r\na=ice-pwd:x\r\n"} {
		resp, body = patchFrag(t, pub.Session, base, "*", bad)
		var p struct{ Type string }
		_ = json.Unmarshal([]byte(body), &p)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.HasSuffix(p.Type, "/bad-sdpfrag") {
			t.Errorf("PATCH %q: %d %s %s, want a 400 bad-sdpfrag problem", bad, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if pub.PC.ICEConnectionState() != webrtc.ICEConnectionStateConnected {
		t.Errorf("the refused PATCHes left the publisher's ICE %s", pub.PC.ICEConnectionState())
	}
}
