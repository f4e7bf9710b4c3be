package services

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// hookRecorder is a default service that records the hooks it gets.
type hookRecorder struct {
	mu  sync.Mutex
	got []string // "add cam-1 proxy", "remove cam-1 idle", …
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b wire.ServiceHook
	_ = json.NewDecoder(r.Body).Decode(&b)
	h.mu.Lock()
	h.got = append(h.got, strings.TrimPrefix(r.URL.Path, "/")+" "+b.Stream+" "+b.Reason)
	h.mu.Unlock()
}

func (h *hookRecorder) wait(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		got := strings.Join(h.got, ", ")
		h.mu.Unlock()
		if got == strings.Join(want, ", ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hooks %q, want %q", got, strings.Join(want, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newTestServices makes the agent's proxy with a default service that
// records hooks, and the extra upstreams given; live is the media that is
// live here, which the caller may change under liveMu.
func newTestServices(t *testing.T, idle time.Duration, live map[string]bool, extra ...string) (*Proxy, *hookRecorder) {
	t.Helper()
	rec := &hookRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	up := map[string]string{"default": strings.TrimPrefix(srv.URL, "http://")}
	for i := 0; i+1 < len(extra); i += 2 {
		up[extra[i]] = extra[i+1]
	}
	cfg, err := Config{Upstreams: up, Hooks: Hooks{Add: "/add", Remove: "/remove"}, Idle: idle}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, "agent-1", slog.New(slog.NewTextHandler(io.Discard, nil)), func(id string) (wire.StreamInfo, bool) {
		liveMu.Lock()
		defer liveMu.Unlock()
		return wire.StreamInfo{Stream: id}, live[id]
	})
	return s, rec
}

// liveMu guards the live maps the tests hand newTestServices.
var liveMu sync.Mutex

// A stream held for calls alone gets the add hook once, however often it is
// held again, and the remove hook when no call came for the idle time.
func TestAHeldStreamIsAddedOnceAndRemovedWhenIdle(t *testing.T) {
	s, rec := newTestServices(t, 50*time.Millisecond, nil)
	s.hold("cam-1")
	s.hold("cam-1")
	s.callHooks(t.Context())
	rec.wait(t, "add cam-1 proxy")
	if _, ok := s.here("cam-1", false); !ok {
		t.Fatal("a held stream is not here")
	}
	time.Sleep(60 * time.Millisecond)
	if _, ok := s.here("cam-1", false); ok {
		t.Fatal("a stream with no call for longer than the idle time is still here")
	}
	s.expire()
	s.callHooks(t.Context())
	rec.wait(t, "add cam-1 proxy", "remove cam-1 idle")
}

// The stream table's news of media streams become add and remove hooks, with
// none for a stream the proxy already held (its service knows it).
func TestMediaStreamsComingAndGoingCallTheHooks(t *testing.T) {
	s, rec := newTestServices(t, time.Minute, nil)
	s.StreamChanged(wire.StreamInfo{Stream: "live-1", Node: "relay-1"}, true)
	s.hold("held-1")
	s.StreamChanged(wire.StreamInfo{Stream: "held-1"}, true)
	s.StreamChanged(wire.StreamInfo{Stream: "live-1"}, false)
	s.callHooks(t.Context())
	rec.wait(t, "add live-1 media", "add held-1 proxy", "remove live-1 ended")
}

// Service settings that cannot work are refused, naming the field.
func TestServiceSettingsErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		s    Config
		want string
	}{
		{Config{Upstreams: map[string]string{"default": "nohost"}}, "agent.services.default"},
		{Config{Upstreams: map[string]string{"default": "ftp://h:1"}}, "agent.services.default"},
		{Config{Upstreams: map[string]string{"a b": "h:1"}}, "agent.services.a b"},
		{Config{Upstreams: map[string]string{"grpc": "h:1"}, Hooks: Hooks{Add: "/add"}}, "agent.serviceHooks.add"},
		{Config{Upstreams: map[string]string{"default": "h:1"}, Hooks: Hooks{Remove: "remove"}}, "agent.serviceHooks.remove"},
		{Config{Idle: -time.Second}, "agent.serviceIdle"},
	} {
		if _, err := c.s.WithDefaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: error %v, want one naming %s", c.s, err, c.want)
		}
	}
}
