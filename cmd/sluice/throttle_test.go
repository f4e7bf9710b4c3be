package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// smallPool is a pool of one node that carries one stream (M2's concurrent 1,
// waitQueue 1): a second publish waits in the agent's queue.
const smallPool = `
process:
  relay: {concurrent: 1, waitQueue: 1}
`

// agentTag polls /v1/cluster until the agent's tag key reads want, so that a
// decision made next sees the figures the agent published.
func agentTag(t *testing.T, base, key, want string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body := get(t, base+"/v1/cluster")
		var c struct {
			Members []struct {
				Tags map[string]string `json:"tags"`
			} `json:"members"`
		}
		if json.Unmarshal([]byte(body), &c) == nil && len(c.Members) > 0 {
			if last = c.Members[0].Tags[key]; last == want {
				return
			}
		}
	}
	t.Fatalf("the agent's tag %s stayed %q; want %q", key, last, want)
}

// waitingPublish starts a WHIP publish that waits in the agent's queue; its
// result arrives on the channel, and cancel gives it up.
func waitingPublish(t *testing.T, base, stream string) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	res := make(chan error, 1)
	go func() {
		api, _ := mediatest.API()
		pub, err := mediatest.Publish(ctx, api, base, stream)
		if err == nil {
			t.Cleanup(func() { pub.Close() })
		}
		res <- err
	}()
	return res, cancel
}

// play posts a WHEP offer without following redirects.
func play(t *testing.T, base, stream string) (*http.Response, string) {
	t.Helper()
	api, _ := mediatestAPI()
	req, _ := http.NewRequest(http.MethodPost, base+"/whep/"+stream, strings.NewReader(recvOffer(t, api)))
	req.Header.Set("Content-Type", "application/sdp")
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAPublishToAFullPoolWaitsInTheQueueInOrderThenGets503WithRetryAfter(t *testing.T) {
	cfg := writeConfig(t, smallPool+"agent: {queueTimeout: 4s, queueLimit: 2}\n")
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	first, err := mediatest.Publish(ctx, api, base, "first")
	if err != nil {
		t.Fatal(err)
	}
	second, _ := waitingPublish(t, base, "second")
	agentTag(t, base, "q", "1") // second waits first
	third := rawPublish(t, base, "third")
	agentTag(t, base, "q", "2")
	select {
	case err := <-second:
		t.Fatalf("a publish to a full pool answered at once (%v); want it to wait in the queue", err)
	default:
	}
	resp, body := do(t, http.MethodPost, base+"/whip/fourth", "application/sdp", publishOffer(t), nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "queue is full") {
		t.Errorf("a publish past agent.queueLimit: %d %v %s; want 503 at once, with Retry-After", resp.StatusCode, resp.Header, body)
	}
	first.Close() // DELETE: the node has room for the request that waited longest
	if err := <-second; err != nil {
		t.Fatalf("the first request in the queue, once room was made: %v", err)
	}
	r := <-third // no more room: it waits out agent.queueTimeout
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "queue-timeout") {
		t.Fatalf("the request that waited past queueTimeout: %d %v %s; want 503 queue-timeout with Retry-After", r.status, r.header, r.body)
	}
}

// answer is an HTTP answer read in a goroutine.
type answer struct {
	status int
	header http.Header
	body   string
}

// rawPublish posts a WHIP offer in a goroutine and delivers the answer.
func rawPublish(t *testing.T, base, stream string) <-chan answer {
	offer := publishOffer(t)
	res := make(chan answer, 1)
	go func() {
		resp, err := http.Post(base+"/whip/"+stream, "application/sdp", strings.NewReader(offer))
		if err != nil {
			res <- answer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- answer{resp.StatusCode, resp.Header, string(b)}
	}()
	return res
}

// publishOffer is a WHIP offer from a fresh peer connection.
func publishOffer(t *testing.T) string {
	api, _ := mediatestAPI()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return offerSDP(t, pc, true)
}

func TestThrottleEntersAtQueueConcurrentTimesDeactiveLeavesBelowReactiveAndAnswersEachAction(t *testing.T) {
	cfg := writeConfig(t, smallPool+`agent: {queueTimeout: 60s}
plugins:
  slots:
    throttle:
      config:
        relay.enable: "true"
        relay.wait.deactive: "2"
        relay.wait.reactive: "1"
        relay.origin: https://origin.example
        relay.matchingList: '[{"pattern":"^/whep/err-","action":"error"},{"pattern":"^/whep/redir-","action":"redirect"},{"pattern":"^/whep/orig-","action":"origin"}]'
`)
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 90*time.Second)
	liveStream(t, ctx, base, "orig-live") // fills the pool: one node, one stream
	agentTag(t, base, "conc", "1")        // concurrent: the pool's process limit

	notThrottled := func(when string) {
		t.Helper()
		if resp, body := play(t, base, "err-x"); resp.StatusCode != 404 {
			t.Fatalf("%s: a matching request got %d %s; want it to pass (404: the stream is not live)", when, resp.StatusCode, body)
		}
	}
	throttled := func(when string) {
		t.Helper()
		resp, body := play(t, base, "err-x")
		if resp.StatusCode != 510 || body != `{"enable":false,"error":"throttle"}` || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q %q; want 510 {\"enable\":false,\"error\":\"throttle\"} as application/json", when, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}

	_, cancelA := waitingPublish(t, base, "wait-a")
	agentTag(t, base, "q", "1")
	notThrottled("queue 1 < concurrent 1 × deactive 2")
	_, cancelB := waitingPublish(t, base, "wait-b")
	agentTag(t, base, "q", "2")
	throttled("queue 2 ≥ concurrent 1 × deactive 2")

	if resp, body := play(t, base, "redir-x"); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "https://origin.example/whep/redir-x" {
		t.Errorf("redirect rule: %d Location %q %s; want 307 to the origin", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	api, _ := mediatest.API()
	if v, err := mediatest.Play(ctx, api, base, "orig-live"); err != nil {
		t.Errorf("origin rule: %v; want the gateway, the media origin, to serve the stream", err)
	} else {
		v.Close()
	}
	if resp, body := play(t, base, "other"); resp.StatusCode != 404 {
		t.Errorf("a request no rule matches: %d %s; want it to pass", resp.StatusCode, body)
	}

	cancelB()
	agentTag(t, base, "q", "1")
	throttled("queue 1, not below concurrent 1 × reactive 1")
	cancelA()
	agentTag(t, base, "q", "0")
	notThrottled("queue 0 < concurrent 1 × reactive 1")
}
