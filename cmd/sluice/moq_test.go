package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/internal/moqtest"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

func vp8OpusCatalog() *hang.Catalog {
	return &hang.Catalog{
		Video: &hang.VideoSection{Renditions: map[string]hang.VideoConfig{"video/hd": {Codec: "vp8", CodedWidth: 640, CodedHeight: 360}}},
		Audio: &hang.AudioSection{Renditions: map[string]hang.AudioConfig{"audio/data": {Codec: "opus", SampleRate: 48000, NumberOfChannels: 2}}},
	}
}

// pushAndWatch announces stream over raw QUIC in v from a MoQ publisher,
// pushes the known VP8 and Opus sequence in real time, and asserts that a WHEP
// viewer gets at least 95% of the frames in order, byte for byte. during runs
// beside the push.
func pushAndWatch(t *testing.T, base, moqAddr string, v moqt.Version, stream string, during func(ctx context.Context)) {
	t.Helper()
	video, audio := knownMedia(t)
	ctx := ctxT(t, 90*time.Second)
	_, hash := get(t, "http://"+moqAddr+"/certificate.sha256")
	cl, err := moqtest.Dial(ctx, moqAddr, v, hash)
	if err != nil {
		t.Fatalf("dial %s: %v", v, err)
	}
	defer cl.Close()
	if err := cl.Announce(ctx, moqt.Namespace{stream + hang.Suffix}, vp8OpusCatalog()); err != nil {
		t.Fatalf("announce: %v", err)
	}
	if err := cl.WaitSubscribed(ctx, hang.CatalogTrack, "video/hd", "audio/data"); err != nil {
		t.Fatal(err)
	}
	vt, at := cl.Track("video/hd"), cl.Track("audio/data")
	// Until the viewer is in, keep sending the first frames, each its own group;
	// the rest is the sequence under test.
	var us uint64
	warm, stopWarm := context.WithCancel(ctx)
	warmed := make(chan struct{})
	go func() {
		defer close(warmed)
		for warm.Err() == nil {
			_ = vt.WriteFrame(warm, true, us, video[0])
			_ = at.WriteFrame(warm, true, us, audio[0])
			us += 100_000
			select {
			case <-warm.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	api, _ := mediatest.API()
	var view *mediatest.Viewer
	view, err = playWhenLive(ctx, api, base, stream, 15*time.Second)
	if err != nil {
		stopWarm()
		t.Fatalf("WHEP play: %v", err)
	}
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // DTLS-SRTP settles; warm-up keyframes keep coming
	stopWarm()
	<-warmed

	if during != nil {
		go during(ctx)
	}
	if err := sendMoQ(ctx, vt, at, us, video[1:], audio[1:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the last packets in flight
	gotV, gotA := view.Frames()
	checkFrames(t, v.String()+" ", video, audio, gotV, gotA)
}

// sendMoQ writes video at 30 fps and audio at 50 packets a second in real
// time, from timestamp at: a VP8 keyframe starts a group, every Opus packet is
// a group.
func sendMoQ(ctx context.Context, vt, at *moqtest.Track, start uint64, video, audio [][]byte) error {
	const vDur, aDur = time.Second / 30, 20 * time.Millisecond
	t0 := time.Now()
	vi, ai := 0, 0
	for vi < len(video) || ai < len(audio) {
		vAt, aAt := time.Duration(vi)*vDur, time.Duration(ai)*aDur
		var err error
		if vi < len(video) && (ai >= len(audio) || vAt <= aAt) {
			mediatest.SleepUntil(ctx, t0.Add(vAt))
			err = vt.WriteFrame(ctx, video[vi][0]&1 == 0, start+uint64(vAt.Microseconds()), video[vi])
			vi++
		} else {
			mediatest.SleepUntil(ctx, t0.Add(aAt))
			err = at.WriteFrame(ctx, true, start+uint64(aAt.Microseconds()), audio[ai])
			ai++
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// A MoQ publisher over raw QUIC, in draft 16 and draft 19, reaches a WHEP
// viewer through `sluice dev` and its node process, and the stream shows in
// /v1/streams as published over moq.
func TestDevRelaysAMoQPushOfTheKnownVP8AndOpusSequenceToWHEP(t *testing.T) {
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--moq", moqAddr)
	for _, v := range []moqt.Version{moqt.Draft16, moqt.Draft19} {
		t.Run(v.String(), func(t *testing.T) {
			stream := fmt.Sprintf("moq-e2e-%d", uint32(v)&0xff)
			checked := make(chan error, 1)
			pushAndWatch(t, base, moqAddr, v, stream, func(context.Context) {
				checked <- streamIsMoQ(t, base, stream)
			})
			if err := <-checked; err != nil {
				t.Error(err)
			}
		})
	}
}

func streamIsMoQ(t *testing.T, base, stream string) error {
	code, body := get(t, base+"/v1/streams/"+stream)
	var sv struct {
		Publisher *struct {
			Protocol string `json:"protocol"`
			Client   string `json:"client"`
			Packets  uint64 `json:"packets"`
		} `json:"publisher"`
	}
	if err := json.Unmarshal([]byte(body), &sv); err != nil || code != 200 || sv.Publisher == nil || sv.Publisher.Protocol != "moq" ||
		sv.Publisher.Client != "127.0.0.1" {
		return fmt.Errorf("GET /v1/streams/%s = %d %s; want a publisher with protocol moq from client 127.0.0.1 (the host, as for WHIP)", stream, code, body)
	}
	return nil
}

// While a MoQ push flows to a viewer, other clients send malformed control
// messages, announce a namespace that is no stream id, and try to publish the
// same stream: each gets its own error, and the push loses nothing.
func TestBadMoQInputEndsOnlyItsSessionWhileAnotherPushFlows(t *testing.T) {
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--moq", moqAddr)
	stream := "moq-steady"
	errs := make(chan error, 1)
	pushAndWatch(t, base, moqAddr, moqt.Draft19, stream, func(ctx context.Context) {
		errs <- badClients(ctx, moqAddr, stream)
	})
	if err := <-errs; err != nil {
		t.Error(err)
	}
	_, metrics := get(t, base+"/metrics")
	for _, series := range []string{`sluice_moq_errors_total{scope="session",code="0x3"}`, `sluice_moq_errors_total{scope="request",code="0x19"}`,
		`sluice_moq_errors_total{scope="request",code="0x20"}`} {
		if !bytes.Contains([]byte(metrics), []byte(series)) {
			t.Errorf("/metrics has no %s", series)
		}
	}
}

func badClients(ctx context.Context, addr, stream string) error {
	time.Sleep(time.Second)
	garbage, err := moqtest.Dial(ctx, addr, moqt.Draft16, "")
	if err != nil {
		return err
	}
	defer garbage.Close()
	if err := garbage.WriteRaw(ctx, []byte{0x3f, 0x00, 0x01, 0xff}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if code, err := garbage.ClosedWith(wait); err != nil || code != uint64(moqt.CodeProtocolViolation) {
		return fmt.Errorf("the malformed session closed with 0x%x (%v), want PROTOCOL_VIOLATION", code, err)
	}
	second, err := moqtest.Dial(ctx, addr, moqt.Draft17, "")
	if err != nil {
		return err
	}
	defer second.Close()
	for _, c := range []struct {
		ns   string
		code moqt.ErrorCode
	}{{stream + hang.Suffix, moqt.ReqDuplicateSubscription}, {"not a stream!", moqt.ReqUninterested}} {
		err := second.Announce(ctx, moqt.Namespace{c.ns}, vp8OpusCatalog())
		var re *moqtest.RequestError
		if !errors.As(err, &re) || re.Code != c.code {
			return fmt.Errorf("announcing %q: %v, want REQUEST_ERROR 0x%x", c.ns, err, uint64(c.code))
		}
	}
	return nil
}

// A MoQ push keeps its QUIC connection when the agent carrying its stream is
// killed: the gateway places the stream on the other agent and the WHEP
// viewer gets media again on the same sessions, neither client reconnecting.
func TestAMoQPushSurvivesTheLossOfItsAgentOnTheSameConnection(t *testing.T) {
	dir := t.TempDir()
	sluiceOK(t, "ca", "init", "--dir", dir)
	for _, n := range []string{"agent-1", "agent-2", "gw-1"} {
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", n, "--host", "127.0.0.1")
	}
	serf := freeport.Loopback(t)
	agents := map[string]*proc{}
	agents["agent-1"] = start(t, "agent", "--tls-dir", dir, "--tls-name", "agent-1", "--bind", serf, "--api", "127.0.0.1:0")
	agents["agent-1"].waitLine(regexp.MustCompile(`sluice agent agent-1 is ready`), 30*time.Second)
	agents["agent-2"] = start(t, "agent", "--tls-dir", dir, "--tls-name", "agent-2", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0", "--join", serf)
	agents["agent-2"].waitLine(regexp.MustCompile(`sluice agent agent-2 is ready`), 30*time.Second)
	moqAddr := freeport.Loopback(t)
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte("gateway:\n  moq:\n    listen: "+moqAddr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := start(t, "gateway", "--config", cfg, "--tls-dir", dir, "--tls-name", "gw-1", "--bind", freeport.Loopback(t), "--join", serf, "--ice-bind", "127.0.0.1",
		"--http", "127.0.0.1:0", "--ice-port", "-1")
	base := gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)[1]
	for deadline := time.Now().Add(15 * time.Second); ; {
		_, body := get(t, base+"/readyz")
		var r struct{ Agents int }
		if json.Unmarshal([]byte(body), &r) == nil && r.Agents == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not see 2 agents: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx := ctxT(t, 90*time.Second)
	video, audio := knownMedia(t)
	cl, err := moqtest.Dial(ctx, moqAddr, moqt.Draft19, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Announce(ctx, moqt.Namespace{"moq-loss.hang"}, vp8OpusCatalog()); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitSubscribed(ctx, hang.CatalogTrack, "video/hd", "audio/data"); err != nil {
		t.Fatal(err)
	}
	// Every video frame a keyframe (the first of the file), so the viewer can
	// decode from any of them after the stream moved.
	pushing, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		vt, at := cl.Track("video/hd"), cl.Track("audio/data")
		for i := uint64(0); pushing.Err() == nil; i++ {
			_ = vt.WriteFrame(pushing, true, i*33_333, video[0])
			_ = at.WriteFrame(pushing, true, i*33_333, audio[i%uint64(len(audio))])
			time.Sleep(33 * time.Millisecond)
		}
	}()
	api, _ := mediatest.API()
	var view *mediatest.Viewer
	view, err = playWhenLive(ctx, api, base, "moq-loss", 15*time.Second)
	if err != nil {
		t.Fatalf("WHEP play: %v", err)
	}
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		t.Fatal(err)
	}
	waitPackets(t, view, 20, 20*time.Second)
	_, body := get(t, base+"/v1/streams/moq-loss")
	var sv struct{ Agent string }
	_ = json.Unmarshal([]byte(body), &sv)
	victim := agents[sv.Agent]
	if victim == nil {
		t.Fatalf("the stream is on %q: %s", sv.Agent, body)
	}
	_ = syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(100 * time.Millisecond) // what the dead node had in flight
	waitPackets(t, view, 20, 20*time.Second)
	t.Logf("media again %s after the agent carrying the MoQ push was killed", time.Since(killed))
	select {
	case <-cl.Done():
		t.Fatal("the publisher's QUIC connection ended")
	default:
	}
	_, body = get(t, base+"/v1/streams/moq-loss")
	var after struct{ Agent string }
	_ = json.Unmarshal([]byte(body), &after)
	if after.Agent == sv.Agent || after.Agent == "" {
		t.Fatalf("the stream is on %q after %s died: %s", after.Agent, sv.Agent, body)
	}
}
