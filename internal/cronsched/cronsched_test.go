package cronsched

import (
	"testing"
	"time"
)

func TestNextFiresWhereM2sSchedulesSay(t *testing.T) {
	at := time.Date(2026, 11, 24, 3, 10, 7, 500, time.UTC)
	for _, c := range []struct {
		spec string
		want time.Time
	}{
		{"5 * * * * *", time.Date(2026, 11, 24, 3, 11, 5, 0, time.UTC)},
		{"*/10 * * * * *", time.Date(2026, 11, 24, 3, 10, 10, 0, time.UTC)},
		{"0 0 4 * * *", time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)},
		{"0 0 2 * * *", time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)},
		{"0 30 3-5 * * 1-5", time.Date(2026, 11, 24, 3, 30, 0, 0, time.UTC)},
		{"0,30 * * * * *", time.Date(2026, 11, 24, 3, 10, 30, 0, time.UTC)},
	} {
		s, err := Parse(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if got := s.Next(at); !got.Equal(c.want) {
			t.Errorf("%s: next after %s = %s, want %s", c.spec, at, got, c.want)
		}
	}
}

func TestBadSchedulesAreRefusedSayingWhichField(t *testing.T) {
	for spec, field := range map[string]string{
		"* * * * *":     "6 fields",
		"61 * * * * *":  "second",
		"* * 25 * * *":  "hour",
		"* * * 0 * *":   "day of month",
		"* */0 * * * *": "minute step",
		"* * * * jan *": "month",
		"* * * * * 2-1": "day of week",
	} {
		if _, err := Parse(spec); err == nil || !contains(err.Error(), field) {
			t.Errorf("%q: err = %v, want it to name %s", spec, err, field)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"5 * * * * *", "*/3 1-5 0 1 1 0", "0,1,2 * * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		_ = s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	})
}
