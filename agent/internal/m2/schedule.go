package m2

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser reads inspection schedules. Six fields are M2's form, with seconds
// first ("5 * * * * *": second 5 of every minute); the seconds field is optional,
// so a classic five-field crontab line ("30 3 * * *") also works and fires at
// second 0. Descriptors (@hourly, @daily, @every 90s) are accepted too. Day of
// month and day of week follow cron: when both are restricted, a day matching
// either fires.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule reads an inspection schedule (agent.Inspection.Schedule): a Go duration (at least 1s) between
// snapshots, or a cron schedule (see cronParser). It returns the function that
// gives the next snapshot time after a given time.
func ParseSchedule(spec string) (func(time.Time) time.Time, error) {
	if d, err := time.ParseDuration(spec); err == nil {
		if d < time.Second {
			return nil, fmt.Errorf("%s is under 1s", d)
		}
		return func(t time.Time) time.Time { return t.Add(d) }, nil
	}
	sched, err := parseCron(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a duration nor a cron schedule: %w", spec, err)
	}
	// A schedule that matches no date (30 February) would make every check due.
	if sched.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("%q never fires", spec)
	}
	return sched.Next, nil
}

// parseCron is cronParser.Parse, minus its panics: robfig/cron v3.0.1 slices out
// of range on a time-zone prefix with nothing after it ("TZ=UTC"), and a config
// value must never crash the agent.
func parseCron(spec string) (s cron.Schedule, err error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, errors.New("a time-zone prefix needs a schedule after it")
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("unparsable schedule: %v", r)
		}
	}()
	return cronParser.Parse(spec)
}
