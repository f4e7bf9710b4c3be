package moq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/moqtest"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

var drafts = []moqt.Version{moqt.Draft16, moqt.Draft17, moqt.Draft19}

// announce dials a raw QUIC session in v and announces ns with the VP8+Opus
// catalog, then waits for the gateway to subscribe to the catalog and both
// tracks, as moq-dev's publisher expects.
func announce(t *testing.T, ctx context.Context, g *testGateway, v moqt.Version, ns string) *moqtest.Client {
	t.Helper()
	cl, err := moqtest.Dial(ctx, g.addr(), v, g.srv.CertificateHash())
	if err != nil {
		t.Fatalf("%s: dial: %v", v, err)
	}
	t.Cleanup(cl.Close)
	if err := cl.Announce(ctx, moqt.Namespace{ns}, vp8Opus()); err != nil {
		t.Fatalf("%s: announce %s: %v", v, ns, err)
	}
	if err := cl.WaitSubscribed(ctx, hang.CatalogTrack, "video/hd", "audio/data"); err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	return cl
}

// sendFrames writes n VP8-like and Opus-like frames, a keyframe first.
func sendFrames(t *testing.T, ctx context.Context, cl *moqtest.Client, n int) {
	t.Helper()
	video, audio := cl.Track("video/hd"), cl.Track("audio/data")
	for i := range n {
		if err := video.WriteFrame(ctx, i == 0, uint64(i)*33_333, []byte{0x10, 0x02, 0x00, byte(i)}); err != nil {
			t.Fatal(err)
		}
		if err := audio.WriteFrame(ctx, true, uint64(i)*20_000, []byte{0xfc, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// In every draft, over raw QUIC, a publisher that announces its namespace is
// accepted, subscribed to its catalog and then to the catalog's tracks, and
// its frames reach the stream's Publication as RTP under protocol "moq".
func TestAnAnnouncedBroadcastIsSubscribedFromItsCatalogAndPublishedInEveryDraft(t *testing.T) {
	g := startGateway(t)
	for _, v := range drafts {
		t.Run(v.String(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			stream := fmt.Sprintf("cam-%d", uint32(v)&0xff)
			cl := announce(t, ctx, g, v, stream+hang.Suffix)
			sendFrames(t, ctx, cl, 10)
			for deadline := time.Now().Add(5 * time.Second); ; {
				p := g.published(t, stream)
				if p.Protocol != "moq" {
					t.Fatalf("publisher protocol %q, want moq", p.Protocol)
				}
				// 10 one-packet video frames and 10 audio frames.
				if p.Packets >= 20 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d RTP packets reached the publication, want 20", p.Packets)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cl.Close()
			for deadline := time.Now().Add(5 * time.Second); g.core.LocalStreams()[stream] != nil; {
				if time.Now().After(deadline) {
					t.Fatal("the stream outlived its publisher's session")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	if got := g.metric("sluice_moq_sessions_total"); got != "3" {
		t.Errorf("sluice_moq_sessions_total = %q, want 3", got)
	}
}

// A MediaMTX-style publisher pushes its tracks with PUBLISH; each draft gets
// its own answer (PUBLISH_OK in 16 and 17, REQUEST_OK in 19) and the frames
// of the tracks its catalog lists are published.
func TestPublishedTracksArePublishedInEveryDraft(t *testing.T) {
	g := startGateway(t)
	for _, v := range drafts {
		t.Run(v.String(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			stream := fmt.Sprintf("push-%d", uint32(v)&0xff)
			cl, err := moqtest.Dial(ctx, g.addr(), v, "")
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ns := moqt.Namespace{stream}
			if _, err := cl.Publish(ctx, ns, hang.CatalogTrack, vp8Opus()); err != nil {
				t.Fatalf("PUBLISH catalog: %v", err)
			}
			video, err := cl.Publish(ctx, ns, "video/hd", nil)
			if err != nil {
				t.Fatalf("PUBLISH video: %v", err)
			}
			for i := range 5 {
				if err := video.WriteFrame(ctx, i == 0, uint64(i)*33_333, []byte{0x10, 0x02, 0x00, byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			for deadline := time.Now().Add(5 * time.Second); g.published(t, stream).Packets < 5; {
				if time.Now().After(deadline) {
					t.Fatalf("%d packets reached the publication, want 5", g.published(t, stream).Packets)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// A browser's path: WebTransport with the certificate pinned by the hash
// /certificate.sha256 serves, the draft picked from the offered protocols.
func TestAWebTransportSessionOpensWithThePinnedCertificateHash(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t, 20*time.Second)
	resp, err := http.Get("http://" + g.addr() + "/certificate.sha256")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != g.srv.CertificateHash() || len(body) != 64 {
		t.Fatalf("/certificate.sha256 = %q, want the 64-digit hash %q", body, g.srv.CertificateHash())
	}
	cl, proto, err := moqtest.DialWebTransport(ctx, "https://"+g.addr()+"/anon", string(body), []string{"moq-lite-04", "moqt-19", "moqt-16"})
	if err != nil {
		t.Fatalf("WebTransport: %v", err)
	}
	defer cl.Close()
	if proto != "moqt-19" {
		t.Errorf("picked %q, want moqt-19 (the first we speak in the client's order)", proto)
	}
	if err := cl.Announce(ctx, moqt.Namespace{"wt.hang"}, vp8Opus()); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitSubscribed(ctx, hang.CatalogTrack, "video/hd", "audio/data"); err != nil {
		t.Fatal(err)
	}
	g.published(t, "wt")

	// Another certificate than the pinned one is refused by the client.
	if _, _, err := moqtest.DialWebTransport(ctx, "https://"+g.addr()+"/anon", "00"+string(body[2:]), []string{"moqt-19"}); err == nil {
		t.Error("a WebTransport session opened with the wrong pinned hash")
	}
}

// A client that offers no draft we speak gets VERSION_NEGOTIATION_FAILED
// over WebTransport, and no QUIC handshake over raw QUIC.
func TestAnUnsupportedVersionIsRefused(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t, 20*time.Second)
	cl, proto, err := moqtest.DialWebTransport(ctx, "https://"+g.addr()+"/x", "", []string{"moqt-15"})
	if err == nil {
		t.Fatalf("speaking %q with a client that offered moqt-15 only", proto)
	}
	if code, err := cl.ClosedWith(ctx); err != nil || code != uint64(moqt.CodeVersionNegotiationFailed) {
		t.Errorf("closed with 0x%x (%v), want VERSION_NEGOTIATION_FAILED 0x15", code, err)
	}
	if _, err := moqtest.DialALPN(ctx, g.addr(), moqt.Draft16, "moqt-15", ""); err == nil {
		t.Error("a raw QUIC handshake with ALPN moqt-15 succeeded")
	}
}

// Malformed input ends only the session that sent it, with the code the
// drafts give, and another publisher's stream keeps flowing.
func TestMalformedControlMessagesEndOnlyTheirSession(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t, 30*time.Second)
	live := announce(t, ctx, g, moqt.Draft19, "live")
	cases := []struct {
		name string
		v    moqt.Version
		raw  []byte
		code moqt.ErrorCode
	}{
		{"unknown type d16", moqt.Draft16, []byte{0x3f, 0x00, 0x00}, moqt.CodeProtocolViolation},
		{"truncated SUBSCRIBE d19", moqt.Draft19, []byte{0x03, 0x00, 0x02, 0x01, 0x05}, moqt.CodeProtocolViolation},
		{"length past the payload d17", moqt.Draft17, append([]byte{0x06, 0x00, 0x09, 0x02, 0x00, 0x01, 0x04}, "cam1x0"...), moqt.CodeProtocolViolation},
		{"SETUP again d16", moqt.Draft16, (&moqt.ClientSetup{}).Append(nil, moqt.Draft16), moqt.CodeProtocolViolation},
		{"odd request id d19", moqt.Draft19, (&moqt.PublishNamespace{RequestID: 1, Namespace: moqt.Namespace{"x"}}).Append(nil, moqt.Draft19), moqt.CodeInvalidRequestID},
		{"request id past MAX_REQUEST_ID d16", moqt.Draft16, (&moqt.PublishNamespace{RequestID: 1000, Namespace: moqt.Namespace{"x"}}).Append(nil, moqt.Draft16), moqt.CodeTooManyRequests},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := moqtest.Dial(ctx, g.addr(), c.v, "")
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.WriteRaw(ctx, c.raw); err != nil {
				t.Fatal(err)
			}
			wait, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			code, err := cl.ClosedWith(wait)
			if err != nil || code != uint64(c.code) {
				t.Fatalf("closed with 0x%x (%v), want 0x%x", code, err, uint64(c.code))
			}
			if g.metric(fmt.Sprintf(`sluice_moq_errors_total{scope="session",code="0x%x"}`, uint64(c.code))) == "" {
				t.Errorf("the session error 0x%x is not counted", uint64(c.code))
			}
		})
	}
	select {
	case <-live.Done():
		t.Fatal("the other publisher's session ended")
	default:
	}
	before := g.published(t, "live").Packets
	sendFrames(t, ctx, live, 5)
	for deadline := time.Now().Add(5 * time.Second); g.published(t, "live").Packets < before+10; {
		if time.Now().After(deadline) {
			t.Fatal("the other stream stopped flowing")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Requests the gateway will not serve get a request error and the session
// goes on: a namespace that is no stream id, a second publisher of a live
// stream.
func TestBadNamespacesAndASecondPublisherGetRequestErrors(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t, 30*time.Second)
	first := announce(t, ctx, g, moqt.Draft16, "taken.hang")
	for _, v := range drafts {
		cl, err := moqtest.Dial(ctx, g.addr(), v, "")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, c := range []struct {
			ns   moqt.Namespace
			code moqt.ErrorCode
		}{
			{moqt.Namespace{"live", "cam1"}, moqt.ReqUninterested},
			{moqt.Namespace{"no spaces"}, moqt.ReqUninterested},
			{moqt.Namespace{"taken"}, moqt.ReqDuplicateSubscription},
			{moqt.Namespace{"taken.hang"}, moqt.ReqDuplicateSubscription},
		} {
			err := cl.Announce(ctx, c.ns, vp8Opus())
			var re *moqtest.RequestError
			if !errors.As(err, &re) || re.Code != c.code {
				t.Errorf("%s: announcing %q: %v, want REQUEST_ERROR 0x%x", v, c.ns.Path(), err, uint64(c.code))
			}
		}
		// The session is still good for a stream it may publish.
		ns := fmt.Sprintf("ok-%d", uint32(v)&0xff)
		if err := cl.Announce(ctx, moqt.Namespace{ns}, vp8Opus()); err != nil {
			t.Errorf("%s: after the refusals: %v", v, err)
		}
	}
	select {
	case <-first.Done():
		t.Fatal("the first publisher's session ended")
	default:
	}
	if p := g.published(t, "taken"); p.Protocol != "moq" {
		t.Fatalf("the first publisher lost its stream: %+v", p)
	}
}

// An object over MaxObjectBytes ends its track's subscription (and counts),
// not the session; a track that never sends is unsubscribed after
// TrackTimeout.
func TestAnObjectOverTheLimitOrASilentTrackEndsOnlyThatSubscription(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.MaxObjectBytes = 1000; c.TrackTimeout = 1500 * time.Millisecond })
	for _, v := range []moqt.Version{moqt.Draft16, moqt.Draft19} {
		t.Run(v.String(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			cl := announce(t, ctx, g, v, fmt.Sprintf("big-%d", uint32(v)&0xff))
			audio := cl.Track("audio/data")
			if err := cl.Track("video/hd").WriteFrame(ctx, true, 0, make([]byte, 5000)); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); cl.Track("video/hd") != nil; {
				if time.Now().After(deadline) {
					t.Fatal("the gateway did not end the subscription of the track with the big object")
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Audio keeps going past the track timeout; the catalog is silent after
			// its one group, but it sent, so it stays.
			for i := range 100 {
				if err := audio.WriteFrame(ctx, true, uint64(i)*20_000, []byte{0xfc, byte(i)}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if cl.Track("audio/data") == nil || cl.Track(hang.CatalogTrack) == nil {
				t.Fatal("the other tracks lost their subscriptions")
			}
			select {
			case <-cl.Done():
				t.Fatal("the session ended")
			default:
			}
		})
	}
	if g.metric(`sluice_moq_errors_total{scope="request",code="0x9"}`) == "" {
		t.Error("the refused object is not counted")
	}

	// A catalog whose tracks never send: both are unsubscribed.
	ctx := ctxT(t, 20*time.Second)
	cl := announce(t, ctx, g, moqt.Draft17, "silent")
	for deadline := time.Now().Add(10 * time.Second); cl.Track("video/hd") != nil || cl.Track("audio/data") != nil; {
		if time.Now().After(deadline) {
			t.Fatal("silent tracks are still subscribed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close ends every session with NO_ERROR and returns.
func TestCloseEndsEverySessionCleanly(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t, 20*time.Second)
	a := announce(t, ctx, g, moqt.Draft16, "a")
	b := announce(t, ctx, g, moqt.Draft19, "b")
	done := make(chan struct{})
	go func() { _ = g.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, cl := range []*moqtest.Client{a, b} {
		if code, err := cl.ClosedWith(ctx); err != nil || code != 0 {
			t.Errorf("closed with 0x%x (%v), want NO_ERROR", code, err)
		}
	}
	_ = g.srv.Close() // twice is fine
}
