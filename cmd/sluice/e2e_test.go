package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// knownMedia loads the VP8 and Opus sequences from testdata.
func knownMedia(t *testing.T) (video, audio [][]byte) {
	t.Helper()
	video, err := mediatest.LoadIVF("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	audio, err = mediatest.LoadOgg("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	if len(video) < 100 || len(audio) < 200 {
		t.Fatalf("testdata too short: %d video frames, %d audio packets", len(video), len(audio))
	}
	return video, audio
}

// publishAndWatch publishes the known sequence to stream on the gateway at pubBase,
// plays it from viewBase, and asserts that at least 95% of the video frames and
// audio packets arrive, in order and byte for byte.
func publishAndWatch(t *testing.T, pubBase, viewBase, stream string) {
	t.Helper()
	video, audio := knownMedia(t)
	ctx := ctxT(t, 60*time.Second)
	api, err := mediatest.API()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := mediatest.Publish(ctx, api, pubBase, stream)
	if err != nil {
		t.Fatalf("WHIP publish: %v", err)
	}
	defer pub.Close()
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	// The stream's tracks become known to the gateway with their first packets:
	// keep sending the first video frame and audio packet until the viewer is in,
	// then send the rest — the sequence the viewer must receive.
	stopWarm := keepWarm(ctx, pub, video, audio)
	var view *mediatest.Viewer
	view, err = playWhenLive(ctx, api, viewBase, stream, 15*time.Second)
	stopWarm()
	if err != nil {
		t.Fatalf("WHEP play: %v", err)
	}
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let DTLS-SRTP settle on both legs
	if err := pub.Send(ctx, video[1:], audio[1:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the last packets in flight

	gotV, gotA := view.Frames()
	checkFrames(t, "", video, audio, gotV, gotA)
}

// checkFrames asserts that a viewer got at least 95% of the sequence after its
// first frame (video[1:], audio[1:]), in order and byte for byte. A warm-up
// frame (the first) may reach the viewer as it connects; it is not part of the
// sequence under test.
func checkFrames(t *testing.T, label string, video, audio, gotV, gotA [][]byte) {
	t.Helper()
	for len(gotV) > 0 && bytes.Equal(gotV[0], video[0]) {
		gotV = gotV[1:]
	}
	for len(gotA) > 0 && bytes.Equal(gotA[0], audio[0]) {
		gotA = gotA[1:]
	}
	for _, c := range []struct {
		kind      string
		want, got [][]byte
	}{{"video", video[1:], gotV}, {"audio", audio[1:], gotA}} {
		n, err := mediatest.Match(c.want, c.got)
		if err != nil {
			t.Errorf("%s%s: %v", label, c.kind, err)
		}
		if need := len(c.want) * 95 / 100; n < need {
			t.Errorf("%s%s: %d of %d sent frames arrived in order, want at least %d (95%%)", label, c.kind, n, len(c.want), need)
		}
		t.Logf("%s%s: %d of %d frames arrived in order, byte for byte", label, c.kind, n, len(c.want))
	}
}

func TestDevRelaysAKnownVP8AndOpusSequenceFromWHIPToWHEPThroughANodeProcess(t *testing.T) {
	p, base := startDev(t)
	publishAndWatch(t, base, base, "e2e-dev")
	// The media crossed a node child process of the dev process.
	if kids := children(p.cmd.Process.Pid); len(kids) == 0 {
		t.Fatal("sluice dev has no node child process after relaying a stream")
	}
}

func TestStreamsAPIShowsALiveStreamWithItsPlacement(t *testing.T) {
	_, base := startDev(t)
	ctx := ctxT(t, 30*time.Second)
	api, _ := mediatest.API()
	video, audio := knownMedia(t)
	pub, err := mediatest.Publish(ctx, api, base, "api-check")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	go pub.Send(ctx, video, audio) //nolint:errcheck // stops with ctx
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, base+"/v1/streams/api-check")
		var v struct {
			Stream    string  `json:"stream"`
			Agent     string  `json:"agent"`
			Node      string  `json:"node"`
			Bitrate   float64 `json:"bitrateBps"`
			Publisher *struct {
				Packets uint64 `json:"packets"`
			} `json:"publisher"`
		}
		_ = json.Unmarshal([]byte(body), &v)
		if code == 200 && v.Agent == "dev" && v.Node != "" && v.Publisher != nil && v.Publisher.Packets > 0 && v.Bitrate > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/streams/api-check = %d %s; want agent dev, a node, packets and a bitrate", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, body := get(t, base+"/v1/streams")
	if code != 200 || !strings.Contains(body, `"api-check"`) {
		t.Fatalf("GET /v1/streams = %d %s", code, body)
	}
	code, body = get(t, base+"/v1/cluster")
	if code != 200 || !strings.Contains(body, `"status": "alive"`) || !strings.Contains(body, "gateway,agent") {
		t.Fatalf("GET /v1/cluster = %d %s", code, body)
	}
	code, body = get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `sluice_gateway_rtp_packets_total{dir="in"}`) {
		t.Fatalf("GET /metrics = %d, missing packet counters", code)
	}
}
