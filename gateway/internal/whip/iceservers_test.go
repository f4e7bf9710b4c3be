package whip

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// OPTIONS on a WHIP or WHEP endpoint names the configured ICE servers in Link
// headers as RFC 9725 §4.6 writes them, one per URL, TURN credentials quoted.
func TestOptionsNamesTheICEServersInLinkHeaders(t *testing.T) {
	servers := []ICEServer{
		{URLs: []string{"stun:stun.example.net", "stun:[2001:db8::1]:3478"}},
		{URLs: []string{"turn:turn.example.net?transport=udp"}, Username: "user", Credential: `pa"ss\word`},
	}
	srv := &Server{cfg: Config{}.withDefaults(), links: linkHeaders(servers)}
	mux := http.NewServeMux()
	srv.Register(mux)
	for _, path := range []string{"/whip/cam1", "/whep/cam1"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodOptions, path, nil))
		want := []string{
			`<stun:stun.example.net>; rel="ice-server"`,
			`<stun:[2001:db8::1]:3478>; rel="ice-server"`,
			`<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="pa\"ss\\word"; credential-type="password"`,
		}
		if got := rec.Header().Values("Link"); rec.Code != http.StatusNoContent || !reflect.DeepEqual(got, want) {
			t.Fatalf("OPTIONS %s: %d, Link %q; want 204 and %q", path, rec.Code, got, want)
		}
	}
}

func TestNoICEServersNoLinkHeaders(t *testing.T) {
	srv := &Server{cfg: Config{}.withDefaults()}
	mux := http.NewServeMux()
	srv.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodOptions, "/whip/cam1", nil))
	if l := rec.Header().Values("Link"); len(l) != 0 {
		t.Fatalf("Link %q without servers", l)
	}
}
