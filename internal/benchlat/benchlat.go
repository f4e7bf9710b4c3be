// Package benchlat reports a benchmark's latency percentiles: it times every
// operation on its own, so a benchmark can show the p50 and p99 a caller sees,
// not only the mean that ns/op gives.
package benchlat

import (
	"slices"
	"testing"
	"time"
)

// Report runs f b.N times, timing each run, and reports the 50th and 99th
// percentiles in microseconds as the metrics p50-µs and p99-µs.
func Report(b *testing.B, f func()) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		f()
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	Percentiles(b, lat)
}

// Percentiles reports the 50th and 99th percentiles of latencies a benchmark
// timed itself (when only part of each iteration counts), in microseconds as
// p50-µs and p99-µs. It sorts lat.
func Percentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
