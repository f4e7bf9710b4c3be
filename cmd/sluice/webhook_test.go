package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// hookEvent is the part of a webhook body the tests read.
type hookEvent struct {
	ID, Type, Stream, Gateway, Agent, Node string
	Viewers                                *int
}

// hookReceiver is a user's webhook endpoint: it checks Sluice-Signature the
// way docs/configuration.md shows, and keeps the events that pass.
type hookReceiver struct {
	url    string
	secret string
	mu     sync.Mutex
	events []hookEvent
	bad    []string
	held   int           // requests being held (block)
	block  chan struct{} // non-nil: every request waits for it to close
}

func newHookReceiver(t *testing.T, secret string, block chan struct{}) *hookReceiver {
	r := &hookReceiver{secret: secret, block: block}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	if block != nil {
		t.Cleanup(func() { close(block) }) // before srv.Close, which waits for its requests
	}
	r.url = srv.URL + "/hooks/sluice"
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.block != nil {
		r.mu.Lock()
		r.held++
		r.mu.Unlock()
		<-r.block
		return
	}
	body, _ := io.ReadAll(req.Body)
	err := verifySignature(r.secret, req.Header.Get("Sluice-Signature"), body, 5*time.Minute)
	var ev hookEvent
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.events = append(r.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

// verifySignature is the receiver's check, as documented: t is recent and v1 is
// hex(HMAC-SHA256(secret, t + "." + body)).
func verifySignature(secret, header string, body []byte, tolerance time.Duration) error {
	var ts, sig string
	for _, kv := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("no signature in %q", header)
	}
	if d := time.Since(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("stale signature")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(m.Sum(nil)))) {
		return errors.New("signature does not match")
	}
	return nil
}

// waitEvent waits until an event of typ for stream has arrived.
func (r *hookReceiver) waitEvent(t *testing.T, typ, stream string) hookEvent {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		for _, ev := range r.events {
			if ev.Type == typ && ev.Stream == stream {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("no %s event for %s arrived; got %+v, refused %v", typ, stream, r.events, r.bad)
	return hookEvent{}
}

func (r *hookReceiver) holding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

// webhookSeries is the value of the series named exactly name on /metrics, or -1.
func webhookSeries(t *testing.T, base, name string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestARealPublishIsAnnouncedSignedToWebhooksWhileABlockedAndADownReceiverDelayNothing
// runs sluice dev with three webhooks: a receiver that checks signatures, one
// that never answers and one that is down. A publish made while the blocked
// receiver holds an event must still be answered, played, and announced to
// the good receiver (started, viewer joined and left, ended); the down
// receiver's deliveries are retried and counted.
func TestARealPublishIsAnnouncedSignedToWebhooksWhileABlockedAndADownReceiverDelayNothing(t *testing.T) {
	good := newHookReceiver(t, "whsec-good", nil)
	blocked := newHookReceiver(t, "whsec-blocked", make(chan struct{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/hooks"
	ln.Close()
	cfg := writeConfig(t, "webhooks:\n"+
		"  - {url: '"+good.url+"', secret: whsec-good}\n"+
		"  - {url: '"+blocked.url+"', secret: whsec-blocked, events: [stream.started]}\n"+
		"  - {url: '"+down+"', secret: whsec-down, events: [stream.started]}\n")
	_, base := startDev(t, "--config", cfg)
	ctx := ctxT(t, 90*time.Second)
	api, _ := mediatest.API()

	first, err := mediatest.Publish(ctx, api, base, "hook-first")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for deadline := time.Now().Add(20 * time.Second); blocked.holding() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the blocked receiver never got the first stream.started")
		}
	}

	// The blocked receiver holds its delivery goroutine now: a publish, a play
	// and their events must go on without it.
	video, audio := knownMedia(t)
	pub, err := mediatest.Publish(ctx, api, base, "hooked")
	if err != nil {
		t.Fatalf("a publish while a webhook receiver is blocked: %v", err)
	}
	if blocked.holding() == 0 {
		t.Fatal("the blocked receiver let go early; the test proves nothing")
	}
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	started := good.waitEvent(t, "stream.started", "hooked")
	if started.Gateway != "dev" || started.Agent != "dev" || started.Node == "" || !strings.HasPrefix(started.ID, "evt_") {
		t.Errorf("stream.started = %+v; want gateway and agent dev, a node and an id", started)
	}
	stopWarm := keepWarm(ctx, pub, video, audio)
	view, err := playWhenLive(ctx, api, base, "hooked", 15*time.Second)
	stopWarm()
	if err != nil {
		t.Fatalf("a play while a webhook receiver is blocked: %v", err)
	}
	if joined := good.waitEvent(t, "viewer.joined", "hooked"); joined.Viewers == nil || *joined.Viewers != 1 {
		t.Errorf("viewer.joined = %+v; want viewers 1", joined)
	}
	view.Close()
	if left := good.waitEvent(t, "viewer.left", "hooked"); left.Viewers == nil || *left.Viewers != 0 {
		t.Errorf("viewer.left = %+v; want viewers 0", left)
	}
	pub.Close()
	good.waitEvent(t, "stream.ended", "hooked")

	for deadline := time.Now().Add(20 * time.Second); webhookSeries(t, base, `sluice_webhook_deliveries_total{url_index="2",result="retried"}`) < 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			_, body := get(t, base+"/metrics")
			t.Fatalf("the down receiver's deliveries were not retried:\n%s", grepLines(body, "sluice_webhook"))
		}
	}
	if v := webhookSeries(t, base, `sluice_webhook_queue_depth{url_index="1"}`); v < 1 {
		t.Errorf("the blocked receiver's queue depth is %v; want the second stream.started waiting", v)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
