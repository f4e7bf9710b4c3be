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

func newTestServices(t *testing.T, idle time.Duration, live map[string]bool) (*Proxy, *hookRecorder) {
	t.Helper()
	rec := &hookRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg, err := Config{Upstreams: map[string]string{"default": strings.TrimPrefix(srv.URL, "http://")},
		Hooks: Hooks{Add: "/add", Remove: "/remove"}, Idle: idle}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	s := New(cfg, "agent-1", slog.New(slog.NewTextHandler(io.Discard, nil)), func(id string) (wire.StreamInfo, bool) {
		mu.Lock()
		defer mu.Unlock()
		return wire.StreamInfo{Stream: id}, live[id]
	})
	return s, rec
}

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

// A call for a stream that is not here gets 421, so that the gateway looks
// again; one for a service the agent has not, 404.
func TestACallForAStreamElsewhereIsMisdirected(t *testing.T) {
	s, _ := newTestServices(t, time.Minute, map[string]bool{"live-1": true})
	mux := http.NewServeMux()
	mux.HandleFunc(wire.PathProxy, s.HandleProxy)
	for _, c := range []struct {
		path, stream string
		want         int
	}{
		{"/agent/v1/proxy/default/x", "elsewhere", http.StatusMisdirectedRequest},
		{"/agent/v1/proxy/nope/x", "live-1", http.StatusNotFound},
		{"/agent/v1/proxy/default/add", "live-1", http.StatusOK}, // the recorder answers 200
	} {
		req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader("{}"))
		req.Header.Set(wire.HeaderStream, c.stream)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Fatalf("%s for %s = %d %s, want %d", c.path, c.stream, w.Code, w.Body, c.want)
		}
	}
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
