package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestICEServersParseFromOneURLOrAList(t *testing.T) {
	f, err := Parse([]byte(`gateway:
  iceServers:
    - urls: stun:stun.example.net
    - urls: ["turn:turn.example.net:3478?transport=udp", "turns:[2001:db8::1]:5349?transport=tcp"]
      username: u
      credential: s3cret
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ICEServer{
		{URLs: URLList{"stun:stun.example.net"}},
		{URLs: URLList{"turn:turn.example.net:3478?transport=udp", "turns:[2001:db8::1]:5349?transport=tcp"}, Username: "u", Credential: "s3cret"},
	}
	if !reflect.DeepEqual(f.Gateway.ICEServers, want) {
		t.Fatalf("got %+v, want %+v", f.Gateway.ICEServers, want)
	}
}

// Every refusal names the field's full path and what is allowed, and none
// repeats the credential.
func TestBadICEServersAreRefusedNamingTheField(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`[{urls: []}]`, "gateway.iceServers[0].urls: missing"},
		{`[{urls: "http://stun.example.net"}]`, `gateway.iceServers[0].urls[0]: "http://stun.example.net" is not a STUN or TURN URL`},
		{`[{urls: stun:a.example}, {urls: ["stun:b.example", "stun:"]}]`, `gateway.iceServers[1].urls[1]: "stun:" has no valid host`},
		{`[{urls: "stun:a.example:99999"}]`, `gateway.iceServers[0].urls[0]: "stun:a.example:99999" has port "99999" (want 1 to 65535)`},
		{`[{urls: "stun:a.example?transport=udp"}]`, "has a query other than"},
		{`[{urls: "turn:a.example?transport=sctp", username: u, credential: hush}]`, "has a query other than"},
		{`[{urls: "turn:a.example", credential: hush}]`, "gateway.iceServers[0]: a TURN server needs username and credential"},
		{`[{urls: "stun:a b"}]`, "has no valid host"},
		{`[{urls: {a: b}}]`, "urls is not a URL or a list of URLs"},
	} {
		_, err := Parse([]byte("gateway:\n  iceServers: " + c.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("iceServers %s: %v, want an error containing %q", c.yaml, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hush") {
			t.Errorf("iceServers %s: the error %q carries the credential", c.yaml, err)
		}
	}
}

func FuzzCheckICEURL(f *testing.F) {
	for _, s := range []string{"stun:stun.example.net", "turn:h:3478?transport=udp", "turns:[::1]:5349", "stun:", "http://x", "turn:h?x=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		scheme, err := checkICEURL(u)
		if err != nil {
			return
		}
		if !strings.HasPrefix(u, scheme+":") || strings.ContainsAny(u, " <>\"\t\r\n") {
			t.Fatalf("accepted %q as %s", u, scheme)
		}
	})
}
