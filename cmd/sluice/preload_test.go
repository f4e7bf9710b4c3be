package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
)

// streamRow is a /v1/streams entry.
type streamRow struct {
	Stream, Agent, Node string
	Preloaded           bool
	Publisher           *struct{ Gateway string }
}

// streamsNow is GET /v1/streams by stream id.
func streamsNow(t *testing.T, base string) map[string]streamRow {
	t.Helper()
	_, body := get(t, base+"/v1/streams")
	var out struct{ Streams []streamRow }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/v1/streams: %v: %s", err, body)
	}
	m := map[string]streamRow{}
	for _, s := range out.Streams {
		m[s.Stream] = s
	}
	return m
}

// waitPlaced waits until /v1/streams shows stream preloaded on an agent
// (other than not, when given) and returns its row.
func waitPlaced(t *testing.T, base, stream, not string) streamRow {
	t.Helper()
	var last streamRow
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = streamsNow(t, base)[stream]
		if last.Preloaded && last.Node != "" && last.Agent != "" && last.Agent != not {
			return last
		}
	}
	t.Fatalf("stream %s is not shown preloaded on an agent (not %q): %+v", stream, not, last)
	return last
}

func TestAPreloadedStreamIsPlacedBeforeAnyPublisherWhoThenTakesItsNode(t *testing.T) {
	cfg := writeConfig(t, "streams:\n  - {id: lobby}\n  - {id: 'cam-*'}\n")
	dev, base := startDev(t, "--config", cfg)
	row := waitPlaced(t, base, "lobby", "")
	if row.Agent != "dev" || row.Publisher != nil {
		t.Fatalf("lobby before a publisher: %+v; want on agent dev with no publisher", row)
	}
	if _, ok := streamsNow(t, base)["cam-*"]; ok {
		t.Fatal("a pattern was placed as if it were a stream")
	}
	if len(children(dev.cmd.Process.Pid)) == 0 {
		t.Fatal("no node process is up for the preloaded stream")
	}
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	pub, err := mediatest.Publish(ctx, api, base, "lobby")
	if err != nil {
		t.Fatalf("publishing a preloaded stream: %v", err)
	}
	if got := streamsNow(t, base)["lobby"]; got.Node != row.Node || got.Publisher == nil || got.Preloaded {
		t.Errorf("lobby once published: %+v; want its publisher on the preloaded node %s", got, row.Node)
	}
	pub.Close()
	// The publisher has left: the stream is preloaded again for the next one,
	// whose media reaches its viewers.
	waitPlaced(t, base, "lobby", "")
	publishAndWatch(t, base, base, "lobby")
}

func TestAStreamRuleViewerLimitRefusesTheViewerPastIt(t *testing.T) {
	cfg := writeConfig(t, "streams:\n  - {id: 'cam-*', limits: {maxViewers: 1}}\n")
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 60*time.Second)
	liveStream(t, ctx, base, "cam-1")
	resp, body := play(t, base, "cam-1")
	if resp.StatusCode != http.StatusForbidden || !regexp.MustCompile(`viewer-limit`).MatchString(body) {
		t.Fatalf("a second viewer of cam-1 (maxViewers 1): %d %s; want 403 viewer-limit", resp.StatusCode, body)
	}
	liveStream(t, ctx, base, "other") // a stream no rule matches has no limit
	if resp, body := play(t, base, "other"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("a second viewer of a stream with no rule: %d %s", resp.StatusCode, body)
	}
}

// TestViewersArrivingTogetherGetNoMoreThanTheViewerLimit: six WHEP offers at
// once for a stream that has one viewer and allows three: two are answered,
// four refused; the limit is checked and counted in one step.
func TestViewersArrivingTogetherGetNoMoreThanTheViewerLimit(t *testing.T) {
	cfg := writeConfig(t, "streams:\n  - {id: 'crowd-*', limits: {maxViewers: 3}}\n")
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 60*time.Second)
	liveStream(t, ctx, base, "crowd-1")
	api, _ := mediatestAPI()
	codes := make(chan int, 6)
	for range 6 {
		offer := recvOffer(t, api)
		go func() { // no t.Fatal here: a failed request counts as -1
			resp, err := http.Post(base+"/whep/crowd-1", "application/sdp", strings.NewReader(offer))
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	got := map[int]int{}
	for range 6 {
		got[<-codes]++
	}
	if got[http.StatusCreated] != 2 || got[http.StatusForbidden] != 4 {
		t.Fatalf("six viewers at once beside one, maxViewers 3: answers %v; want 2 × 201 and 4 × 403", got)
	}
}

func TestAStreamRuleBitrateLimitEndsThePublisherOverIt(t *testing.T) {
	cfg := writeConfig(t, "streams:\n  - {id: 'slow-*', limits: {maxBitrate: 8000}}\n")
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 60*time.Second)
	liveStream(t, ctx, base, "slow-1") // the known sequence is far over 8 kbit/s
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		row, ok := streamsNow(t, base)["slow-1"]
		if !ok || row.Publisher == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the publisher over maxBitrate is still on: %+v", row)
		}
	}
}

// TestAPreloadedStreamIsPlacedAgainWhenItsAgentIsKilled runs a gateway and two
// agents as processes; the agent holding the preloaded stream is killed, and
// the gateway must place the stream on the other agent with no publisher
// having come.
func TestAPreloadedStreamIsPlacedAgainWhenItsAgentIsKilled(t *testing.T) {
	dir := t.TempDir()
	sluiceOK(t, "ca", "init", "--dir", dir)
	serf := map[string]string{}
	agents := map[string]*proc{}
	for _, name := range []string{"agent-1", "agent-2"} {
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", name, "--host", "127.0.0.1")
		serf[name] = freeport.Loopback(t)
		args := []string{"agent", "--tls-dir", dir, "--tls-name", name, "--bind", serf[name], "--api", "127.0.0.1:0"}
		if name == "agent-2" {
			args = append(args, "--join", serf["agent-1"])
		}
		agents[name] = start(t, args...)
		agents[name].waitLine(regexp.MustCompile(`sluice agent `+name+` is ready`), 30*time.Second)
	}
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "gw-1", "--host", "127.0.0.1")
	cfg := writeConfig(t, "streams:\n  - {id: lobby}\n")
	gw := start(t, "gateway", "--config", cfg, "--tls-dir", dir, "--tls-name", "gw-1", "--bind", freeport.Loopback(t), "--join", serf["agent-1"],
		"--ice-bind", "127.0.0.1", "--http", "127.0.0.1:0", "--ice-port", "-1")
	base := gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)[1]
	waitReady(t, base)

	first := waitPlaced(t, base, "lobby", "")
	victim := agents[first.Agent]
	if victim == nil {
		t.Fatalf("lobby is on %q, not one of the agents", first.Agent)
	}
	_ = syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL)
	again := waitPlaced(t, base, "lobby", first.Agent)
	t.Logf("lobby moved from %s to %s with no publisher", first.Agent, again.Agent)

	// The first publisher finds its node ready on the surviving agent.
	ctx := ctxT(t, 30*time.Second)
	api, _ := mediatest.API()
	pub, err := mediatest.Publish(ctx, api, base, "lobby")
	if err != nil {
		t.Fatalf("publishing the re-placed preloaded stream: %v", err)
	}
	defer pub.Close()
	if row := streamsNow(t, base)["lobby"]; row.Agent != again.Agent || row.Publisher == nil {
		t.Fatalf("after the publish: %+v; want it published on %s", row, again.Agent)
	}
}
