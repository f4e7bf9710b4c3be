package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/mediatest"
)

func do(t *testing.T, method, url, ctype, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestWHIPSessionsTrickleCandidatesHonourETagsRefuseICERestartsAndAllowCORS
// exercises RFC 9725's trickle PATCH and the CORS a page from another origin needs (ICE restarts: icerestart_test.go).
func TestWHIPSessionsTrickleCandidatesHonourETagsAndAllowCORS(t *testing.T) {
	_, base := startDev(t)
	ctx := ctxT(t, 30*time.Second)
	api, _ := mediatest.API()
	pub, err := mediatest.Publish(ctx, api, base, "patchy")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	loc := base + pub.Location
	etag := `"` + pub.Location[strings.LastIndexByte(pub.Location, '/')+1:] + `"`

	resp, _ := do(t, "OPTIONS", base+"/whip/patchy", "", "", map[string]string{"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") == "" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PATCH") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	frag := "a=ice-ufrag:" + remoteUfragOf(pub.PC.LocalDescription().SDP) + "\r\na=mid:0\r\na=candidate:9 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
	resp, body := do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag, map[string]string{"If-Match": etag, "Origin": "https://studio.example"})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("trickle PATCH: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	for _, c := range []struct {
		name, ctype, body string
		hdr               map[string]string
		status            int
	}{
		{"stale ETag", "application/trickle-ice-sdpfrag", frag, map[string]string{"If-Match": `"nope"`}, 412},
		{"wrong content type", "application/sdp", frag, nil, 415},
		{"not a fragment", "application/trickle-ice-sdpfrag", "garbage without equals", nil, 400},
	} {
		resp, body := do(t, "PATCH", loc, c.ctype, c.body, c.hdr)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s; want %d problem", c.name, resp.StatusCode, body, c.status)
		}
	}
	if resp, _ := do(t, "PATCH", base+"/whip/patchy/0000", "application/trickle-ice-sdpfrag", frag, nil); resp.StatusCode != 404 {
		t.Errorf("PATCH of an unknown session: %d", resp.StatusCode)
	}
}

func remoteUfragOf(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// TestOperatorsStartQueryFollowAndStopNodesThroughTheGateway drives the node API
// that the gateway translates into mutual-TLS agent API calls.
func TestOperatorsStartQueryFollowAndStopNodesThroughTheGateway(t *testing.T) {
	_, base := startDev(t)
	resp, body := do(t, "POST", base+"/v1/agents/dev/nodes", "application/json", `{"purpose":"relay"}`, nil)
	var n struct {
		ID, State, Purpose string
		PID                int
	}
	if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &n) != nil || n.ID == "" || n.PID == 0 {
		t.Fatalf("start node: %d %s", resp.StatusCode, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body = do(t, "GET", base+"/v1/agents/dev/nodes/"+n.ID, "", "", nil)
		var cur struct{ State string }
		if json.Unmarshal([]byte(body), &cur) == nil && cur.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never running: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Follow the node's output; its "node ready" line is already there.
	req, _ := http.NewRequest("GET", base+"/v1/agents/dev/nodes/"+n.ID+"/logs?follow=1", nil)
	lresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(lresp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	sawReady := false
	for !sawReady {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the log stream ended before the node's ready line")
			}
			sawReady = strings.Contains(l, "node ready")
		case <-time.After(10 * time.Second):
			t.Fatal("no ready line in the node's log")
		}
	}
	// Stopping the node ends the followed stream.
	if resp, body := do(t, "DELETE", base+"/v1/agents/dev/nodes/"+n.ID, "", "", nil); resp.StatusCode != 204 {
		t.Fatalf("stop node: %d %s", resp.StatusCode, body)
	}
	for ended := false; !ended; {
		select {
		case _, ok := <-lines:
			ended = !ok
		case <-time.After(10 * time.Second):
			t.Fatal("the followed log did not end when the node stopped")
		}
	}
	lresp.Body.Close()
	// The log ends when the process closes its output; it is reaped just after.
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, _ := do(t, "GET", base+"/v1/agents/dev/nodes/"+n.ID, "", "", nil)
		if resp.StatusCode == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stopped node still answers %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, body := do(t, "GET", base+"/v1/agents/nobody/nodes/x", "", "", nil); resp.StatusCode != 404 || !strings.Contains(body, "no-agent") {
		t.Fatalf("unknown agent: %d %s", resp.StatusCode, body)
	}
}
