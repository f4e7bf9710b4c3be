package main

import (
	"bytes"
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
)

// `sluice push` of the VP8 and Opus files in testdata/, looped, through the
// real binaries (`sluice dev` and `sluice push`; --url only because the test's
// MoQ port is a free one, not the default): a WHEP viewer that joined during the
// first pass gets at least 95% of the second pass's frames, in order and byte
// for byte.
func TestSluicePushOfTheTestFilesReachesAWHEPViewerFrameForFrame(t *testing.T) {
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--moq", moqAddr)
	video, audio := knownMedia(t)
	const stream = "push-e2e"
	pusher := start(t, "push", "--stream", stream, "--url", "moqt://"+moqAddr,
		"--video", "../../testdata/video.ivf", "--audio", "../../testdata/audio.ogg", "--loop")
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	var view *mediatest.Viewer
	var err error
	view, err = playWhenLive(ctx, api, base, stream, 4*time.Second)
	if err != nil {
		t.Fatalf("WHEP play of the pushed stream: %v", err)
	}
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	// One pass of the files lasts 5 s: the second has begun by 5 s after the
	// push started and is over by 10 s. Stop in the third.
	time.Sleep(time.Until(joined.Add(11 * time.Second)))
	_ = pusher.cmd.Process.Signal(syscall.SIGINT)
	pusher.waitLine(regexp.MustCompile(`sluice push: `+stream+`: \d+ video frames`), 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	gotV, gotA := view.Frames()
	for _, c := range []struct {
		kind      string
		want, got [][]byte
	}{{"video", video, gotV}, {"audio", audio, gotA}} {
		n, err := secondPass(c.want, c.got)
		if err != nil {
			t.Errorf("%s: %v", c.kind, err)
		}
		if need := len(c.want) * 95 / 100; n < need {
			t.Errorf("%s: %d of the second pass's %d frames arrived in order, want at least %d (95%%)", c.kind, n, len(c.want), need)
		}
		t.Logf("%s: %d of the second pass's %d frames arrived in order, byte for byte (%d received in all)", c.kind, n, len(c.want), len(c.got))
	}
}

// secondPass matches got against three passes of want, in order and byte for
// byte (a received frame never sent, or out of order, is an error), and counts
// the received frames that belong to the second pass.
func secondPass(want, got [][]byte) (int, error) {
	n, next := 0, 0
	for j, g := range got {
		i := next
		for i < 3*len(want) && !bytes.Equal(want[i%len(want)], g) {
			i++
		}
		if i == 3*len(want) {
			return n, fmt.Errorf("received frame %d (%d bytes) does not follow the frames before it in three passes of the files", j, len(g))
		}
		if i >= len(want) && i < 2*len(want) {
			n++
		}
		next = i + 1
	}
	return n, nil
}
