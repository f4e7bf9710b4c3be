package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// call sends one request to the agent API's handler.
func call(t *testing.T, a *Agent, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	a.api().ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	return w
}

func TestTheAgentAPIAnswersJSONAndEveryRefusalWithAStableProblemType(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {}})
	w := call(t, a, "POST", wire.PathSessions, `{"stream":"cam","kind":"publish","gateway":"gw1"}`)
	var opened wire.OpenResponse
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &opened) != nil || opened.Node == "" {
		t.Fatalf("open: %d %s %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = call(t, a, "GET", "/agent/v1/streams/cam", "")
	var si wire.StreamInfo
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &si) != nil || si.Node != opened.Node || si.Epoch != opened.Epoch {
		t.Fatalf("stream: %d %q, want it on %s", w.Code, w.Body, opened.Node)
	}
	w = call(t, a, "GET", "/agent/v1/nodes/"+opened.Node, "")
	var ni wire.NodeInfo
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &ni) != nil || ni.Streams != 1 {
		t.Fatalf("node: %d %q", w.Code, w.Body)
	}

	for _, c := range []struct {
		method, path, body string
		status             int
		kind               string
	}{
		{"GET", "/agent/v1/streams/nobody", "", http.StatusNotFound, "stream-not-live"},
		{"POST", wire.PathSessions, `{"stream":"nobody","kind":"play","gateway":"gw1"}`, http.StatusNotFound, "stream-not-live"},
		{"POST", wire.PathSessions, `{"stream":"cam","kind":"publish","gateway":"gw2"}`, http.StatusConflict, "stream-busy"},
		{"POST", wire.PathSessions, `{"stream":"x","purpose":"transcode","kind":"publish"}`, http.StatusBadRequest, "no-purpose"},
		{"POST", wire.PathSessions, `{"stream":"x","colour":"blue"}`, http.StatusBadRequest, "bad-json"},
		{"POST", wire.PathSessions, `{"stream":"../x","kind":"publish"}`, http.StatusBadRequest, "bad-stream-id"},
		{"DELETE", "/agent/v1/sessions/s-nobody", "", http.StatusNotFound, "no-session"},
		{"GET", "/agent/v1/nodes/relay-nobody", "", http.StatusNotFound, "no-node"},
		{"GET", "/agent/v1/nodes/relay-nobody/logs", "", http.StatusNotFound, "no-node"},
		{"DELETE", "/agent/v1/nodes/relay-nobody", "", http.StatusNotFound, "no-node"},
		{"POST", wire.PathNodes, `{"purpose":"transcode"}`, http.StatusBadRequest, "no-purpose"},
	} {
		w := call(t, a, c.method, c.path, c.body)
		var d struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
		}
		err := json.Unmarshal(w.Body.Bytes(), &d)
		if w.Code != c.status || w.Header().Get("Content-Type") != problem.ContentType || err != nil || d.Type != problem.Base+c.kind || d.Status != c.status {
			t.Errorf("%s %s %s: %d %s %q; want %d %s", c.method, c.path, c.body, w.Code, w.Header().Get("Content-Type"), w.Body, c.status, c.kind)
		}
	}

	if w := call(t, a, "DELETE", "/agent/v1/sessions/"+opened.Session, ""); w.Code != http.StatusNoContent {
		t.Fatalf("closing the publish session: %d %q", w.Code, w.Body)
	}
	if w := call(t, a, "GET", "/agent/v1/streams/cam", ""); w.Code != http.StatusNotFound {
		t.Fatalf("the stream is still listed after its publish session closed: %d", w.Code)
	}
}
