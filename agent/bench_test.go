package agent

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/benchlat"
	"github.com/sluicegw/sluice/internal/wire"
)

// BenchmarkNodeSpawn measures a node process's start to its first heartbeat
// (the agent hears MsgReady, then MsgBeat), and reports p50 and p99.
func BenchmarkNodeSpawn(b *testing.B) {
	a := startAgent(b, map[string]Pool{"relay": {Warm: -1, Concurrent: 1}})
	m := a.Manager()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		m.mu.Lock()
		n, err := m.sup.spawnLocked(m.pools["relay"])
		m.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		<-n.ready
		for {
			m.mu.Lock()
			beat := n.rss > 0 // set by the first MsgBeat
			m.mu.Unlock()
			if beat {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		m.mu.Lock()
		m.sup.retireLocked(n)
		m.mu.Unlock()
		<-n.exited
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkNodeSpawnToReady measures start to MsgReady (the media listener is up,
// so the node can take a stream), p50 and p99.
func BenchmarkNodeSpawnToReady(b *testing.B) {
	a := startAgent(b, map[string]Pool{"relay": {Warm: -1, Concurrent: 1}})
	m := a.Manager()
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		m.mu.Lock()
		n, err := m.sup.spawnLocked(m.pools["relay"])
		m.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		<-n.ready
		lat = append(lat, time.Since(start))
		m.mu.Lock()
		m.sup.retireLocked(n)
		m.mu.Unlock()
		<-n.exited
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkWarmAcquire measures getNode for a new stream when a warm node with
// room is running: Open on the agent's node manager, then Close.
func BenchmarkWarmAcquire(b *testing.B) {
	a := startAgent(b, map[string]Pool{"relay": {}})
	m := a.Manager()
	waitFor(b, "a warm node", 10*time.Second, func() bool {
		ns := nodesOf(a)
		return len(ns) == 1 && ns[0].State == nodeRunning
	})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r, err := m.Open(context.Background(), wire.OpenRequest{Stream: fmt.Sprintf("w-%d", i), Kind: wire.KindPublish, Gateway: "gw"})
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		_ = m.CloseSession(r.Session)
	}
	b.StopTimer()
	benchlat.Percentiles(b, lat)
	if n := len(nodesOf(a)); n != 1 {
		b.Fatalf("%d nodes after %d acquisitions: the warm node was not reused", n, b.N)
	}
}
