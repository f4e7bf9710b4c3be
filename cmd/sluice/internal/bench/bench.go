// Package bench is `sluice bench` and its baseline, `sluice bench-relay`: the
// media path measured against a minimal pion relay in one run, with the
// stream published over WHIP or pushed over MoQ, and many pushes at once.
// docs/performance.md gives the figures and the commands.
package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediaload"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/sdk/push"
)

// Deps are what the bench takes from the sluice command: the config check of
// `--config` and how `sluice push` trusts a gateway's certificate.
type Deps struct {
	CheckConfig func(path string) error
	Trust       func(ctx context.Context, u *url.URL, caFile string, opts *push.Options) error
}

// Run is `sluice bench`. It measures what the media path costs: one WHIP publisher and N WHEP
// viewers over loopback, through `sluice dev` (gateway → media link → node →
// media link → gateway) and through a minimal one-process pion relay, in the same
// run. It reports the CPU time the serving processes spend per delivered RTP
// packet in steady state (handshakes excluded; the load generator is this process
// and is not counted) and the publisher-to-viewer latency.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, deps Deps) int {
	fs := flag.NewFlagSet("sluice bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	viewers := fs.String("viewers", "10,100", "comma list of viewer counts")
	window := fs.Duration("duration", 10*time.Second, "steady-state measurement window per run")
	warmup := fs.Duration("warmup", 3*time.Second, "time after the last viewer connects before measuring")
	ingest := fs.String("ingest", "whip", "comma list of how sluice takes the stream: whip, moq (pushed as sluice push does)")
	pushes := fs.Int("pushes", 0, "also push this many ~1 Mbit/s streams over MoQ at once, each with one WHEP viewer, and report their loss")
	cfgPath := fs.String("config", "", "YAML config file for the sluice dev under test (its pools, policies); addresses are the bench's")
	withRelay := fs.Bool("relay", true, "also measure the minimal pion relay (sluice bench-relay)")
	together := fs.Bool("together", false, "measure every path in one window at once (each with its own publisher and viewers), so they share the machine's noise")
	rounds := fs.Int("rounds", 1, "repeat the whole measurement this many times and add a table of medians")
	var base baseline
	fs.StringVar(&base.cmd, "baseline", "", "shell command that starts another server to measure under the same load in the same run (e.g. a MediaMTX binary and its config)")
	fs.StringVar(&base.whip, "baseline-whip", "http://127.0.0.1:8889/{stream}/whip", "the baseline's WHIP URL template")
	fs.StringVar(&base.whep, "baseline-whep", "http://127.0.0.1:8889/{stream}/whep", "the baseline's WHEP URL template")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if base.cmd != "" {
		if err := base.check(); err != nil {
			fmt.Fprintln(stderr, "sluice bench:", err)
			return 2
		}
	}
	if err := deps.CheckConfig(*cfgPath); err != nil {
		fmt.Fprintln(stderr, "sluice bench:", err)
		return 2
	}
	if *rounds < 1 || *rounds > 50 {
		fmt.Fprintf(stderr, "sluice bench: bad --rounds %d (1..50)\n", *rounds)
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
	devArgs := []string{"dev", "--http", "127.0.0.1:0", "--ice-port", "0", "--ice-bind", "127.0.0.1", "--serf", "127.0.0.1:0", "--agent-api", "127.0.0.1:0", "--moq", "127.0.0.1:0"}
	if *cfgPath != "" {
		devArgs = append(devArgs, "--config", *cfgPath)
	}
	var targets []benchTarget
	if *withRelay {
		targets = append(targets, benchTarget{name: relayName, args: []string{"bench-relay"}, re: relayReadyRE})
	}
	if base.cmd != "" {
		targets = append(targets, benchTarget{name: base.name(), base: &base})
	}
	for _, in := range strings.Split(*ingest, ",") {
		switch strings.TrimSpace(in) {
		case "whip":
			targets = append(targets, benchTarget{name: whipName, args: devArgs, re: devReadyRE})
		case "moq":
			targets = append(targets, benchTarget{name: "sluice, MoQ ingest", args: devArgs, re: devReadyRE, moq: true})
		default:
			fmt.Fprintf(stderr, "sluice bench: bad --ingest %q (whip, moq)\n", in)
			return 2
		}
	}
	results, err := runTargets(ctx, targets, runPlan{self: self, deps: deps, ns: ns, rounds: *rounds, together: *together,
		warmup: *warmup, window: *window}, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sluice bench:", err)
		return 1
	}
	if *pushes > 0 {
		r, err := benchManyPushes(ctx, deps, self, devArgs, *pushes, *warmup, *window, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sluice bench: %d pushes: %v\n", *pushes, err)
			return 1
		}
		results = append(results, result{target: fmt.Sprintf("sluice, %d MoQ pushes of ~1 Mbit/s", *pushes), n: 1, round: 1, Result: r})
	}
	printTables(stdout, results, ns, base)
	printMedians(stdout, results, ns, base)
	return 0
}

// result is one row of the bench: a target at a viewer count in a round.
type result struct {
	target string
	n      int
	round  int
	mediaload.Result
}

// printTables writes the bench's results and, per viewer count, each path's
// cost against the pion relay's (named relay) and the baseline's.
func printTables(stdout io.Writer, results []result, ns []int, base baseline) {
	fmt.Fprintf(stdout, "| round | viewers | path | delivered pkt/s | CPU µs / delivered pkt | latency p50 | latency p99 | loss |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(stdout, "| %d | %d | %s | %.0f | %.1f | %s | %s | %.2f%% |\n", r.round, r.n, r.target, r.PPS, r.CPUPerPkt,
			ms(r.P50), ms(r.P99), 100*r.Loss)
	}
	fmt.Fprintf(stdout, "\n| round | viewers | path | CPU per packet ÷ pion relay | median latency added vs pion relay | CPU per packet ÷ %s |\n|---|---|---|---|---|---|\n", orNone(base))
	for _, r := range results {
		relay, hasRelay := find(results, r.round, r.n, relayName)
		if r.target == relayName {
			continue
		}
		vsRelay, added, vsOther := "—", "n/a", "—"
		if hasRelay {
			vsRelay = fmt.Sprintf("%.2f×", r.CPUPerPkt/relay.CPUPerPkt)
			if r.P50 != 0 && relay.P50 != 0 {
				added = fmt.Sprintf("%+.2f ms", float64((r.P50-relay.P50).Microseconds())/1000)
			}
		}
		if other, ok := find(results, r.round, r.n, base.name()); ok && base.cmd != "" && r.target != other.target {
			vsOther = fmt.Sprintf("%.2f×", r.CPUPerPkt/other.CPUPerPkt)
		}
		fmt.Fprintf(stdout, "| %d | %d | %s | %s | %s | %s |\n", r.round, r.n, r.target, vsRelay, added, vsOther)
	}
}

// ms formats a latency; a server that rewrites sequence numbers (MediaMTX
// does) gives the bench no latency, since a packet's send time is looked up
// by its sequence number.
func ms(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

// dropNote says where the kernel dropped datagrams in the window, if it did.
func dropNote(r mediaload.Result) string {
	if r.ServerDrops == 0 && r.LoadDrops == 0 {
		return ""
	}
	return fmt.Sprintf(" (UDP receive drops: %d at the server's sockets, %d at the load generator's)", r.ServerDrops, r.LoadDrops)
}

// How the tables call the minimal pion relay and sluice with WHIP ingest.
const (
	relayName = "pion relay (baseline)"
	whipName  = "sluice (gateway+node)"
)

// benchTarget is a server the bench measures.
type benchTarget struct {
	name string
	args []string
	re   *regexp.Regexp // its ready line; the first group is its base URL
	moq  bool           // the publisher pushes over MoQ instead of WHIP
	base *baseline      // an outside server, started by its command instead of args
}

// start runs the target and returns its process, its URLs (base, then MoQ)
// and the function that stops it.
func (tg benchTarget) start(ctx context.Context, self string) (*exec.Cmd, []string, func(), error) {
	if tg.base != nil {
		cmd, base, stop, err := tg.base.start(ctx)
		return cmd, []string{base}, stop, err
	}
	cmd, urls, err := startServer(ctx, self, tg.args, tg.re, tg.moq)
	if err != nil {
		return nil, nil, nil, err
	}
	return cmd, urls, func() { stopServer(cmd) }, nil
}

// orNone names the baseline in a table's head.
func orNone(b baseline) string {
	if b.cmd == "" {
		return "baseline (none given)"
	}
	return b.name()
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
	if path := os.Getenv("SLUICE_BENCH_SERVER_LOG"); path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			cmd.Stderr = f
		}
	}
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

// prepareWHIP publishes a stream over WHIP to the target at base and joins
// n viewers to it: a load ready to measure.
func prepareWHIP(ctx context.Context, base string, pid, n int) (*load, error) {
	api, err := mediatest.API()
	if err != nil {
		return nil, err
	}
	stream := fmt.Sprintf("bench-%d-%d", n, rand.IntN(1e6))
	vt, at, closePub, err := benchPublishWHIP(ctx, api, base, stream)
	if err != nil {
		return nil, err
	}
	l := &load{m: &mediaload.Meter{Clock: new(mediaload.SendClock)}, pid: pid, n: n}
	sendCtx, stopSend := context.WithCancel(ctx)
	l.closers = append(l.closers, closePub, stopSend)
	go mediaload.SendRTP(sendCtx, vt, at, l.m.Clock, &l.m.Sent)
	if err := waitPlayable(ctx, base, stream, 15*time.Second); err != nil {
		l.close()
		return nil, err
	}
	views, err := l.m.AddViewers(ctx, base, stream, n)
	l.viewers(views)
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
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

func pidSelf() int { return os.Getpid() }
