package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// liveStream publishes the known sequence in a loop and plays it, returning the
// viewer once it receives video.
func liveStream(t *testing.T, ctx context.Context, base, stream string) *mediatest.Viewer {
	t.Helper()
	api, _ := mediatest.API()
	video, audio := knownMedia(t)
	pub, err := mediatest.Publish(ctx, api, base, stream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			_ = pub.Send(ctx, video, audio)
		}
	}()
	var view *mediatest.Viewer
	view, err = playWhenLive(ctx, api, base, stream, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Close() })
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, view, 10, 10*time.Second)
	return view
}

// waitPackets waits until the viewer has received n more RTP packets.
func waitPackets(t *testing.T, v *mediatest.Viewer, n int64, limit time.Duration) {
	t.Helper()
	start := time.Now()
	before := v.Packets()
	for time.Since(start) < limit {
		if v.Packets() >= before+n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("viewer received fewer than %d new RTP packets within %s", n, limit)
}

// waitFrames waits until the viewer has received n more video frames and says how long it took.
func waitFrames(t *testing.T, v *mediatest.Viewer, n int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	before, _ := v.Frames()
	for time.Since(start) < limit {
		now, _ := v.Frames()
		if len(now) >= len(before)+n {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("viewer received fewer than %d new video frames within %s", n, limit)
	return 0
}

func TestAKilledNodeIsReplacedAndTheViewerReceivesMediaAgainWithin2s(t *testing.T) {
	p, base := startDev(t)
	ctx := ctxT(t, 60*time.Second)
	view := liveStream(t, ctx, base, "survivor")

	nodes := children(p.cmd.Process.Pid)
	if len(nodes) == 0 {
		t.Fatal("no node process")
	}
	// Kill every node: the one carrying the stream is among them.
	for _, pid := range nodes {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killed := time.Now()
	// Packets already in flight from the dead node arrive within milliseconds;
	// after 100 ms whatever the viewer receives came through the replacement.
	time.Sleep(100 * time.Millisecond)
	waitPackets(t, view, 20, 10*time.Second)
	gap := time.Since(killed)
	t.Logf("media again %s after SIGKILL", gap)
	if gap > 2*time.Second {
		t.Fatalf("the viewer waited %s for media after its node was killed; want ≤ 2s", gap)
	}
	if st := view.PC.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("the viewer's WebRTC session is %s; it should have survived the node's death", st)
	}
	// A new node carries the stream now.
	for _, pid := range children(p.cmd.Process.Pid) {
		for _, old := range nodes {
			if pid == old {
				t.Fatalf("node %d is still there after SIGKILL", pid)
			}
		}
	}
}
