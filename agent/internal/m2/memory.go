// Package m2 gives node pools the settings of M2's process section and their
// meanings: a pool's limits and their defaults, what a memory setting means in
// bytes, the limits M2 derives from the machine's memory when a pool leaves
// them automatic, and the inspection schedules.
package m2

import (
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// Usage is M2's memoryUsage: the percentages of the machine's memory that
// sluice may use, and of that, that its own processes may.
type Usage struct {
	TotalUsableRatio int // percent of the machine's memory; default 100
	WorkingRatio     int // percent of that; default 60
}

// maxBytes is the largest memory setting taken, 1 PiB: far past any machine,
// and far from overflowing the arithmetic.
const maxBytes = int64(1) << 50

var sizeRE = regexp.MustCompile(`^(?i)(\d+)([kmg]?)b?$`)

// Parse turns a pool's memory setting into bytes, given what auto is: "auto"
// (or empty), a percentage of auto ("120%"), or a size ("1024m", "2g").
func Parse(s string, auto int64) (int64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || strings.EqualFold(s, "auto"):
		return auto, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil || p <= 0 || p > 1000 {
			return 0, fmt.Errorf("%q: a percentage of auto must be 1%%..1000%%", s)
		}
		return auto * int64(p) / 100, nil
	}
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q: want auto, a percentage of auto (120%%) or a size (1024m, 2g)", s)
	}
	unit := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[strings.ToLower(m[2])]
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > maxBytes/unit {
		return 0, fmt.Errorf("%q: more than %d GiB", s, maxBytes>>30)
	}
	n *= unit
	if n < 4<<20 {
		return 0, fmt.Errorf("%q: a node needs at least 4m", s)
	}
	return n, nil
}

// Auto derives one node's "auto" memory limit as M2 does for its render
// workers, from the spare memory outside M2's own share:
//
//	working = total × totalUsableRatio% × workingRatio%
//	spare   = free − working
//	limit   = 1 GiB when spare ≥ 3 GiB, else 500 MiB
//
// total and free are the machine's memory and its available memory, in bytes.
func Auto(total, free int64, u Usage) int64 {
	if free-Working(total, u) >= 3<<30 {
		return 1 << 30
	}
	return 500 << 20
}

// Working is M2's memory for its own use: totalUsableRatio percent of the
// machine's memory, and workingRatio percent of that.
func Working(total int64, u Usage) int64 {
	return total * int64(u.TotalUsableRatio) / 100 * int64(u.WorkingRatio) / 100
}

// Concurrent derives a pool's process limit from the working memory budget
// and the node limit, never more than the CPU count.
func Concurrent(total int64, u Usage, perNode int64) int {
	n := int(Working(total, u) / max(perNode, 1))
	return max(1, min(n, runtime.NumCPU()))
}
