// Package cronsched parses the six-field cron schedules M2 uses for process
// inspection ("5 * * * * *": second, minute, hour, day of month, month, day of
// week) and finds the next time one fires.
package cronsched

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed six-field schedule.
type Schedule struct {
	fields [6]uint64 // bit i set: value i allowed
}

var bounds = [6]struct {
	name     string
	min, max int
}{{"second", 0, 59}, {"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 6}}

// Parse reads "S M H DoM Mon DoW" with *, numbers, ranges a-b, steps */n or a-b/n,
// and comma lists. When both day fields are restricted, both must match (not
// either, as in classic cron).
func Parse(spec string) (*Schedule, error) {
	parts := strings.Fields(spec)
	if len(parts) != 6 {
		return nil, fmt.Errorf("schedule %q: want 6 fields (second minute hour day month weekday), got %d", spec, len(parts))
	}
	var s Schedule
	for i, p := range parts {
		b := bounds[i]
		for _, item := range strings.Split(p, ",") {
			lo, hi, step := b.min, b.max, 1
			rng := item
			if r, st, ok := strings.Cut(item, "/"); ok {
				n, err := strconv.Atoi(st)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("schedule %q: %s step %q", spec, b.name, st)
				}
				rng, step = r, n
			}
			if rng != "*" {
				a, c, isRange := strings.Cut(rng, "-")
				x, err := strconv.Atoi(a)
				if err != nil {
					return nil, fmt.Errorf("schedule %q: %s %q is not a number", spec, b.name, a)
				}
				lo, hi = x, x
				if isRange {
					if hi, err = strconv.Atoi(c); err != nil {
						return nil, fmt.Errorf("schedule %q: %s %q is not a number", spec, b.name, c)
					}
				} else if step > 1 {
					hi = b.max
				}
			}
			if lo < b.min || hi > b.max || lo > hi {
				return nil, fmt.Errorf("schedule %q: %s %q is outside %d-%d", spec, b.name, item, b.min, b.max)
			}
			for v := lo; v <= hi; v += step {
				s.fields[i] |= 1 << uint(v)
			}
		}
	}
	return &s, nil
}

func (s *Schedule) has(f, v int) bool { return s.fields[f]&(1<<uint(v)) != 0 }

// Next is the first time after t (to the second) the schedule fires.
func (s *Schedule) Next(t time.Time) time.Time {
	t = t.Truncate(time.Second).Add(time.Second)
	for limit := t.AddDate(5, 0, 0); t.Before(limit); {
		switch {
		case !s.has(4, int(t.Month())):
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, t.Location())
		case !s.has(3, t.Day()) || !s.has(5, int(t.Weekday())):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location())
		case !s.has(2, t.Hour()):
			t = t.Truncate(time.Hour).Add(time.Hour)
		case !s.has(1, t.Minute()):
			t = t.Truncate(time.Minute).Add(time.Minute)
		case !s.has(0, t.Second()):
			t = t.Add(time.Second)
		default:
			return t
		}
	}
	return time.Time{}
}
