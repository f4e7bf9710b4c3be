package config

import (
	"errors"
	"strings"
	"testing"
)

func TestWebhooksAndStreamsTheGatewayCannotUseAreRefusedNamingTheField(t *testing.T) {
	for _, c := range []struct{ doc, path, says string }{
		{"webhooks: [{events: [stream.started]}]", "webhooks[0].url", "missing"},
		{"webhooks: [{url: ftp://hooks.example.com/}]", "webhooks[0].url", "is not an http:// or https:// URL"},
		{"webhooks: [{url: 'https://u:p@hooks.example.com/'}]", "webhooks[0].url", "user info"},
		{"webhooks: [{url: 'https://a/'}, {url: 'https://b/', events: [stream.started, stream.paused]}]", "webhooks[1].events[1]", `"stream.paused" is not an event`},
		{"webhooks: [{url: 'https://a/', secret: [x]}]", "webhooks[0].secret", "is not a single value"},
		{"webhooks: [{url: 'https://a/', retries: 3}]", "webhooks[0].retries", "unknown field"},
		{"streams: [{purpose: relay}]", "streams[0].id", "missing"},
		{"streams: [{id: 'cam/1'}]", "streams[0].id", "is not a stream id"},
		{"streams: [{id: 'c*m'}]", "streams[0].id", "before its end"},
		{"streams: [{id: cam1, limits: {maxViewers: -1}}]", "streams[0].limits.maxViewers", "is negative"},
		{"streams: [{id: cam1, limits: {maxBitrate: lots}}]", "streams[0].limits.maxBitrate", "is not a number"},
		{"streams: [{id: cam1, tags: [eu]}]", "streams[0].tags", "is not a mapping"},
	} {
		_, err := Parse([]byte(c.doc + "\n"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != c.path || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err = %v; want %s saying %q", c.doc, err, c.path, c.says)
		}
	}
}

func TestStreamRulesMatchExactIdsAndPrefixPatterns(t *testing.T) {
	f, err := Parse([]byte(`
webhooks: [{url: 'https://hooks.example.com/sluice', events: [stream.started, stream.ended], secret: s}]
streams:
  - {id: lobby, purpose: relay, tags: {region: eu-west}}
  - {id: cam-*, limits: {maxViewers: 2, maxBitrate: 4000000}}
  - {id: "*"}
`))
	if err != nil {
		t.Fatal(err)
	}
	lobby, cams, all := f.Streams[0], f.Streams[1], f.Streams[2]
	if !lobby.Preloaded() || cams.Preloaded() || all.Preloaded() {
		t.Error("only an exact id is preloaded")
	}
	if !lobby.Matches("lobby") || lobby.Matches("lobby2") || !cams.Matches("cam-7") || cams.Matches("cam7") || !all.Matches("x") {
		t.Error("matching is exact for ids and by prefix for patterns")
	}
	if lobby.Tags["region"] != "eu-west" || cams.Limits.MaxViewers != 2 || f.Webhooks[0].Events[1] != "stream.ended" {
		t.Errorf("decoded %+v %+v", f.Streams, f.Webhooks)
	}
}
