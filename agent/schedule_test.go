package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/agent/internal/m2"
)

// scheduleOf validates a config whose inspection schedule is spec, as `sluice
// agent` does with the value of inspection.process.schedule.
func scheduleOf(t *testing.T, spec string) func(time.Time) time.Time {
	t.Helper()
	c, err := Config{ID: "a", Inspection: Inspection{Enable: true, Schedule: spec}}.Validate()
	if err != nil {
		t.Fatalf("schedule %q refused: %v", spec, err)
	}
	return c.Inspection.next
}

func TestInspectionSchedulesFireWhereCronSaysWithTheSecondsFieldFirst(t *testing.T) {
	at := func(day, h, m, s int) time.Time { return time.Date(2026, 3, day, h, m, s, 0, time.Local) }
	start := at(2, 0, 0, 0) // Monday 2 March 2026
	for _, c := range []struct {
		spec string
		want []time.Time
	}{
		// M2's default: second 5 of every minute.
		{"5 * * * * *", []time.Time{at(2, 0, 0, 5), at(2, 0, 1, 5)}},
		{"*/20 * * * * *", []time.Time{at(2, 0, 0, 20), at(2, 0, 0, 40), at(2, 0, 1, 0)}},
		// Noon on the 10th or on Fridays: cron fires on a day that matches either
		// day field when both are restricted (Fri 6th, Tue 10th, Fri 13th).
		{"0 0 12 10 * 5", []time.Time{at(6, 12, 0, 0), at(10, 12, 0, 0), at(13, 12, 0, 0)}},
		{"0 0 12 10 * FRI", []time.Time{at(6, 12, 0, 0), at(10, 12, 0, 0), at(13, 12, 0, 0)}},
		// Only one day field restricted: only it counts.
		{"0 0 12 10 * *", []time.Time{at(10, 12, 0, 0)}},
		{"0 0 12 * * 5", []time.Time{at(6, 12, 0, 0), at(13, 12, 0, 0)}},
		// A classic five-field line has no seconds field: it fires at second 0.
		{"30 3 * * *", []time.Time{at(2, 3, 30, 0), at(3, 3, 30, 0)}},
		{"@hourly", []time.Time{at(2, 1, 0, 0), at(2, 2, 0, 0)}},
		// A Go duration is the time between snapshots.
		{"90s", []time.Time{at(2, 0, 1, 30), at(2, 0, 3, 0)}},
	} {
		next := scheduleOf(t, c.spec)
		got := start
		for i, want := range c.want {
			if got = next(got); !got.Equal(want) {
				t.Errorf("%q: snapshot %d at %s, want %s", c.spec, i+1, got.Format(time.DateTime), want.Format(time.DateTime))
				break
			}
		}
	}
}

func TestABadInspectionScheduleIsRefusedNamingTheField(t *testing.T) {
	for spec, why := range map[string]string{
		"61 * * * * *":                "above maximum",
		"* * 25 * * *":                "above maximum",
		"* * * 0 * *":                 "below minimum",
		"* */0 * * * *":               "step",
		"* * * *":                     "fields",
		"0 0 0 30 2 *":                "never fires", // 30 February
		"500ms":                       "under 1s",
		"TZ=UTC":                      "time-zone prefix",
		"CRON_TZ=Nowhere 5 * * * * *": "location",
	} {
		_, err := Config{ID: "a", Inspection: Inspection{Schedule: spec}}.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "inspection.process.schedule: ") || !strings.Contains(err.Error(), why) {
			t.Errorf("schedule %q: err = %v; want it to name inspection.process.schedule and say %q", spec, err, why)
		}
	}
}

// FuzzInspectionSchedule: any schedule string is refused with an error or gives
// snapshot times that move forward; none crashes the agent.
func FuzzInspectionSchedule(f *testing.F) {
	for _, s := range []string{"5 * * * * *", "*/3 1-5 0 1 1 0", "0,1,2 * * * * *", "30 3 * * *",
		"0 0 12 10 * FRI", "@every 1h", "@daily", "90s", "TZ=UTC", "CRON_TZ=UTC 0 * * * * *", "0 0 0 29 2 *", "? ? ? ? ? ?"} {
		f.Add(s)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local)
	f.Fuzz(func(t *testing.T, spec string) {
		next, err := m2.ParseSchedule(spec)
		if err != nil {
			return
		}
		if got := next(from); !got.After(from) {
			t.Fatalf("%q: next after %s is %s", spec, from, got)
		}
	})
}
