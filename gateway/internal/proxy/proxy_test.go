package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// Routes that cannot work are refused at start, naming the field.
func TestRouteErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		r    Route
		want string
	}{
		{Route{Prefix: "api/"}, "routes[0].prefix"},
		{Route{Prefix: "/"}, "routes[0].prefix"},
		{Route{Prefix: "/whip/x"}, "overlaps the gateway's own /whip/"},
		{Route{Prefix: "/v"}, "overlaps the gateway's own /v1/"},
		{Route{Prefix: "/api/", Rewrite: "x"}, "routes[0].rewrite"},
		{Route{Prefix: "/api/", Stream: "path:0"}, "routes[0].stream"},
		{Route{Prefix: "/api/", Stream: "query:"}, "routes[0].stream"},
		{Route{Prefix: "/api/", Stream: "cookie:x"}, "routes[0].stream"},
		{Route{Prefix: "/api/", MaxBody: -1}, "routes[0]"},
	} {
		cfg := Config{Routes: []Route{c.r}}
		if err := cfg.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: error %v, want one naming %q", c.r, err, c.want)
		}
	}
	cfg := Config{Routes: []Route{{Prefix: "/a/"}, {Prefix: "/a/"}}}
	if err := cfg.check(); err == nil || !strings.Contains(err.Error(), "routes[1].prefix") {
		t.Fatalf("a repeated prefix: %v", err)
	}
}

// The longest prefix wins; the stream id is read where the route says, and
// an id that is not one is refused.
func TestRoutesMatchLongestPrefixAndReadTheStreamWhereTheySay(t *testing.T) {
	p := &Proxy{cfg: Config{Routes: []Route{{Prefix: "/api/"}, {Prefix: "/api/cams/", Stream: "path:1"}, {Prefix: "/q/", Stream: "query:cam"}}}}
	if err := p.cfg.check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, header, prefix, stream string
	}{
		{"/api/x", "cam-1", "/api/", "cam-1"},
		{"/api/cams/cam-2/info", "", "/api/cams/", "cam-2"},
		{"/q/x?cam=cam-3", "", "/q/", "cam-3"},
		{"/api/cams/a%20b/x", "", "/api/cams/", ""},
		{"/api/x", "", "/api/", ""},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		if c.header != "" {
			r.Header.Set("X-Stream-Id", c.header)
		}
		rt := p.Match(r.URL.Path)
		if rt == nil || rt.Prefix != c.prefix {
			t.Fatalf("%s matched %+v, want %s", c.path, rt, c.prefix)
		}
		got, err := p.streamOf(rt, r)
		if got != c.stream || (c.stream == "") != (err != nil) {
			t.Fatalf("%s: stream %q (%v), want %q", c.path, got, err, c.stream)
		}
	}
	if p.Match("/other") != nil {
		t.Fatal("a path under no prefix matched")
	}
}
