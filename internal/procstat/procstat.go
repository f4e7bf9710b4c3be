// Package procstat reads a process's resident memory and CPU time from /proc, for
// heartbeats, the status table and benchmarks.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTick is Linux's USER_HZ, the unit of CPU times in /proc/PID/stat.
const ClockTick = time.Second / 100

// Sample is one reading of a process.
type Sample struct {
	RSS   int64         // bytes
	CPU   time.Duration // user + system, dead threads included
	Start time.Duration // since boot
	PPID  int
	State byte
}

// Read reads /proc/PID/stat and /proc/PID/statm. pid 0 means this process.
func Read(pid int) (Sample, error) {
	p := "self"
	if pid != 0 {
		p = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + p + "/stat")
	if err != nil {
		return Sample{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return Sample{}, os.ErrInvalid
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 22 {
		return Sample{}, os.ErrInvalid
	}
	var out Sample
	out.State = f[0][0]
	out.PPID, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	out.CPU = time.Duration(ut+st) * ClockTick
	start, _ := strconv.ParseInt(f[19], 10, 64)
	out.Start = time.Duration(start) * ClockTick
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	out.RSS = rss * int64(os.Getpagesize())
	return out, nil
}

// Children lists the pids whose parent is pid.
func Children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := Read(n); err == nil && s.PPID == pid {
			out = append(out, n)
		}
	}
	return out
}

// Meter turns successive CPU readings of a process into a percentage of one core.
type Meter struct {
	pid     int
	lastCPU time.Duration
	lastAt  time.Time
}

// NewMeter starts measuring pid (0 = this process).
func NewMeter(pid int) *Meter {
	m := &Meter{pid: pid}
	if s, err := Read(pid); err == nil {
		m.lastCPU, m.lastAt = s.CPU, time.Now()
	}
	return m
}

// Sample returns the RSS and the CPU use since the last call, in percent of one core.
func (m *Meter) Sample() (rss int64, cpuPercent float64) {
	s, err := Read(m.pid)
	if err != nil {
		return 0, 0
	}
	now := time.Now()
	if !m.lastAt.IsZero() {
		if d := now.Sub(m.lastAt); d > 0 {
			cpuPercent = 100 * float64(s.CPU-m.lastCPU) / float64(d)
		}
	}
	m.lastCPU, m.lastAt = s.CPU, now
	return s.RSS, cpuPercent
}

// MemInfo returns the machine's total and available memory in bytes.
func MemInfo() (total, avail int64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total, avail
}
