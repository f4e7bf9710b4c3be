package whip

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A WHIP or WHEP request that cannot be used is answered with a precise problem
// before any work is done: the server under test has no core, so reaching
// admission or placement would panic.
func TestUnusableOffersGetAPreciseProblemBeforeAnyWork(t *testing.T) {
	srv := &Server{cfg: Config{MaxOfferBytes: 1 << 10}.withDefaults()}
	mux := http.NewServeMux()
	srv.Register(mux)
	for _, c := range []struct {
		name, path, ctype, body string
		status                  int
		kind                    string
	}{
		{"bad stream id", "/whip/bad%20id", "application/sdp", sendOffer, 400, "bad-stream-id"},
		{"wrong content type", "/whip/cam1", "text/plain", sendOffer, 415, "unsupported-media-type"},
		{"body over the limit", "/whep/cam1", "application/sdp", strings.Repeat("a", 2<<10), 413, "body-too-large"},
		{"not SDP", "/whip/cam1", "application/sdp", "hello", 400, "bad-sdp"},
		{"a WHEP offer that receives nothing", "/whep/cam1", "application/sdp", sendOffer, 400, "bad-sdp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			var p struct{ Type, Detail string }
			_ = json.Unmarshal(rec.Body.Bytes(), &p)
			if rec.Code != c.status || !strings.HasSuffix(p.Type, "/"+c.kind) || p.Detail == "" ||
				rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("got %d %s %q, want %d %s with a detail", rec.Code, rec.Header().Get("Content-Type"), rec.Body, c.status, c.kind)
			}
		})
	}
}

// A PATCH or DELETE of a resource that does not exist is a 404 problem.
func TestUnknownResourcesAre404(t *testing.T) {
	srv := &Server{cfg: Config{}.withDefaults(), resources: map[string]resource{}}
	mux := http.NewServeMux()
	srv.Register(mux)
	for _, m := range []string{http.MethodPatch, http.MethodDelete} {
		req := httptest.NewRequest(m, "/whip/cam1/0123", strings.NewReader(""))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "no-session") {
			t.Errorf("%s of an unknown resource: %d %s", m, rec.Code, rec.Body)
		}
	}
}
