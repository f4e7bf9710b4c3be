package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/internal/config"
)

// receiver is a local HTTP endpoint that records what it is sent, verifying
// each signature as a user's receiver would.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	got    []Event
	bad    []string
	status int           // answer; default 204
	hold   chan struct{} // while open, requests wait (a slow receiver)
	calls  int
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, status: http.StatusNoContent}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls++
		hold, status := r.hold, r.status
		r.mu.Unlock()
		if hold != nil {
			<-hold
		}
		var ev Event
		err := Verify(r.secret, req.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute)
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		r.mu.Lock()
		if err != nil {
			r.bad = append(r.bad, err.Error())
		} else if status < 300 {
			r.got = append(r.got, ev)
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...)
}

func (r *receiver) waitFor(n int) []Event {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got := r.events(); len(got) >= n {
			return got
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Fatalf("the receiver got %d valid events (bad: %v); want %d", len(r.got), r.bad, n)
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func series(set *metrics.Set) string {
	var b strings.Builder
	set.WritePrometheus(&b)
	return b.String()
}

func TestEveryEventTypeArrivesSignedWithItsFields(t *testing.T) {
	r := newReceiver(t, "s3cret")
	d := New(Config{Gateway: "gw-1"}, []Target{{URL: r.srv.URL, Secret: "s3cret"}}, quiet(), nil)
	defer d.Close()
	d.Send(Event{Type: StreamStarted, Stream: "cam1", Agent: "a1", Node: "n1", Protocol: "whip"})
	d.Send(Event{Type: ViewerJoined, Stream: "cam1", Viewers: Count(1)})
	d.Send(Event{Type: StreamMoved, Stream: "cam1", Agent: "a2", Node: "n2", FromAgent: "a1", FromNode: "n1"})
	d.Send(Event{Type: NodeFailed, Agent: "a1", Node: "n1", Streams: []string{"cam1"}})
	d.Send(Event{Type: ViewerLeft, Stream: "cam1", Viewers: Count(0)})
	d.Send(Event{Type: StreamEnded, Stream: "cam1", Agent: "a2", Node: "n2", Protocol: "whip"})
	got := r.waitFor(6)
	for i, typ := range []string{StreamStarted, ViewerJoined, StreamMoved, NodeFailed, ViewerLeft, StreamEnded} {
		ev := got[i]
		if ev.Type != typ || ev.Gateway != "gw-1" || !strings.HasPrefix(ev.ID, "evt_") || time.Since(ev.Time) > time.Minute {
			t.Errorf("event %d = %+v; want a %s from gw-1 with an id and a time, in the order sent", i, ev, typ)
		}
	}
	if got[2].FromAgent != "a1" || got[2].Agent != "a2" || got[3].Streams[0] != "cam1" || got[4].Viewers == nil || *got[4].Viewers != 0 {
		t.Errorf("fields lost: moved %+v, node.failed %+v, viewer.left %+v", got[2], got[3], got[4])
	}
	if s := series(d.set); !strings.Contains(s, `sluice_webhook_deliveries_total{url_index="0",result="delivered"} 6`) {
		t.Errorf("deliveries not counted:\n%s", s)
	}
}

func TestATargetGetsOnlyTheEventTypesItAskedFor(t *testing.T) {
	all, some := newReceiver(t, "a"), newReceiver(t, "b")
	d := New(Config{}, []Target{{URL: all.srv.URL, Secret: "a"}, {URL: some.srv.URL, Secret: "b", Events: []string{StreamEnded}}}, quiet(), nil)
	defer d.Close()
	d.Send(Event{Type: StreamStarted, Stream: "x"})
	d.Send(Event{Type: StreamEnded, Stream: "x"})
	all.waitFor(2)
	if got := some.waitFor(1); len(got) != 1 || got[0].Type != StreamEnded {
		t.Fatalf("the stream.ended-only target got %+v", got)
	}
}

func TestADownReceiverIsRetriedThenCountedFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // nothing listens: every attempt is refused
	set := metrics.NewSet()
	d := New(Config{Attempts: 3, MinBackoff: 10 * time.Millisecond}, []Target{{URL: down, Secret: "x"}}, quiet(), set)
	defer d.Close()
	d.Send(Event{Type: StreamStarted, Stream: "x"})
	want := `sluice_webhook_deliveries_total{url_index="0",result="failed"} 1`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(series(set), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failure counted:\n%s", series(set))
		}
	}
	if s := series(set); !strings.Contains(s, `result="retried"} 2`) {
		t.Errorf("want 2 retries (3 attempts) counted:\n%s", s)
	}
}

func TestAReceiverThatAnswers500IsRetriedUntilItRecovers(t *testing.T) {
	r := newReceiver(t, "k")
	r.status = http.StatusInternalServerError
	d := New(Config{MinBackoff: 20 * time.Millisecond}, []Target{{URL: r.srv.URL, Secret: "k"}}, quiet(), nil)
	defer d.Close()
	d.Send(Event{Type: StreamStarted, Stream: "x"})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		calls := r.calls
		if calls >= 2 {
			r.status = http.StatusOK
		}
		r.mu.Unlock()
		if calls >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if got := r.waitFor(1); got[0].Stream != "x" {
		t.Fatalf("got %+v", got)
	}
}

func TestASlowReceiverFillsItsBoundedQueueAndDropsTheOldestWithoutBlockingSend(t *testing.T) {
	r := newReceiver(t, "k")
	hold := make(chan struct{})
	r.hold = hold
	set := metrics.NewSet()
	d := New(Config{QueueSize: 4}, []Target{{URL: r.srv.URL, Secret: "k"}}, quiet(), set)
	defer d.Close()
	d.Send(Event{Type: ViewerJoined, Stream: "s", Viewers: Count(0)})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		inFlight := r.calls == 1
		r.mu.Unlock()
		if inFlight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first event never reached the receiver")
		}
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i < 20; i++ {
			d.Send(Event{Type: ViewerJoined, Stream: "s", Viewers: Count(i)})
		}
	}()
	select {
	case <-sent: // while the receiver still holds the first request
	case <-time.After(10 * time.Second):
		t.Fatal("Send blocked behind a receiver that does not answer")
	}
	for deadline := time.Now().Add(5 * time.Second); d.Depth(0) != 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d; want it held at 4", d.Depth(0))
		}
	}
	// One is in flight at the receiver, 4 wait, 15 were dropped.
	if s := series(set); !strings.Contains(s, `sluice_webhook_dropped_total{url_index="0"} 15`) ||
		!strings.Contains(s, `sluice_webhook_queue_depth{url_index="0"} 4`) {
		t.Errorf("drops or depth not counted:\n%s", s)
	}
	close(hold)
	got := r.waitFor(5)
	if *got[len(got)-1].Viewers != 19 {
		t.Errorf("the last event delivered is %+v; want the newest kept (drop oldest)", got[len(got)-1])
	}
}

func TestUpdateSendsToTheNewURLAndKeepsAnUnchangedTarget(t *testing.T) {
	a, b := newReceiver(t, "k"), newReceiver(t, "k")
	d := New(Config{}, []Target{{URL: a.srv.URL, Secret: "k"}}, quiet(), nil)
	defer d.Close()
	d.mu.Lock()
	w0 := d.workers[0]
	d.mu.Unlock()
	d.Update([]Target{{URL: a.srv.URL, Secret: "k"}})
	d.mu.Lock()
	kept := d.workers[0] == w0
	d.mu.Unlock()
	if !kept {
		t.Error("an unchanged target got a new worker")
	}
	d.Update([]Target{{URL: b.srv.URL, Secret: "k"}})
	d.Send(Event{Type: StreamStarted, Stream: "after"})
	if got := b.waitFor(1); got[0].Stream != "after" {
		t.Fatalf("got %+v", got)
	}
	if n := len(a.events()); n != 0 {
		t.Errorf("the old URL got %d events after the update", n)
	}
	d.Close()
	d.Close() // twice is fine
}

func TestVerifyRefusesWhatWasNotSignedWithTheSecretNow(t *testing.T) {
	body := []byte(`{"type":"stream.started"}`)
	now := time.Unix(1_700_000_000, 0)
	good := Sign("k", now, body)
	cases := []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		want                 error
	}{
		{"valid", "k", good, body, now, nil},
		{"valid within tolerance", "k", good, body, now.Add(4 * time.Minute), nil},
		{"a second v1 matches", "k", good + ",v1=00", body, now, nil},
		{"tampered body", "k", good, []byte(`{"type":"stream.ended"}`), now, ErrBadSignature},
		{"another secret", "other", good, body, now, ErrBadSignature},
		{"replayed late", "k", good, body, now.Add(6 * time.Minute), ErrStale},
		{"from the future", "k", good, body, now.Add(-6 * time.Minute), ErrStale},
		{"no header", "k", "", body, now, ErrNoSignature},
		{"no v1", "k", "t=1700000000", body, now, ErrNoSignature},
		{"no timestamp", "k", "v1=abc", body, now, ErrNoSignature},
	}
	for _, c := range cases {
		if err := Verify(c.secret, c.header, c.body, c.at, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v; want %v", c.name, err, c.want)
		}
	}
}

func TestTargetCheckNamesTheBadField(t *testing.T) {
	cases := map[string]Target{
		"url: \"ftp://x/\"":   {URL: "ftp://x/"},
		"url: missing":        {URL: ""},
		"url: \"http:///x\"":  {URL: "http:///x"},
		"url: carries user":   {URL: "https://u:p@x/"},
		"events[1]: \"stream": {URL: "https://x/", Events: []string{StreamEnded, "stream.paused"}},
	}
	for want, tg := range cases {
		if err := tg.Check(); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
			t.Errorf("Check(%+v) = %v; want an error naming %q", tg, err, want)
		}
	}
	if err := (Target{URL: "https://hooks.example.com/sluice", Events: Types}).Check(); err != nil {
		t.Errorf("a good target: %v", err)
	}
}

// The configuration file accepts exactly the event types the gateway sends.
func TestTheConfigAcceptsEveryEventTypeAndNoOther(t *testing.T) {
	if !slices.Equal(config.WebhookEvents, Types) {
		t.Fatalf("config.WebhookEvents %v != webhook.Types %v", config.WebhookEvents, Types)
	}
}
