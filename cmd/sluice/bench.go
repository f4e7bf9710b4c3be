package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/internal/procstat"
)

// runBench measures what the media path costs: one WHIP publisher and N WHEP
// viewers over loopback, through `sluice dev` (gateway → media link → node →
// media link → gateway) and through a minimal one-process pion relay, in the same
// run. It reports the CPU time the serving processes spend per delivered RTP
// packet in steady state (handshakes excluded; the load generator is this process
// and is not counted) and the publisher-to-viewer latency.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	viewers := fs.String("viewers", "10,100", "comma list of viewer counts")
	window := fs.Duration("duration", 10*time.Second, "steady-state measurement window per run")
	warmup := fs.Duration("warmup", 3*time.Second, "time after the last viewer connects before measuring")
	ingest := fs.String("ingest", "whip", "comma list of how sluice takes the stream: whip, moq (pushed as sluice push does)")
	pushes := fs.Int("pushes", 0, "also push this many ~1 Mbit/s streams over MoQ at once, each with one WHEP viewer, and report their loss")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var ns []int
	for _, s := range strings.Split(*viewers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 500 {
			fmt.Fprintf(stderr, "sluice bench: bad viewer count %q (1..500)\n", s)
			return 2
		}
		ns = append(ns, n)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "sluice bench:", err)
		return 1
	}
	devArgs := []string{"dev", "--http", "127.0.0.1:0", "--ice-port", "0", "--serf", "127.0.0.1:0", "--agent-api", "127.0.0.1:0", "--moq", "127.0.0.1:0"}
	targets := []benchTarget{{name: "pion relay (baseline)", args: []string{"bench-relay"}, re: relayReadyRE}}
	for _, in := range strings.Split(*ingest, ",") {
		switch strings.TrimSpace(in) {
		case "whip":
			targets = append(targets, benchTarget{name: "sluice (gateway+node)", args: devArgs, re: devReadyRE})
		case "moq":
			targets = append(targets, benchTarget{name: "sluice, MoQ ingest", args: devArgs, re: devReadyRE, moq: true})
		default:
			fmt.Fprintf(stderr, "sluice bench: bad --ingest %q (whip, moq)\n", in)
			return 2
		}
	}
	type result struct {
		target         string
		n              int
		pps, cpuPerPkt float64
		p50, p99       time.Duration
		loss           float64
	}
	var results []result
	for _, tg := range targets {
		srv, urls, err := startServer(ctx, self, tg.args, tg.re, tg.moq)
		if err != nil {
			fmt.Fprintf(stderr, "sluice bench: start %s: %v\n", tg.name, err)
			return 1
		}
		for _, n := range ns {
			run := benchRun
			if tg.moq {
				run = func(ctx context.Context, base string, pid, n int, warmup, window time.Duration, stderr io.Writer) (benchResult, error) {
					return benchRunMoQ(ctx, base, urls[1], pid, n, warmup, window, stderr)
				}
			}
			r, err := run(ctx, urls[0], srv.Process.Pid, n, *warmup, *window, stderr)
			if err != nil {
				fmt.Fprintf(stderr, "sluice bench: %s with %d viewers: %v\n", tg.name, n, err)
				stopServer(srv)
				return 1
			}
			results = append(results, result{tg.name, n, r.pps, r.cpuPerPkt, r.p50, r.p99, r.loss})
			fmt.Fprintf(stderr, "%s, %d viewers: %.0f pkt/s delivered, %.1f µs CPU/pkt, latency p50 %s p99 %s, loss %.2f%%\n",
				tg.name, n, r.pps, r.cpuPerPkt, r.p50, r.p99, 100*r.loss)
		}
		stopServer(srv)
	}
	if *pushes > 0 {
		r, err := benchManyPushes(ctx, self, devArgs, *pushes, *warmup, *window, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sluice bench: %d pushes: %v\n", *pushes, err)
			return 1
		}
		results = append(results, result{fmt.Sprintf("sluice, %d MoQ pushes of ~1 Mbit/s", *pushes), 1, r.pps, r.cpuPerPkt, r.p50, r.p99, r.loss})
	}
	fmt.Fprintf(stdout, "| viewers | path | delivered pkt/s | CPU µs / delivered pkt | latency p50 | latency p99 | loss |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(stdout, "| %d | %s | %.0f | %.1f | %.2f ms | %.2f ms | %.2f%% |\n", r.n, r.target, r.pps, r.cpuPerPkt,
			float64(r.p50.Microseconds())/1000, float64(r.p99.Microseconds())/1000, 100*r.loss)
	}
	fmt.Fprintf(stdout, "\n| viewers | path | CPU per packet ÷ baseline | median latency added vs baseline |\n|---|---|---|---|\n")
	for _, n := range ns {
		var base *result
		for i := range results {
			r := &results[i]
			if r.n != n {
				continue
			}
			if base == nil {
				base = r
				continue
			}
			fmt.Fprintf(stdout, "| %d | %s | %.2f× | %+.2f ms |\n", n, r.target, r.cpuPerPkt/base.cpuPerPkt, float64((r.p50-base.p50).Microseconds())/1000)
		}
	}
	return 0
}

// benchTarget is a server the bench measures.
type benchTarget struct {
	name string
	args []string
	re   *regexp.Regexp // its ready line; the first group is its base URL
	moq  bool           // the publisher pushes over MoQ instead of WHIP
}

var (
	relayReadyRE = regexp.MustCompile(`ready on (http://\S+)`)
	devReadyRE   = regexp.MustCompile(`dashboard\s+(http://\S+)/`)
	devMoQRE     = regexp.MustCompile(`MoQ\s+(moqt://\S+)`)
)

// startServer runs the bench's server and waits for its ready line (and, with
// moq, its MoQ line); it returns the base URL and the MoQ URL.
func startServer(ctx context.Context, self string, args []string, re *regexp.Regexp, moq bool) (*exec.Cmd, []string, error) {
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "SLUICE_LOG=warn")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	want := []*regexp.Regexp{re}
	if moq {
		want = append(want, devMoQRE)
	}
	found := make(chan []string, 1)
	go func() {
		urls := make([]string, len(want))
		seen := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			for i, w := range want {
				if m := w.FindStringSubmatch(sc.Text()); m != nil && urls[i] == "" {
					urls[i] = m[1]
					if seen++; seen == len(want) {
						found <- urls
					}
				}
			}
		}
	}()
	select {
	case urls := <-found:
		return cmd, urls, nil
	case <-time.After(30 * time.Second):
		stopServer(cmd)
		return nil, nil, errors.New("not ready within 30 s")
	}
}

func stopServer(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

type benchResult struct {
	pps, cpuPerPkt float64
	p50, p99       time.Duration
	loss           float64
}

// sendClock remembers when each RTP packet left the publisher, by track and
// sequence number.
type sendClock struct{ at [2][65536]atomic.Int64 }

func benchRun(ctx context.Context, base string, pid, n int, warmup, window time.Duration, stderr io.Writer) (benchResult, error) {
	api, err := mediatest.API()
	if err != nil {
		return benchResult{}, err
	}
	stream := fmt.Sprintf("bench-%d-%d", n, rand.IntN(1e6))
	vt, at, closePub, err := benchPublishWHIP(ctx, api, base, stream)
	if err != nil {
		return benchResult{}, err
	}
	defer closePub()
	m := &benchMeter{clock: new(sendClock)}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	go benchSend(sendCtx, vt, at, m.clock, &m.sent)
	views, err := m.addViewers(ctx, base, stream, n)
	defer func() {
		for _, v := range views {
			_ = v.Close()
		}
	}()
	if err != nil {
		return benchResult{}, err
	}
	time.Sleep(warmup)
	return m.measure(pid, n, window, stderr)
}

// benchPublishWHIP publishes a VP8 and an Opus track to stream over WHIP.
func benchPublishWHIP(ctx context.Context, api *webrtc.API, base, stream string) (vt, at *webrtc.TrackLocalStaticRTP, closeFn func(), err error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, nil, err
	}
	vt, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "bench")
	at, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	for _, t := range []webrtc.TrackLocal{vt, at} {
		if _, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			_ = pc.Close()
			return nil, nil, nil, err
		}
	}
	pub, err := mediatest.Negotiate(ctx, pc, base, "/whip/"+stream)
	if err != nil {
		_ = pc.Close()
		return nil, nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = mediatest.WaitConnected(cctx, pc)
	cancel()
	if err != nil {
		_ = pub.Close()
		_ = pc.Close()
		return nil, nil, nil, err
	}
	return vt, at, func() { _ = pub.Close(); _ = pc.Close() }, nil
}

// benchMeter counts what the viewers of a run receive while its window is open,
// and the latency of each packet from the moment the publisher sent it.
type benchMeter struct {
	clock     *sendClock // when each packet was sent, by sequence number (WHIP)
	stamped   bool       // the send time is in each frame instead (MoQ)
	sent      atomic.Int64
	measuring atomic.Bool
	delivered atomic.Int64
	mu        sync.Mutex
	lats      []time.Duration

	// Stamped streams count loss by frame, exactly: the frames written in the
	// window (unix-nano bounds), and how many of them reached a viewer, whenever.
	winStart, winEnd      atomic.Int64
	framesSent, framesGot atomic.Int64
}

// inWindow reports whether a frame stamped at ts was written in the window.
func (m *benchMeter) inWindow(ts int64) bool {
	start, end := m.winStart.Load(), m.winEnd.Load()
	return start != 0 && ts >= start && (end == 0 || ts < end)
}

// addViewers connects n WHEP viewers to stream. The viewers skip pion's stats
// interceptor: only the load generator, which shares the cores with the serving
// processes, gets cheaper.
func (m *benchMeter) addViewers(ctx context.Context, base, stream string, n int) ([]*mediatest.Session, error) {
	vapi, err := mediatest.APIWithoutStats()
	if err != nil {
		return nil, err
	}
	var views []*mediatest.Session
	for i := range n {
		vpc, err := vapi.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return views, err
		}
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			_, _ = vpc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		}
		vpc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { m.read(t) })
		var s *mediatest.Session
		for attempt := 0; ; attempt++ {
			s, err = mediatest.Negotiate(ctx, vpc, base, "/whep/"+stream)
			if err == nil || attempt > 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			_ = vpc.Close()
			return views, fmt.Errorf("viewer %d: %w", i, err)
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

// read counts one viewer track's packets until it ends.
func (m *benchMeter) read(t *webrtc.TrackRemote) {
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
		if m.stamped {
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
		if m.stamped {
			ts, _ = stampOf(kind, pkt.Payload)
		} else {
			ts = m.clock.at[kind][pkt.SequenceNumber].Load()
		}
		if ts != 0 {
			local = append(local, time.Duration(time.Now().UnixNano()-ts))
		}
	}
}

// measure opens the window for its duration and sums up: the CPU of process pid
// and its children per delivered packet, the latencies, and the loss against n
// viewers.
func (m *benchMeter) measure(pid, n int, window time.Duration, stderr io.Writer) (benchResult, error) {
	kids := childPIDs(pid)
	cpu0, kid0 := cpuTime([]int{pid}), cpuTime(kids)
	sent0 := m.sent.Load()
	m.winStart.Store(time.Now().UnixNano())
	m.measuring.Store(true)
	start := time.Now()
	time.Sleep(window)
	m.measuring.Store(false)
	m.winEnd.Store(time.Now().UnixNano())
	elapsed := time.Since(start)
	cpu1, kid1 := cpuTime([]int{pid}), cpuTime(childPIDs(pid))
	if len(kids) > 0 {
		fmt.Fprintf(stderr, "  CPU in the window: main process %s, node processes %s\n", cpu1-cpu0, kid1-kid0)
	}
	cpu1 += kid1 - kid0
	sentN := m.sent.Load() - sent0
	time.Sleep(500 * time.Millisecond) // let the readers flush their samples, and the last frames arrive
	got := m.delivered.Load()
	if got == 0 {
		return benchResult{}, errors.New("no packet was delivered")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	slices.Sort(m.lats)
	r := benchResult{
		pps:       float64(got) / elapsed.Seconds(),
		cpuPerPkt: float64((cpu1 - cpu0).Microseconds()) / float64(got),
		loss:      max(0, 1-float64(got)/float64(sentN*int64(n))),
	}
	if m.stamped {
		r.loss = max(0, 1-float64(m.framesGot.Load())/float64(m.framesSent.Load()*int64(n)))
	}
	if len(m.lats) > 0 {
		r.p50, r.p99 = m.lats[len(m.lats)/2], m.lats[len(m.lats)*99/100]
	}
	return r, nil
}

// benchSend publishes a VP8-shaped stream (30 frames/s of 3 packets, a larger
// keyframe every second) and an Opus-shaped one (50 packets/s).
func benchSend(ctx context.Context, vt, at *webrtc.TrackLocalStaticRTP, clock *sendClock, sent *atomic.Int64) {
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

// cpuTime sums user and system CPU time of the processes (dead threads included).
func cpuTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		if st, err := procstat.Read(pid); err == nil {
			total += st.CPU
		}
	}
	return total
}

func childPIDs(pid int) []int { return procstat.Children(pid) }

func pidSelf() int { return os.Getpid() }
