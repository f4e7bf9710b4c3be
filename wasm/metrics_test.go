package wasm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// A guest that makes up a new metric name per call gets GuestMetricLimit
// series of its own; the rest add up in name="_other".
func TestAGuestsMetricNamesAreBoundedAndTheRestSummed(t *testing.T) {
	set := metrics.NewSet()
	g := guestMetrics{set: set, slot: SlotRoute}
	for i := range 1000 {
		g.add(fmt.Sprintf("n%d", i), 1)
	}
	g.add("n0", -1) // a guest may count down
	var b bytes.Buffer
	set.WritePrometheus(&b)
	page := b.String()
	if n := strings.Count(page, "sluice_plugin_counter{"); n != GuestMetricLimit+1 {
		t.Errorf("1,000 names made %d series, want %d (the limit and _other)", n, GuestMetricLimit+1)
	}
	if want := fmt.Sprintf(`sluice_plugin_counter{slot="route",name="_other"} %d`, 1000-GuestMetricLimit); !strings.Contains(page, want) {
		t.Errorf("the page lacks %s:\n%s", want, page)
	}
	if !strings.Contains(page, `sluice_plugin_counter{slot="route",name="n0"} 0`) {
		t.Errorf("a negative delta was not applied:\n%s", page)
	}
}
