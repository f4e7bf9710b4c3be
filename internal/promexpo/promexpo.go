// Package promexpo writes a process's /metrics page in Prometheus' text format
// with its metadata: every family gets its TYPE (from
// VictoriaMetrics/metrics) and a HELP text (from Help), and the process and Go
// runtime series are written here under the names Prometheus' own client
// uses, so that `promtool check metrics` passes on the whole page.
package promexpo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/internal/procstat"
)

// ContentType is the text format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Write writes set's series, then the process's, to w with HELP and TYPE
// lines.
func Write(w io.Writer, set *metrics.Set) {
	// The library keeps this setting process-wide; every page sluice writes
	// wants it.
	metrics.ExposeMetadata(true)
	var b bytes.Buffer
	set.WritePrometheus(&b)
	writeProcess(&b)
	bw := bufio.NewWriter(w)
	for line := range strings.Lines(b.String()) {
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "# HELP "); ok && !strings.Contains(name, " ") {
			fmt.Fprintf(bw, "# HELP %s %s\n", name, HelpFor(name))
			continue
		}
		bw.WriteString(line)
	}
	_ = bw.Flush()
}

// HelpFor is a family's HELP text: Help's, or one made from its name for a
// family Help does not know yet (docs/metrics.md must list it all the same).
func HelpFor(family string) string {
	if h, ok := Help[family]; ok {
		return h
	}
	return strings.ReplaceAll(family, "_", " ") + "."
}

// writeProcess writes the process and Go runtime series that Prometheus'
// client_golang writes, with the same names and types.
func writeProcess(w io.Writer) {
	gauge := func(name string, v float64) {
		metrics.WriteMetadataIfNeeded(w, name, "gauge")
		fmt.Fprintf(w, "%s %g\n", name, v)
	}
	if s, err := procstat.Read(0); err == nil {
		metrics.WriteMetadataIfNeeded(w, "process_cpu_seconds_total", "counter")
		fmt.Fprintf(w, "process_cpu_seconds_total %g\n", s.CPU.Seconds())
		gauge("process_resident_memory_bytes", float64(s.RSS))
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		gauge("process_open_fds", float64(len(fds)))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		gauge("process_max_fds", float64(lim.Cur))
	}
	gauge("go_goroutines", float64(runtime.NumGoroutine()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_memstats_heap_alloc_bytes", float64(ms.HeapAlloc))
	metrics.WriteMetadataIfNeeded(w, "go_memstats_mallocs_total", "counter")
	fmt.Fprintf(w, "go_memstats_mallocs_total %d\n", ms.Mallocs)
	gauge("go_memstats_sys_bytes", float64(ms.Sys))
	metrics.WriteMetadataIfNeeded(w, "go_info", "gauge")
	fmt.Fprintf(w, "go_info{version=%q} 1\n", runtime.Version())
}

// LabelValue is s fit to stand inside a %q-quoted label value: %q escapes
// quotes and backslashes as the text format does, and a control character,
// which the format cannot carry, becomes '_'.
func LabelValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}
