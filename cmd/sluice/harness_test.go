package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/internal/mediaload"
	"github.com/sluicegw/sluice/internal/mediatest"
)

// sluiceBin is the sluice binary built once for the tests in this package.
var sluiceBin string

func TestMain(m *testing.M) {
	if name := os.Getenv("SLUICE_TEST_SERVICE"); name != "" {
		os.Exit(runTestService(name)) // a child process of a proxy test
	}
	dir, err := os.MkdirTemp("", "sluice-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	out, err := exec.Command("go", "build", "-o", sluiceBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building sluice: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a sluice process started by a test.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	lines  chan string
	exited chan struct{}
}

// start runs `sluice args...`, logging its output into the test log on failure.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 1024), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("output of sluice %s:\n%s", strings.Join(args, " "), p.out.String())
			p.mu.Unlock()
		}
	})
	return p
}

// waitLine waits for an output line matching re and returns its submatches.
func (p *proc) waitLine(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.exited:
			p.t.Fatalf("sluice exited before printing %q", re)
		case <-deadline:
			p.t.Fatalf("sluice did not print %q within %s", re, timeout)
		}
	}
}

// stop sends SIGTERM, then SIGKILL to the process group after 10 s.
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

var readyRE = regexp.MustCompile(`dashboard\s+(http://\S+)/`)

// startDev runs `sluice dev` on free ports and returns its base URL.
func startDev(t testing.TB, extra ...string) (*proc, string) {
	t.Helper()
	args := []string{"dev", "--http", "127.0.0.1:0", "--ice-port", "0", "--serf", "127.0.0.1:0", "--agent-api", "127.0.0.1:0"}
	if os.Getenv(netnsEnv) == "" {
		// Tests touch loopback alone; inside the webrtcbin tests' own network
		// namespace every address is theirs, and the default is what they test.
		args = append(args, "--ice-bind", "127.0.0.1")
	}
	args = append(args, extra...)
	p := start(t, args...)
	base := p.waitLine(readyRE, 30*time.Second)[1]
	waitReady(t, base)
	return p, base
}

// waitReady polls /readyz until the gateway sees a serving agent.
func waitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/readyz never answered 200", base)
}

func children(pid int) []int { return mediaload.ChildPIDs(pid) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// playWhenLive plays stream over WHEP, trying again until it is live (a
// publisher's tracks reach the gateway with its first packets) or within has
// passed.
func playWhenLive(ctx context.Context, api *webrtc.API, base, stream string, within time.Duration) (*mediatest.Viewer, error) {
	deadline := time.Now().Add(within)
	for {
		view, err := mediatest.Play(ctx, api, base, stream)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return view, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// keepWarm sends a WHIP publisher's first video frame and audio packet every
// 100 ms — the stream's tracks become known to the gateway with their first
// packets — until the returned stop, which waits for the last send to end.
func keepWarm(ctx context.Context, pub *mediatest.Publisher, video, audio [][]byte) (stop func()) {
	warm, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for warm.Err() == nil {
			_ = pub.Send(warm, video[:1], audio[:1])
			select {
			case <-warm.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}
