package wasm

import (
	"fmt"
	"io"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// callBuckets are the upper bounds of a policy call's duration: a built-in
// answers in microseconds, and a slot's deadline is a few milliseconds.
var callBuckets = []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, .1}

// GuestMetricLimit is how many names a slot's guest may give its own series
// (metric_add): the rest are summed into name="_other", so a guest that makes
// up a name per request cannot grow the page without bound.
const GuestMetricLimit = 64

// guestMetrics are one slot's guest-defined series,
// sluice_plugin_counter{slot,name}: gauges, since a guest may add a negative
// delta.
type guestMetrics struct {
	set  *metrics.Set
	slot string

	mu    sync.Mutex
	names map[string]*metrics.Gauge
}

func (g *guestMetrics) add(name string, delta int64) {
	g.mu.Lock()
	m := g.names[name]
	if m == nil {
		if len(g.names) >= GuestMetricLimit {
			name = "_other"
			m = g.names[name]
		}
		if m == nil {
			if g.names == nil {
				g.names = map[string]*metrics.Gauge{}
			}
			m = g.set.NewGauge(fmt.Sprintf(`sluice_plugin_counter{slot=%q,name=%q}`, g.slot, name), nil)
			g.names[name] = m
		}
	}
	g.mu.Unlock()
	m.Add(float64(delta))
}

// writeMetrics writes the per-slot counters and the module each slot runs. They
// are read at scrape time from the slots' own counts, which /v1/plugins shows
// too, so the two never disagree.
func (h *Host) writeMetrics(w io.Writer) {
	var slots []*slot
	for _, name := range slotNames {
		if s := h.slots[name]; s != nil {
			slots = append(slots, s)
		}
	}
	counter := func(family string, v func(s *slot) uint64) {
		metrics.WriteMetadataIfNeeded(w, family, "counter")
		for _, s := range slots {
			fmt.Fprintf(w, "%s{slot=%q} %d\n", family, s.name, v(s))
		}
	}
	counter("sluice_plugin_calls_total", func(s *slot) uint64 { return s.calls.Load() })
	counter("sluice_plugin_traps_total", func(s *slot) uint64 { return s.traps.Load() })
	counter("sluice_plugin_fallbacks_total", func(s *slot) uint64 { return s.fallbacks.Load() })
	counter("sluice_plugin_swaps_total", func(s *slot) uint64 { return s.swaps.Load() })
	metrics.WriteMetadataIfNeeded(w, "sluice_plugin_breaker_open", "gauge")
	for _, s := range slots {
		open := 0
		if s.breakerOpen() {
			open = 1
		}
		fmt.Fprintf(w, "sluice_plugin_breaker_open{slot=%q} %d\n", s.name, open)
	}
	metrics.WriteMetadataIfNeeded(w, "sluice_plugin_module_info", "gauge")
	for _, s := range slots {
		if m := s.cur.Load(); m != nil {
			fmt.Fprintf(w, "sluice_plugin_module_info{slot=%q,sha256=%q} 1\n", s.name, m.info.SHA256)
		}
	}
}
