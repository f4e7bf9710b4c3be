package logring

import (
	"context"
	"io"
	"slices"
	"strconv"
	"testing"
)

func TestTheRingKeepsTheLastLinesAndFollowersSeeNewOnesUntilTheOutputEnds(t *testing.T) {
	r := New(3)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() { r.CopyFrom(pr); close(done) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, more := r.Follow(ctx, true)
	for i := range 6 {
		if _, err := io.WriteString(pw, "line "+strconv.Itoa(i)+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		if got, want := <-more, "line "+strconv.Itoa(i); got != want {
			t.Fatalf("the follower got %q, want %q", got, want)
		}
	}
	past, _ := r.Follow(ctx, false)
	if want := []string{"line 3", "line 4", "line 5"}; !slices.Equal(past, want) {
		t.Fatalf("the ring kept %q, want the last three lines %q", past, want)
	}
	pw.Close()
	<-done
	if _, ok := <-more; ok {
		t.Fatal("the follower's channel stayed open after the output ended")
	}
	if _, ch := r.Follow(ctx, true); ch != nil {
		t.Fatal("following an ended output gave a channel that would never close")
	}
}

func TestAFollowerThatGoesAwayIsDropped(t *testing.T) {
	r := New(10)
	ctx, cancel := context.WithCancel(context.Background())
	_, more := r.Follow(ctx, true)
	cancel()
	if _, ok := <-more; ok {
		t.Fatal("a follower's channel stayed open after its context ended")
	}
	r.Add("after") // must not block or panic on the closed channel
}
