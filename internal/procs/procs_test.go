package procs

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// The controller goes to every core after a second of a busy P, stays there
// through short lulls, and comes back to one P only after ten quiet seconds;
// a single busy sample does not move it.
func TestGOMAXPROCSFollowsSustainedLoadNotSpikes(t *testing.T) {
	p := &policy{max: 4, procs: 1}
	steps := []struct {
		used float64
		want int
	}{
		{0.9, 1}, {0.1, 1}, // a spike alone
		{0.8, 1}, {0.7, 4}, // busy for two samples: every core
		{0.1, 4}, {0.1, 4}, {0.9, 4}, // a lull, then busy again: the count starts over
	}
	for i, s := range steps {
		if got := p.next(s.used); got != s.want {
			t.Fatalf("step %d (%.1f cores used): GOMAXPROCS %d, want %d", i, s.used, got, s.want)
		}
	}
	for i := range downSamples - 1 {
		if got := p.next(0.1); got != 4 {
			t.Fatalf("quiet sample %d: back to %d before %d quiet samples", i, got, downSamples)
		}
	}
	if got := p.next(0.1); got != 1 {
		t.Fatalf("after %d quiet samples GOMAXPROCS is %d, want 1", downSamples, got)
	}
}

// An operator's GOMAXPROCS is left alone; without one, Run runs the process
// on one P while it is idle and puts the start value back when it ends.
func TestRunLeavesAnOperatorsGOMAXPROCSAloneAndRestoresItsOwn(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one core: Run has nothing to size")
	}
	start := runtime.GOMAXPROCS(0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMAXPROCS", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*Interval)
	Run(ctx, log)
	cancel()
	if got := runtime.GOMAXPROCS(0); got != start {
		t.Fatalf("with GOMAXPROCS set, Run changed it to %d", got)
	}

	t.Setenv("GOMAXPROCS", "")
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, log); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("an idle process did not go to one P")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := runtime.GOMAXPROCS(0); got != start {
		t.Fatalf("after Run, GOMAXPROCS is %d, want the start value %d", got, start)
	}
}
