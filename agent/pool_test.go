package agent

import (
	"strings"
	"testing"
	"time"
)

func testPool(recovery, maxRestarts int, period time.Duration) *pool {
	return newPool("relay", Pool{Recovery: recovery, Intensity: Intensity{MaxRestarts: maxRestarts, Period: period}}, 0, 1)
}

func TestTheRecoveryBudgetAllowsSoManyFaultRestartsADayAndCountsAfreshTheNextDay(t *testing.T) {
	p := testPool(3, 100, time.Second)
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.Local) }
	for h := 10; h < 13; h++ {
		if why := p.recordFault(day(2, h)); why != "" || p.failed != "" {
			t.Fatalf("restart %d of a budget of 3 failed the pool: %q", h-9, why)
		}
	}
	why := p.recordFault(day(2, 13))
	if !strings.Contains(why, "4 restarts today, over the recovery budget of 3") || p.failed != why {
		t.Fatalf("the 4th restart of the day: reason %q, pool failed %q", why, p.failed)
	}
	if again := p.recordFault(day(2, 14)); again != "" || p.failed != why {
		t.Fatalf("a restart of a failed pool reported %q and changed the reason to %q", again, p.failed)
	}

	q := testPool(3, 100, time.Second)
	for h := 10; h < 13; h++ {
		q.recordFault(day(2, h))
	}
	if why := q.recordFault(day(3, 0)); why != "" || q.budget.today != 1 {
		t.Fatalf("the first restart of a new day: reason %q, %d counted today", why, q.budget.today)
	}
}

func TestTheRecoveryBudgetIsSetAgainAtMidnightNotOnAnotherDayOfTheYear(t *testing.T) {
	at := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.Local)
	}
	p := testPool(2, 100, time.Second)
	p.recordFault(at(2026, 3, 2, 23, 59, 58))
	p.recordFault(at(2026, 3, 2, 23, 59, 59))
	if why := p.recordFault(at(2026, 3, 3, 0, 0, 0)); why != "" || p.budget.today != 1 {
		t.Fatalf("the first restart after midnight: %q, %d counted today; want the budget set again", why, p.budget.today)
	}
	// A year later on the same day of the year is another day too.
	q := testPool(2, 100, time.Second)
	q.recordFault(at(2026, 3, 2, 10, 0, 0))
	q.recordFault(at(2026, 3, 2, 11, 0, 0))
	if why := q.recordFault(at(2027, 3, 2, 10, 0, 0)); why != "" {
		t.Fatalf("a restart a year later on the same day of the year: %q; want a fresh budget", why)
	}
	// And a restart at 23:59:59 still counts against the day it is in.
	r := testPool(2, 100, time.Second)
	r.recordFault(at(2026, 3, 2, 0, 0, 0))
	r.recordFault(at(2026, 3, 2, 12, 0, 0))
	if why := r.recordFault(at(2026, 3, 2, 23, 59, 59)); !strings.Contains(why, "3 restarts today") {
		t.Fatalf("the third restart of one day at 23:59:59: %q; want the pool failed", why)
	}
}

func TestTheIntensityLimitFailsAPoolThatRestartsTooOftenWithinItsPeriod(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local)
	p := testPool(100, 5, 10*time.Second)
	for i := range 5 {
		if why := p.recordFault(t0.Add(time.Duration(i) * time.Second)); why != "" {
			t.Fatalf("restart %d of 5 allowed in 10s: %q", i+1, why)
		}
	}
	if why := p.recordFault(t0.Add(5 * time.Second)); !strings.Contains(why, "6 restarts within 10s, over the intensity limit of 5") {
		t.Fatalf("the 6th restart within 10s: %q", why)
	}

	// Restarts spread out never have more than 4 in any 10 s: the window slides.
	q := testPool(100, 5, 10*time.Second)
	for i := range 30 {
		if why := q.recordFault(t0.Add(time.Duration(i) * 3 * time.Second)); why != "" {
			t.Fatalf("restart %d, 3 s after the previous one: %q", i+1, why)
		}
	}
}

func TestRestartBackoffDoublesFrom50msTo5sAndIsForgottenAfterACalmPeriod(t *testing.T) {
	p := testPool(100, 100, 10*time.Second)
	want := []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local)
	for i, w := range want {
		p.recordFault(t0)
		if got := p.budget.nextDelay(); got != w {
			t.Fatalf("restart %d waits %s, want %s", i+1, got, w)
		}
	}
	p.budget.settle(t0.Add(9 * time.Second))
	if got := p.budget.nextDelay(); got != 5*time.Second {
		t.Fatalf("within the intensity period of the last restart the backoff is %s, want it kept at 5s", got)
	}
	p.budget.settle(t0.Add(11 * time.Second))
	if got := p.budget.nextDelay(); got != 0 {
		t.Fatalf("after a calm period the next restart waits %s, want at once", got)
	}
}

func TestTheWaitQueueServesTheLongestWaitingFirstAndIsBounded(t *testing.T) {
	p := testPool(1, 1, time.Second)
	ws := make([]*waiter, 3)
	for i := range ws {
		ws[i] = &waiter{ready: make(chan struct{}, 1)}
		if !p.enqueue(ws[i], 3) {
			t.Fatalf("waiter %d refused by a queue of 3", i)
		}
	}
	if p.enqueue(&waiter{ready: make(chan struct{}, 1)}, 3) {
		t.Fatal("a 4th waiter joined a queue limited to 3")
	}
	p.leave(ws[1]) // its request timed out
	woken := func() int {
		for i, w := range ws {
			select {
			case <-w.ready:
				return i
			default:
			}
		}
		return -1
	}
	p.wakeFirst()
	if i := woken(); i != 0 {
		t.Fatalf("first woken: waiter %d, want 0", i)
	}
	p.wakeFirst()
	if i := woken(); i != 2 {
		t.Fatalf("second woken: waiter %d, want 2 (1 left the queue)", i)
	}
	p.wakeFirst() // empty: nothing happens
	if i := woken(); i != -1 || len(p.queue) != 0 {
		t.Fatalf("an empty queue woke waiter %d", i)
	}
}
