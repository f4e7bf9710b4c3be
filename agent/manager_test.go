package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

func TestNodesAreSpawnedReusedForAStreamAndRecycledOnRequest(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 2, WaitQueue: 2}})
	r1 := open(t, a, "s1", wire.KindPublish)
	if r1.Media == "" || r1.Node == "" {
		t.Fatalf("open = %+v", r1)
	}
	if again := open(t, a, "s1", wire.KindPlay); again.Node != r1.Node {
		t.Fatalf("play went to %s, the stream is on %s", again.Node, r1.Node)
	}
	r2 := open(t, a, "s2", wire.KindPublish)
	if r2.Node != r1.Node {
		t.Fatalf("the warm node has room for 2 streams, but s2 went to a new node")
	}
	r3 := open(t, a, "s3", wire.KindPublish) // node 1 is full (waitQueue 2): a second node
	if r3.Node == r1.Node {
		t.Fatal("s3 was put on a full node")
	}
	if n := len(nodesOf(a)); n != 2 {
		t.Fatalf("%d nodes, want 2", n)
	}
	if err := a.Manager().RecycleNode(r3.Node); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "s3 moves to a replacement node", 5*time.Second, func() bool {
		r, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "s3", Kind: wire.KindPlay})
		return err == nil && r.Node != r3.Node && r.Epoch > r3.Epoch
	})
}

func TestTheWaitQueueServesInOrderAndTimesOutWithAClearError(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 1, WaitQueue: 1}}, func(c *Config) { c.QueueTimeout = 3 * time.Second })
	first := open(t, a, "q0", wire.KindPublish)
	order := make(chan string, 2)
	for _, s := range []string{"q1", "q2"} {
		go func() {
			if _, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: s, Kind: wire.KindPublish, Gateway: "gw"}); err == nil {
				order <- s
			} else {
				order <- s + ": " + err.Error()
			}
		}()
		waitFor(t, s+" queued", 2*time.Second, func() bool { return a.Status().Pools[0].Queued >= 1 })
		time.Sleep(50 * time.Millisecond)
	}
	if q := a.Status().Pools[0].Queued; q != 2 {
		t.Fatalf("queued = %d, want 2", q)
	}
	// The tags gateways place and throttle by: one stream carried, two waiting,
	// one process allowed.
	if tags := a.tags(wire.StateServing); tags[wire.TagLoad] != "1" || tags[wire.TagQueue] != "2" || tags[wire.TagConcurrent] != "1" {
		t.Fatalf("tags with the pool full and two waiting: load %s, queue %s, conc %s; want 1, 2, 1",
			tags[wire.TagLoad], tags[wire.TagQueue], tags[wire.TagConcurrent])
	}
	// Free the node: q1 (first in) gets it; q2 waits on and times out.
	if err := a.Manager().CloseSession(first.Session); err != nil {
		t.Fatal(err)
	}
	if got := <-order; got != "q1" {
		t.Fatalf("first served: %s, want q1", got)
	}
	got := <-order
	if !strings.Contains(got, "q2: ") || !strings.Contains(got, "queue timeout") && !strings.Contains(got, "busy for the whole queue") {
		t.Fatalf("q2: %s; want a queue timeout error", got)
	}
}

func TestOpenRefusesWhatItCannotPlaceWithTheErrorCallersBranchOn(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {}})
	open(t, a, "cam", wire.KindPublish)
	for _, c := range []struct {
		req  wire.OpenRequest
		want error
	}{
		{wire.OpenRequest{Stream: "nobody", Kind: wire.KindPlay, Gateway: "gw"}, ErrNotLive},
		{wire.OpenRequest{Stream: "cam", Kind: wire.KindPublish, Gateway: "other-gw"}, ErrBusy},
		{wire.OpenRequest{Stream: "x", Purpose: "transcode", Kind: wire.KindPublish, Gateway: "gw"}, ErrNoPurpose},
	} {
		if _, err := a.Manager().Open(context.Background(), c.req); !errors.Is(err, c.want) {
			t.Errorf("%+v: err = %v, want %v", c.req, err, c.want)
		}
	}
	if err := a.Manager().CloseSession("s-unknown"); !errors.Is(err, ErrNoSuchSess) {
		t.Errorf("closing an unknown session: %v", err)
	}
	if err := a.Manager().RecycleNode("relay-unknown"); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("recycling an unknown node: %v", err)
	}
}
