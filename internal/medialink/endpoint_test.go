package medialink

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/pki"
)

// pathPair opens a link between two endpoints and connects a media path on each
// end; got receives what arrives at the server's path.
func pathPair(tb testing.TB) (client, server *Path, got chan []byte) {
	tb.Helper()
	l := openLink(tb)
	return l.paths(tb)
}

// link is a QUIC connection between two endpoints that both serve their media
// sockets.
type link struct {
	cli, srv *Endpoint
	cc, sc   *quic.Conn
}

func openLink(tb testing.TB) *link {
	tb.Helper()
	ca, _ := pki.NewCA("test")
	id, _ := ca.Issue("test", []string{"127.0.0.1"})
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	srv, err := NewEndpoint("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	cli, err := NewEndpoint("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	go srv.Serve(ctx)
	go cli.Serve(ctx)
	ln, err := srv.Listen(id.ServerTLS())
	if err != nil {
		tb.Fatal(err)
	}
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
	}()
	cc, err := cli.Dial(ctx, srv.Addr().String(), id.ClientTLS())
	if err != nil {
		tb.Fatal(err)
	}
	sc := <-accepted
	tb.Cleanup(func() { cc.CloseWithError(0, ""); sc.CloseWithError(0, "") })
	return &link{cli: cli, srv: srv, cc: cc, sc: sc}
}

// paths connects one more pair of media paths on the link, as a gateway and a
// node do after the hello and the ok; got receives what arrives at the server's
// path.
func (l *link) paths(tb testing.TB) (client, server *Path, got chan []byte) {
	tb.Helper()
	got = make(chan []byte, 1024)
	client = l.cli.NewPath(nil)
	server = l.srv.NewPath(func(p []byte) { got <- p })
	if err := client.Connect(l.cc, server.ID(), l.srv.MediaPort(), true); err != nil {
		tb.Fatal(err)
	}
	if err := server.Connect(l.sc, client.ID(), l.cli.MediaPort(), false); err != nil {
		tb.Fatal(err)
	}
	return client, server, got
}

func receive(t *testing.T, got chan []byte) []byte {
	t.Helper()
	select {
	case p := <-got:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived on the media path")
		return nil
	}
}

func TestAMediaPathCarriesRTPAndRefusesReplaysForgeriesAndOversizedPackets(t *testing.T) {
	client, server, got := pathPair(t)
	p := append(rtpLike(1200), "payload"...)
	if err := client.Send(p); err != nil {
		t.Fatal(err)
	}
	if q := receive(t, got); !bytes.Equal(q, p) {
		t.Fatalf("received %d bytes, not the %d sent", len(q), len(p))
	}

	// Capture a sealed packet the way an on-path attacker would and play it back,
	// then flip one bit of another: neither may arrive.
	st := client.st.Load()
	sealed, err := st.seal(nil, new([12]byte), p)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first one is new, the second a replay
		if err := client.e.media.Send(sealed, &st.to); err != nil {
			t.Fatal(err)
		}
	}
	forged := append([]byte(nil), sealed...)
	forged[len(forged)-20] ^= 1
	forged[12]++ // a fresh sequence number, so only the tag can refuse it
	if err := client.e.media.Send(forged, &st.to); err != nil {
		t.Fatal(err)
	}
	if err := client.Send(rtpLike(100)); err != nil { // a marker behind them
		t.Fatal(err)
	}
	receive(t, got) // the original of the captured packet
	if q := receive(t, got); len(q) != 100 {
		t.Fatalf("a replayed or forged packet of %d bytes was accepted", len(q))
	}

	if err := client.Send(rtpLike(MaxMediaPacket)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized packet: err = %v, want ErrTooLarge", err)
	}
	server.Close()
	if err := client.Send(rtpLike(100)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("a closed path received a packet")
	case <-time.After(200 * time.Millisecond):
	}
}

// BenchmarkPathCPU is BenchmarkLinkCPU for the media path: 1200-byte packets in
// bursts of 10 every 2 ms, CPU time of both ends per packet.
func BenchmarkPathCPU(b *testing.B) {
	client, _, got := pathPair(b)
	p := rtpLike(1200)
	done := make(chan int64)
	go func() {
		var n int64
		for {
			select {
			case <-got:
				n++
			case <-time.After(100 * time.Millisecond):
				done <- n
				return
			}
		}
	}()
	cpu0 := cpuNow()
	b.ResetTimer()
	pace(b, func() { _ = client.Send(p) })
	n := <-done
	b.StopTimer()
	b.ReportMetric(float64((cpuNow()-cpu0).Microseconds())/float64(max(n, 1)), "cpu-µs/pkt")
	b.ReportMetric(100*float64(n)/float64(b.N), "%delivered")
}
