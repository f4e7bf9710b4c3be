package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium binary, or says why the browser test cannot run.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("SLUICE_REQUIRE_BROWSER") != "" {
		t.Fatal("SLUICE_REQUIRE_BROWSER is set but no Chromium was found (apt-get install -y chromium)")
	}
	t.Skip("SKIPPED: the real-browser WHIP/WHEP test needs Chromium (apt-get install -y chromium); .ci/run installs it and requires it")
	return ""
}

// TestChromiumPublishesFromThePageAndASecondPageDecodesTheStream drives the page at
// / in headless Chromium: one tab publishes its fake camera over WHIP, a second
// tab plays over WHEP, and the viewer's getStats() must show decoded frames rising.
func TestChromiumPublishesFromThePageAndASecondPageDecodesTheStream(t *testing.T) {
	bin := chromium(t)
	_, base := startDev(t)
	pageRoundTrip(t, bin, base+"/", base+"/", "", false)
}

// With auth on, the page takes its token from the URL fragment (the
// publisher's tab) or typed in (the viewer's, whose token also has the read
// role): both tabs work as without auth, and the viewer's stream list shows
// the stream.
func TestChromiumPageUsesItsTokenForPublishPlayAndTheStreamList(t *testing.T) {
	bin := chromium(t)
	cfgPath, _ := authConfig(t)
	_, base := startDev(t, "--config", cfgPath)
	pubTok := sluiceToken(t, "--config", cfgPath, "--stream", "browser-cam", "--allow", "publish")
	viewTok := sluiceToken(t, "--config", cfgPath, "--stream", "browser-*", "--allow", "play", "--role", "read")
	pageRoundTrip(t, bin, base+"/#token="+pubTok, base+"/", viewTok, true)
}

// chromiumOptions are the flags every browser test starts Chromium with:
// headless, as root without a sandbox, a profile of its own, nothing fetched
// in the background; without QUIC unless the test needs it (WebTransport).
func chromiumOptions(t *testing.T, bin string, noQUIC bool) []chromedp.ExecAllocatorOption {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Debian's launcher adds this only when its check of /dev/shm works,
		// and that check fails where findmnt sees more than one mount.
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	if noQUIC {
		opts = append(opts, chromedp.Flag("disable-quic", true))
	}
	return opts
}

// pageRoundTrip drives the page in headless Chromium: a tab at pubURL
// publishes its fake camera over WHIP as browser-cam, a second tab at viewURL
// (with viewToken typed in, if set) plays it over WHEP, and the viewer's
// getStats() must show decoded frames rising; with listed, the viewer's
// stream list must show the stream.
func pageRoundTrip(t *testing.T, bin, pubURL, viewURL, viewToken string, listed bool) {
	opts := append(chromiumOptions(t, bin, true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	pubTab, cancelPub := chromedp.NewContext(actx)
	defer cancelPub()

	if err := chromedp.Do(pubTab,
		chromedp.Navigate(pubURL),
		chromedp.WaitVisible("#publish"),
		chromedp.SetValue("#stream", "browser-cam"),
		chromedp.Click("#publish"),
	); err != nil {
		t.Fatal(err)
	}
	// Wait for the publisher to be connected, as the page reports it.
	wait, cancel := context.WithTimeout(pubTab, 20*time.Second)
	_, err := chromedp.Run(wait, chromedp.Poll[bool](`document.getElementById("pubStatus").textContent.endsWith("connected")`))
	cancel()
	if err != nil {
		status, _ := chromedp.Run(pubTab, chromedp.Evaluate[string](`document.getElementById("pubStatus").textContent`))
		t.Fatalf("publisher never connected (page says %q): %v", status, err)
	}
	if href, _ := chromedp.Run(pubTab, chromedp.Evaluate[string](`window.location.href`)); strings.Contains(href, "token=") {
		t.Errorf("the token stayed in the address bar: %s", href)
	}
	viewTab, cancelView := chromedp.NewContext(pubTab) // same browser (it runs now), second tab
	defer cancelView()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(viewURL), chromedp.WaitVisible("#play"), chromedp.SetValue("#stream", "browser-cam")}
	if viewToken != "" {
		steps = append(steps, chromedp.SetValue("#token", viewToken))
	}
	if err := chromedp.Do(viewTab, append(steps, chromedp.Click("#play"))...); err != nil {
		t.Fatal(err)
	}
	frames := func() int {
		n, err := chromedp.Run(viewTab, chromedp.Evaluate[int](`window.sluiceFramesDecoded()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Logf("getStats: %v", err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	first := -1
	for {
		n := frames()
		if n > 0 && first < 0 {
			first = n
		}
		if first > 0 && n >= first+30 {
			t.Logf("viewer decoded %d frames (first seen %d)", n, first)
			break
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(viewTab, chromedp.Evaluate[string](`document.getElementById("playStatus").textContent`))
			t.Fatalf("viewer's framesDecoded did not rise by 30 within 30 s: first %d, now %d (page says %q)", first, n, status)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !listed {
		return
	}
	wait, cancel = context.WithTimeout(viewTab, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wait, chromedp.Poll[bool](`document.getElementById("streams").textContent.includes("browser-cam")`)); err != nil {
		status, _ := chromedp.Run(viewTab, chromedp.Evaluate[string](`document.getElementById("listStatus").textContent`))
		t.Fatalf("the stream list never showed browser-cam (page says %q): %v", status, err)
	}
}
