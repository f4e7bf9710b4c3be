package m2

import (
	"strings"
	"testing"
)

func TestAutoMemoryIsWhatMemoryUsageLeavesAsM2DerivesIt(t *testing.T) {
	const gib = int64(1) << 30
	for _, c := range []struct {
		total, free  int64
		usable, work int
		limit        int64
		name         string
	}{
		{16 * gib, 12 * gib, 100, 60, 500 << 20, "defaults: 12 − 9.6 GiB spare < 3 GiB"},
		{16 * gib, 12 * gib, 100, 50, 1 * gib, "workingRatio 50: 12 − 8 = 4 GiB spare"},
		{16 * gib, 12 * gib, 50, 60, 1 * gib, "totalUsableRatio 50: 12 − 4.8 GiB spare"},
		{16 * gib, 12 * gib, 80, 75, 500 << 20, "both ratios: 12 − 9.6 GiB spare < 3 GiB"},
		{16 * gib, 12 * gib, 80, 70, 1 * gib, "both ratios: 12 − 8.96 GiB spare"},
		{64 * gib, 60 * gib, 100, 60, 1 * gib, "a big machine: 60 − 38.4 GiB spare"},
		{4 * gib, 1 * gib, 100, 60, 500 << 20, "less free than the working share"},
		{8 * gib, 8 * gib, 100, 64, 500 << 20, "8 − 5.12 GiB: just under 3 GiB spare"},
		{10 * gib, 8 * gib, 100, 50, 1 * gib, "8 − 5 = exactly 3 GiB spare"},
	} {
		u := Usage{TotalUsableRatio: c.usable, WorkingRatio: c.work}
		if got := Auto(c.total, c.free, u); got != c.limit {
			t.Errorf("%s: auto = %d MiB, want %d MiB", c.name, got>>20, c.limit>>20)
		}
	}
}

func TestAMemorySettingIsAutoAPercentageOfAutoOrASize(t *testing.T) {
	const auto = 500 << 20
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"", auto, ""}, {"auto", auto, ""}, {" AUTO ", auto, ""},
		{"120%", auto * 120 / 100, ""}, {"1024m", 1 << 30, ""}, {"2g", 2 << 30, ""},
		{"4194304", 4 << 20, ""}, {"8192K", 8 << 20, ""}, {"3mb", 0, "at least 4m"},
		{"0%", 0, "1%..1000%"}, {"1001%", 0, "1%..1000%"}, {"lots", 0, "want auto"},
		{"99999999999999999999g", 0, "more than"}, {"2000000g", 0, "more than"},
	} {
		got, err := Parse(c.in, auto)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Parse(%q) = %d, %v; want an error saying %q", c.in, got, err, c.err)
		}
	}
}

func FuzzParseNeverOverflows(f *testing.F) {
	for _, s := range []string{"auto", "120%", "1024m", "2g", "99999999999999999999g", "-1m", "4m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s, 1<<30)
		if err == nil && (n < 4<<20 && !strings.HasSuffix(strings.TrimSpace(s), "%") || n < 0) {
			t.Fatalf("Parse(%q) = %d without an error", s, n)
		}
	})
}
