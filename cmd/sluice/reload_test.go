package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
)

const (
	reloadSecret1 = "reload-secret-one-0123456789abcdef"
	reloadSecret2 = "reload-secret-two-0123456789abcdef"
	reloadAPI     = "reload-api-token"
)

// reloadConfig is a config with an HMAC key, one webhook, the M2 throttle
// either off or throttling every WHEP request (queue 0 ≥ concurrent × 0), and
// what else is given.
func reloadConfig(secret, hook string, throttleAll bool, extra string) string {
	throttle := `relay.enable: "false"`
	if throttleAll {
		throttle = `relay.enable: "true", relay.wait.deactive: "0", relay.wait.reactive: "0", ` +
			`relay.matchingList: '[{"pattern":"^/whep/","action":"error"}]'`
	}
	return "gateway: {apiToken: " + reloadAPI + "}\n" +
		"auth: {jwt: {secret: " + secret + "}}\n" +
		"webhooks: [{url: '" + hook + "', secret: whsec-reload}]\n" +
		"plugins: {slots: {throttle: {config: {" + throttle + "}}}}\n" + extra
}

// whepStatus posts a WHEP offer with token and returns the status and body.
func whepStatus(t *testing.T, base, stream, token string) (int, string) {
	t.Helper()
	api, _ := mediatest.API()
	resp, body := do(t, http.MethodPost, base+"/whep/"+stream, "application/sdp", recvOffer(t, api), map[string]string{"Authorization": "Bearer " + token})
	return resp.StatusCode, body
}

// publishStatus publishes stream with token (withBearer's setToken) and
// closes the publisher; it returns the HTTP status the WHIP POST got.
func publishStatus(ctx context.Context, t *testing.T, base, stream string) int {
	t.Helper()
	api, _ := mediatest.API()
	pub, err := mediatest.Publish(ctx, api, base, stream)
	var he *mediatest.HTTPError
	switch {
	case errors.As(err, &he):
		return he.Status
	case err != nil:
		t.Fatalf("publish %s: %v", stream, err)
	}
	pub.Close()
	return http.StatusCreated
}

func reloadAPICall(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, body := do(t, http.MethodPost, base+"/v1/config/reload", "", "", map[string]string{"Authorization": "Bearer " + reloadAPI})
	return resp.StatusCode, body
}

// TestSIGHUPAppliesANewThrottleWebhookAndAuthKeyAndRefusesABadFileKeepingTheOld
// runs sluice dev, rewrites its config file and reloads it: on SIGHUP a
// throttle setting, a webhook URL and the auth key take effect at once;
// through POST /v1/config/reload a changed gateway.listen is reported as
// needing a restart; a file with a bad value is refused by its field's name
// (a 400 problem, a log line on SIGHUP) and the running settings stay.
func TestSIGHUPAppliesANewThrottleWebhookAndAuthKeyAndRefusesABadFileKeepingTheOld(t *testing.T) {
	hookA, hookB := newHookReceiver(t, "whsec-reload", nil), newHookReceiver(t, "whsec-reload", nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	v2 := reloadConfig(reloadSecret2, hookB.url, true, "")
	write(v2)
	tok2 := sluiceToken(t, "--config", path, "--stream", "r-*", "--allow", "publish,play")
	write(reloadConfig(reloadSecret1, hookA.url, false, ""))
	tok1 := sluiceToken(t, "--config", path, "--stream", "r-*", "--allow", "publish,play")
	reader := sluiceToken(t, "--config", path, "--stream", "r-*", "--role", "read")
	setToken := withBearer(t)
	setToken(tok1)
	dev, base := startDev(t, "--config", path)
	ctx := ctxT(t, 120*time.Second)
	if resp, body := do(t, http.MethodPost, base+"/v1/config/reload", "", "", map[string]string{"Authorization": "Bearer " + reader}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a reload with a read-role token: %d %s; want 403 (admin only)", resp.StatusCode, body)
	}

	if code, body := whepStatus(t, base, "r-none", tok1); code != http.StatusNotFound {
		t.Fatalf("before the reload a WHEP of a stream not live: %d %s; want 404 (not throttled)", code, body)
	}
	if code := publishStatus(ctx, t, base, "r-1"); code != http.StatusCreated {
		t.Fatalf("before the reload, a publish with the first key's token: %d", code)
	}
	hookA.waitEvent(t, "stream.started", "r-1")

	write(v2)
	_ = syscall.Kill(dev.cmd.Process.Pid, syscall.SIGHUP)
	line := dev.waitLine(regexp.MustCompile(`config reloaded.*`), 20*time.Second)[0]
	for _, field := range []string{"auth.jwt.secret", "webhooks[0].url", "plugins.slots.throttle.config.relay.enable"} {
		if !strings.Contains(line, field) {
			t.Errorf("the reload's log line does not name %s as applied: %s", field, line)
		}
	}
	if code, body := whepStatus(t, base, "r-none", tok2); code != 510 || body != `{"enable":false,"error":"throttle"}` {
		t.Errorf("after the reload a WHEP: %d %s; want the new throttle's 510", code, body)
	}
	if code := publishStatus(ctx, t, base, "r-2"); code != http.StatusUnauthorized {
		t.Errorf("after the reload, a publish with the old key's token: %d; want 401", code)
	}
	setToken(tok2)
	if code := publishStatus(ctx, t, base, "r-3"); code != http.StatusCreated {
		t.Fatalf("after the reload, a publish with the new key's token: %d", code)
	}
	hookB.waitEvent(t, "stream.started", "r-3")
	hookA.mu.Lock()
	for _, ev := range hookA.events {
		if ev.Stream == "r-3" {
			t.Errorf("the old webhook URL still gets events: %+v", ev)
		}
	}
	hookA.mu.Unlock()

	write(strings.Replace(v2, "gateway: {", "gateway: {listen: '127.0.0.1:9', ", 1))
	code, body := reloadAPICall(t, base)
	var rep struct{ Applied, Restart []string }
	if err := json.Unmarshal([]byte(body), &rep); code != http.StatusOK || err != nil || len(rep.Applied) != 0 || !slices.Equal(rep.Restart, []string{"gateway.listen"}) {
		t.Errorf("POST /v1/config/reload after changing gateway.listen: %d %s; want it alone, listed as needing a restart", code, body)
	}
	code, body = reloadAPICall(t, base) // the same file again: the change still waits
	rep.Applied, rep.Restart = nil, nil
	if err := json.Unmarshal([]byte(body), &rep); code != http.StatusOK || err != nil || !slices.Equal(rep.Restart, []string{"gateway.listen"}) {
		t.Errorf("a second reload of the same file: %d %s; want gateway.listen still listed as needing a restart", code, body)
	}

	write(v2 + "process: {relay: {concurrent: many}}\n")
	code, body = reloadAPICall(t, base)
	if code != http.StatusBadRequest || !strings.Contains(body, "process.relay.concurrent") || !strings.Contains(body, "config-invalid") {
		t.Errorf("reloading a file with a bad value: %d %s; want a 400 problem naming process.relay.concurrent", code, body)
	}
	_ = syscall.Kill(dev.cmd.Process.Pid, syscall.SIGHUP)
	dev.waitLine(regexp.MustCompile(`config reload refused.*process\.relay\.concurrent`), 20*time.Second)
	if code, _ := whepStatus(t, base, "r-none", tok2); code != 510 {
		t.Errorf("after a refused reload a WHEP: %d; want the running throttle's 510", code)
	}
	setToken(tok1)
	if code := publishStatus(ctx, t, base, "r-4"); code != http.StatusUnauthorized {
		t.Errorf("after a refused reload, the old key's token: %d; want 401 still", code)
	}

	// The API token and the origins that may call from a browser change live.
	const newAPI = "reload-api-token-two"
	write(strings.Replace(v2, "gateway: {apiToken: "+reloadAPI, "gateway: {corsOrigins: ['https://ops.example'], apiToken: "+newAPI, 1))
	code, body = reloadAPICall(t, base)
	rep.Applied, rep.Restart = nil, nil
	if err := json.Unmarshal([]byte(body), &rep); code != http.StatusOK || err != nil ||
		!slices.Contains(rep.Applied, "gateway.apiToken") || !slices.Contains(rep.Applied, "gateway.corsOrigins") {
		t.Fatalf("reloading a new API token and CORS origins: %d %s; want both applied", code, body)
	}
	for _, c := range []struct {
		token string
		want  int
	}{{reloadAPI, http.StatusUnauthorized}, {newAPI, http.StatusOK}} {
		if resp, body := do(t, http.MethodGet, base+"/v1/streams", "", "", map[string]string{"Authorization": "Bearer " + c.token}); resp.StatusCode != c.want {
			t.Errorf("GET /v1/streams with the %s API token after the reload: %d %s; want %d", map[bool]string{true: "new", false: "old"}[c.token == newAPI], resp.StatusCode, body, c.want)
		}
	}
	for origin, allowed := range map[string]bool{"https://ops.example": true, "https://elsewhere.example": false} {
		resp, _ := do(t, http.MethodGet, base+"/v1/streams", "", "", map[string]string{"Authorization": "Bearer " + newAPI, "Origin": origin})
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (got == origin) != allowed {
			t.Errorf("after the reload, a call from %s got Access-Control-Allow-Origin %q; allowed = %v", origin, got, allowed)
		}
	}
}

func TestConfigChangesNameEachChangedSettingByItsFullPath(t *testing.T) {
	parse := func(doc string) *fileConfig {
		t.Helper()
		f, err := loadConfig(writeConfig(t, doc))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := parse("gateway: {listen: '127.0.0.1:8080', corsOrigins: [a]}\nwebhooks: [{url: 'http://a/', secret: s}]\nprocess: {relay: {concurrent: 2}}\n" +
		"plugins: {slots: {throttle: {config: {relay.enable: 'false'}}}}\n")
	b := parse("gateway: {listen: '127.0.0.1:9090', corsOrigins: [a, b]}\nwebhooks: [{url: 'http://b/', secret: s}]\nprocess: {relay: {concurrent: 2, warm: 2}}\n" +
		"plugins: {slots: {throttle: {config: {relay.enable: 'true'}}}}\nstreams: [{id: lobby}]\n")
	got, err := configChanges(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gateway.corsOrigins", "gateway.listen", "plugins.slots.throttle.config.relay.enable", "process.relay.warm", "streams", "webhooks[0].url"}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %v\nwant      %v", got, want)
	}
	if got, _ := configChanges(a, a); len(got) != 0 {
		t.Errorf("a file against itself: %v", got)
	}
}

// TestSIGHUPReloadsAnAgentsPoolLimitsAndNamesWhatWaitsForARestart: SIGHUP
// (systemd's reload, a Helm config change) must not end an agent — the
// signal's default: it applies the pools' new limits (warm 1 → 2 starts a
// second node), names the settings that wait for a restart, and refuses a
// bad file by its field.
func TestSIGHUPReloadsAnAgentsPoolLimitsAndNamesWhatWaitsForARestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte("process: {relay: {warm: 1}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-h", "--host", "127.0.0.1")
	a := start(t, "agent", "--config", path, "--tls-dir", dir, "--tls-name", "agent-h", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0", "--metrics", "off")
	a.waitLine(regexp.MustCompile(`is ready`), 30*time.Second)
	pid := a.cmd.Process.Pid
	until(t, "the agent's one warm node", 10*time.Second, func() bool { return len(children(pid)) == 1 })
	if err := os.WriteFile(path, []byte("agent: {queueTimeout: 3s}\nprocess: {relay: {warm: 2}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(pid, syscall.SIGHUP)
	a.waitLine(regexp.MustCompile(`config reloaded.*applied=process\.relay\.warm.*restart=agent\.queueTimeout`), 10*time.Second)
	until(t, "a second warm node after the reload", 10*time.Second, func() bool { return len(children(pid)) == 2 })
	if err := os.WriteFile(path, []byte("process: {relay: {warm: lots}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(pid, syscall.SIGHUP)
	a.waitLine(regexp.MustCompile(`config reload refused.*process\.relay\.warm`), 10*time.Second)
	select {
	case <-a.exited:
		t.Fatal("the agent ended on SIGHUP")
	default:
	}
}

// TestAReloadRaisesAPoolsLimitAndTheWaitingStreamIsPlaced: with one node of
// one stream, a second publish waits and is refused; after a reload that
// raises process.relay.concurrent, the same publish is placed, with the first
// stream still live.
func TestAReloadRaisesAPoolsLimitAndTheWaitingStreamIsPlaced(t *testing.T) {
	path := writeConfig(t, "agent: {queueTimeout: 1s}\nprocess: {relay: {concurrent: 1, waitQueue: 1}}\n")
	_, base := startDev(t, "--config", path)
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	first, err := mediatest.Publish(ctx, api, base, "pool-a")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var he *mediatest.HTTPError
	if _, err := mediatest.Publish(ctx, api, base, "pool-b"); !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("a second stream on a full pool of one node: %v; want 503 after the queue's timeout", err)
	}
	if err := os.WriteFile(path, []byte("agent: {queueTimeout: 1s}\nprocess: {relay: {concurrent: 2, waitQueue: 1}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, http.MethodPost, base+"/v1/config/reload", "", "", nil)
	var rep struct{ Applied, Restart []string }
	if err := json.Unmarshal([]byte(body), &rep); resp.StatusCode != http.StatusOK || err != nil || !slices.Equal(rep.Applied, []string{"process.relay.concurrent"}) {
		t.Fatalf("reloading concurrent 1 → 2: %d %s; want it applied", resp.StatusCode, body)
	}
	second, err := mediatest.Publish(ctx, api, base, "pool-b")
	if err != nil {
		t.Fatalf("after raising concurrent to 2, the second stream: %v", err)
	}
	second.Close()
}
