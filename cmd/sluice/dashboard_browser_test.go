package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// dashboardBrowser is a headless Chromium tab with the flags that work here
// as root with no network (the same as pageRoundTrip's).
func dashboardBrowser(t *testing.T, bin string) context.Context {
	opts := append(chromiumOptions(t, bin, true), chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	return tab
}

// artefactDir is where a test keeps what a person would look at:
// $SLUICE_ARTIFACTS, else the test's temporary directory.
func artefactDir(t *testing.T) string {
	if d := os.Getenv("SLUICE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// The dashboard at / shows, in headless Chromium, the cluster member, the
// live stream the test publishes and plays, the node carrying it in the
// process table and the module the test swapped into the route slot; its four
// live charts draw; and a screenshot is kept.
func TestTheDashboardShowsTheLiveStreamNodeAndPluginAndDrawsItsCharts(t *testing.T) {
	bin := chromium(t)
	_, base := startDev(t)
	mod, err := os.ReadFile("../../plugins/route-least-loaded.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := do(t, http.MethodPut, base+"/v1/plugins/route", "application/wasm", string(mod), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/plugins/route = %d %s", resp.StatusCode, body)
	}
	sum := sha256.Sum256(mod)
	sha := hex.EncodeToString(sum[:])[:16]
	liveStream(t, ctxT(t, 90*time.Second), base, "dash-cam")
	var node string
	until(t, "the stream placed on a node", 10*time.Second, func() bool {
		_, body := get(t, base+"/v1/streams/dash-cam")
		var v struct{ Node string }
		_ = json.Unmarshal([]byte(body), &v)
		node = v.Node
		return node != ""
	})

	tab := dashboardBrowser(t, bin)
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#members")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, sel, want string }{
		{"the cluster section", "members", "gateway,agent"},
		{"the stream list", "streams", "dash-cam"},
		{"the process table", "procs", node},
		{"the policy slots", "slots", sha},
	} {
		wait, cancel := context.WithTimeout(tab, 15*time.Second)
		_, err := chromedp.Run(wait, chromedp.Poll[bool](`document.getElementById("`+c.sel+`").textContent.includes(`+jsString(c.want)+`)`))
		cancel()
		if err != nil {
			text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s never showed %q: %v\npage:\n%s", c.what, c.want, err, text)
		}
	}
	if text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("streams").textContent`)); !strings.Contains(text, "whip") || !strings.Contains(text, "kbit/s") {
		t.Errorf("the stream row lacks its protocol or bitrate: %q", text)
	}

	// Each chart has drawn more than one point, and its canvas has ink.
	wait, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wait, chromedp.Poll[bool](`Object.values(window.sluiceChartPoints()).every((n) => n > 1)`)); err != nil {
		pts, _ := chromedp.Run(tab, chromedp.Evaluate[map[string]int](`window.sluiceChartPoints()`))
		t.Fatalf("the live charts did not draw two points each: %v (%v)", pts, err)
	}
	inked, err := chromedp.Run(tab, chromedp.Evaluate[[]bool](`[...document.querySelectorAll(".chart canvas")].map((c) => {
		const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
		return false;
	})`))
	if err != nil || len(inked) != 4 || slices.Contains(inked, false) {
		t.Fatalf("the four chart canvases, inked: %v (%v)", inked, err)
	}

	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artefactDir(t), "dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the dashboard: %s", path)
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// With auth on, the dashboard shows nothing of the cluster without a token and
// says why; with a read-role token in the URL fragment it shows every section.
func TestTheDashboardReadsTheAPIWithThePagesTokenOnly(t *testing.T) {
	bin := chromium(t)
	cfgPath, _ := authConfig(t)
	_, base := startDev(t, "--config", cfgPath)
	readTok := sluiceToken(t, "--config", cfgPath, "--stream", "*", "--allow", "play", "--role", "read")
	tab := dashboardBrowser(t, bin)
	poll := func(what, expr string) {
		t.Helper()
		wait, cancel := context.WithTimeout(tab, 15*time.Second)
		defer cancel()
		if _, err := chromedp.Run(wait, chromedp.Poll[bool](expr)); err != nil {
			text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, text)
		}
	}
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	poll("without a token, every section says 401", `["clusterStatus", "listStatus", "procStatus", "slotStatus"].every((id) => document.getElementById(id).textContent.startsWith("401"))`)
	if n, _ := chromedp.Run(tab, chromedp.Evaluate[int](`document.getElementById("members").rows.length + document.getElementById("procs").rows.length + document.getElementById("slots").rows.length`)); n != 0 {
		t.Fatalf("without a token the page shows %d rows of the cluster", n)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/#token="+readTok), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	poll("with a read token, the member, the node and the slots", `document.getElementById("members").textContent.includes("gateway,agent") && document.getElementById("procs").textContent.includes("relay-") && document.getElementById("slots").textContent.includes("builtin:")`)
}
