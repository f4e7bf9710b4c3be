// Package mediaload is the load generator and meter of `sluice bench`: a
// publisher's frames or RTP at known rates, N WHEP viewers that count what they
// receive, and a measured window that sums the serving processes' CPU per
// delivered packet, the publisher-to-viewer latency and the loss.
package mediaload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/sdk/push"
)

// Result is what one measured window gave.
type Result struct {
	PPS       float64       // packets delivered a second, all viewers
	CPUPerPkt float64       // µs of the serving processes' CPU per delivered packet
	P50, P99  time.Duration // publisher-to-viewer latency
	Loss      float64       // fraction of what was sent in the window that did not arrive

	// Datagrams the kernel dropped on arrival in the window, at the serving
	// processes' sockets and at the load generator's (this process): loss at
	// the load generator's sockets is the bench's, not the server's.
	ServerDrops, LoadDrops uint64
}

// SendClock remembers when each RTP packet left the publisher, by track and
// sequence number.
type SendClock struct{ at [2][65536]atomic.Int64 }

// Meter counts what the viewers of a run receive while its window is open,
// and the latency of each packet from the moment the publisher sent it.
type Meter struct {
	Clock     *SendClock // when each packet was sent, by sequence number (WHIP)
	Stamped   bool       // the send time is in each frame instead (MoQ)
	Sent      atomic.Int64
	measuring atomic.Bool
	delivered atomic.Int64
	mu        sync.Mutex
	lats      []time.Duration

	// Stamped streams count loss by frame, exactly: the frames written in the
	// window (unix-nano bounds), and how many of them reached a viewer, whenever.
	winStart, winEnd      atomic.Int64
	framesSent, framesGot atomic.Int64
}

// inWindow reports whether a frame Stamped at ts was written in the window.
func (m *Meter) inWindow(ts int64) bool {
	start, end := m.winStart.Load(), m.winEnd.Load()
	return start != 0 && ts >= start && (end == 0 || ts < end)
}

// addViewers connects n WHEP viewers to stream. The viewers skip pion's stats
// interceptor: only the load generator, which shares the cores with the serving
// processes, gets cheaper.
func (m *Meter) AddViewers(ctx context.Context, base, stream string, n int) ([]*mediatest.Session, error) {
	vapi, err := mediatest.APIWithoutStats()
	if err != nil {
		return nil, err
	}
	var views []*mediatest.Session
	for i := range n {
		// A refused offer leaves its peer connection with a local offer set,
		// so each attempt negotiates on a fresh one.
		var vpc *webrtc.PeerConnection
		var s *mediatest.Session
		for attempt := 0; ; attempt++ {
			if vpc, err = m.viewerPC(vapi); err != nil {
				return views, err
			}
			s, err = mediatest.Negotiate(ctx, vpc, base, "/whep/"+stream)
			if err == nil {
				break
			}
			_ = vpc.Close()
			if attempt >= 50 || ctx.Err() != nil {
				return views, fmt.Errorf("viewer %d: %w", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		views = append(views, s)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = mediatest.WaitConnected(cctx, vpc)
		cancel()
		if err != nil {
			return views, fmt.Errorf("viewer %d: %w", i, err)
		}
	}
	return views, nil
}

// viewerPC is a receive-only peer connection for video and audio whose
// tracks m reads.
func (m *Meter) viewerPC(api *webrtc.API) (*webrtc.PeerConnection, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { m.read(t) })
	return pc, nil
}

// read counts one viewer track's packets until it ends.
func (m *Meter) read(t *webrtc.TrackRemote) {
	kind := 0
	if t.Kind() == webrtc.RTPCodecTypeAudio {
		kind = 1
	}
	var local []time.Duration
	flush := func() {
		m.mu.Lock()
		m.lats = append(m.lats, local...)
		m.mu.Unlock()
		local = local[:0]
	}
	defer flush()
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if m.Stamped {
			if ts, ok := stampOf(kind, pkt.Payload); ok && m.inWindow(ts) {
				m.framesGot.Add(1)
			}
		}
		if !m.measuring.Load() {
			if len(local) > 0 {
				flush()
			}
			continue
		}
		m.delivered.Add(1)
		var ts int64
		if m.Stamped {
			ts, _ = stampOf(kind, pkt.Payload)
		} else {
			ts = m.Clock.at[kind][pkt.SequenceNumber].Load()
		}
		if ts != 0 {
			local = append(local, time.Duration(time.Now().UnixNano()-ts))
		}
	}
}

// measure opens the window for its duration and sums up: the CPU of process pid
// and its children per delivered packet, the latencies, and the loss against n
// viewers.
func (m *Meter) Measure(pid, n int, window time.Duration, stderr io.Writer) (Result, error) {
	kids := ChildPIDs(pid)
	cpu0, kid0 := CPUTime([]int{pid}), CPUTime(kids)
	srvDrops0, loadDrops0 := procstat.UDPDrops(append([]int{pid}, kids...)), procstat.UDPDrops([]int{os.Getpid()})
	sent0 := m.Sent.Load()
	m.winStart.Store(time.Now().UnixNano())
	m.measuring.Store(true)
	start := time.Now()
	time.Sleep(window)
	m.measuring.Store(false)
	m.winEnd.Store(time.Now().UnixNano())
	elapsed := time.Since(start)
	cpu1, kid1 := CPUTime([]int{pid}), CPUTime(ChildPIDs(pid))
	srvDrops1, loadDrops1 := procstat.UDPDrops(append([]int{pid}, ChildPIDs(pid)...)), procstat.UDPDrops([]int{os.Getpid()})
	if len(kids) > 0 {
		fmt.Fprintf(stderr, "  CPU in the window: main process %s, node processes %s\n", cpu1-cpu0, kid1-kid0)
	}
	cpu1 += kid1 - kid0
	sentN := m.Sent.Load() - sent0
	time.Sleep(500 * time.Millisecond) // let the readers flush their samples, and the last frames arrive
	got := m.delivered.Load()
	if got == 0 {
		return Result{}, errors.New("no packet was delivered")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	slices.Sort(m.lats)
	r := Result{
		PPS:       float64(got) / elapsed.Seconds(),
		CPUPerPkt: float64((cpu1 - cpu0).Microseconds()) / float64(got),
		Loss:      max(0, 1-float64(got)/float64(sentN*int64(n))),

		ServerDrops: srvDrops1 - min(srvDrops1, srvDrops0),
		LoadDrops:   loadDrops1 - min(loadDrops1, loadDrops0),
	}
	if m.Stamped {
		r.Loss = max(0, 1-float64(m.framesGot.Load())/float64(m.framesSent.Load()*int64(n)))
	}
	if len(m.lats) > 0 {
		r.P50, r.P99 = m.lats[len(m.lats)/2], m.lats[len(m.lats)*99/100]
	}
	return r, nil
}

// SendRTP publishes a VP8-shaped stream (30 frames/s of 3 packets, a larger
// keyframe every second) and an Opus-shaped one (50 packets/s).
func SendRTP(ctx context.Context, vt, at *webrtc.TrackLocalStaticRTP, clock *SendClock, sent *atomic.Int64) {
	vp := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{}, rtp.NewRandomSequencer(), 90000)
	ap := rtp.NewPacketizer(1200, 111, 2, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	frame := make([]byte, 3000)
	key := make([]byte, 9000)
	audio := make([]byte, 120)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	vi, ai := 0, 0
	send := func(t *webrtc.TrackLocalStaticRTP, kind int, pkts []*rtp.Packet) {
		for _, p := range pkts {
			clock.at[kind][p.SequenceNumber].Store(time.Now().UnixNano())
			if t.WriteRTP(p) == nil {
				sent.Add(1)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		el := time.Since(start)
		for ; time.Duration(vi)*time.Second/30 <= el; vi++ {
			f := frame
			if vi%30 == 0 {
				f = key
			}
			send(vt, 0, vp.Packetize(f, 3000))
		}
		for ; time.Duration(ai)*20*time.Millisecond <= el; ai++ {
			send(at, 1, ap.Packetize(audio, 960))
		}
	}
}

// CPUTime sums user and system CPU time of the processes (dead threads included).
func CPUTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		if st, err := procstat.Read(pid); err == nil {
			total += st.CPU
		}
	}
	return total
}

func ChildPIDs(pid int) []int { return procstat.Children(pid) }

// Frames are the sizes of a pushed stream's frames: video at 30 frames a
// second with a keyframe every second, and 120-byte Opus frames 50 times a
// second.
type Frames struct{ Video, Key int }

// Push pushes frames of the given sizes (benchRunMoQ's are what SendRTP
// publishes over WHIP), each Stamped with the time it is written. sent counts the RTP
// packets the gateway makes of them (its VP8 payloader, with picture ids, into
// 1,200-byte packets).
func Push(ctx context.Context, b *push.Broadcast, sizes Frames, m *Meter) {
	vp := &codecs.VP8Payloader{EnablePictureID: true}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	vi, ai := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		el := time.Since(start)
		for ; time.Duration(vi)*time.Second/30 <= el; vi++ {
			key := vi%30 == 0
			f := make([]byte, sizes.Video)
			if key {
				f = make([]byte, sizes.Key)
			} else {
				f[0] = 1 // VP8 frame tag: an interframe
			}
			now := time.Now().UnixNano()
			binary.BigEndian.PutUint64(f[3:], uint64(now))
			if b.WriteFrame("video", time.Duration(vi)*time.Second/30, key, f) == nil {
				m.Sent.Add(int64(len(vp.Payload(1200, f))))
				m.wrote(now)
			}
		}
		for ; time.Duration(ai)*20*time.Millisecond <= el; ai++ {
			f := make([]byte, 120)
			now := time.Now().UnixNano()
			binary.BigEndian.PutUint64(f[3:], uint64(now))
			if b.WriteFrame("audio", time.Duration(ai)*20*time.Millisecond, true, f) == nil {
				m.Sent.Add(1)
				m.wrote(now)
			}
		}
	}
}

// wrote counts a frame Stamped now if the window is open.
func (m *Meter) wrote(now int64) {
	if m.inWindow(now) {
		m.framesSent.Add(1)
	}
}

// stampOf reads a pushed frame's send time from the packet that starts it.
func stampOf(kind int, payload []byte) (int64, bool) {
	if kind == 0 {
		var vp codecs.VP8Packet
		if _, err := vp.Unmarshal(payload); err != nil || vp.S != 1 || vp.PID != 0 {
			return 0, false
		}
		payload = vp.Payload
	}
	if len(payload) < 11 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(payload[3:11])), true
}
