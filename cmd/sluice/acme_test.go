package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/sluicegw/sluice/internal/config"
	"github.com/sluicegw/sluice/internal/freeport"
)

// Pebble is Let's Encrypt's ACME test server: the real protocol, with its
// validation authority dialling the ports it is told to. It is built from the
// module proxy with `go install pkg@version`, which resolves it by its own
// go.mod: as a tool dependency of sluice's go.mod it would pull its
// dependencies into sluice's module graph (and could move versions sluice's
// own packages build with) for the sake of one test.
const (
	pebbleModule  = "github.com/letsencrypt/pebble/v2"
	pebbleVersion = "v2.10.3"
	acmeDomain    = "gw.sluice.test"
)

// pebbleKit is Pebble's two programs and its module's test certificates.
type pebbleKit struct {
	pebble, challtestsrv string
	moduleDir            string // holds test/certs: Pebble's own HTTPS key pair and its root
}

// buildPebble installs pebble and pebble-challtestsrv into a temporary
// directory and finds Pebble's module directory.
func buildPebble(t *testing.T) pebbleKit {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "install", pebbleModule+"/cmd/pebble@"+pebbleVersion, pebbleModule+"/cmd/pebble-challtestsrv@"+pebbleVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	cmd.Dir = bin // outside sluice's module: Pebble's go.mod alone decides
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building Pebble %s: %v\n%s", pebbleVersion, err, out)
	}
	out, err := exec.Command("go", "mod", "download", "-json", pebbleModule+"@"+pebbleVersion).Output()
	if err != nil {
		t.Fatalf("finding Pebble's module: %v", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download -json: %v: %s", err, out)
	}
	return pebbleKit{pebble: filepath.Join(bin, "pebble"), challtestsrv: filepath.Join(bin, "pebble-challtestsrv"), moduleDir: m.Dir}
}

// runBackground runs a helper program until the test ends, showing its output
// in the log if the test fails.
func runBackground(t *testing.T, name string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), out.String())
		}
	})
}

// syncBuffer is an io.Writer a test can read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// acmeCase is one gateway getting certificates from its own Pebble.
type acmeCase struct {
	challenges []string // gateway.acme.challenges
	httpListen bool     // the gateway serves gateway.acme.httpListen
	validity   int      // seconds a Pebble certificate is valid
	// Where Pebble's validation authority dials: the gateway's port for the
	// challenge under test, a closed port for the other one, so a
	// certificate proves that challenge alone was answered.
	pebbleHTTP, pebbleTLS string
}

// acmeRun is a running case: the gateway's ports, Pebble's issuing root, and
// the gateway's ACME storage.
type acmeRun struct {
	gw           *proc
	httpsPort    string
	httpAddr     string // "" when the gateway has no httpListen
	issuingRoots *x509.CertPool
	storage      string
}

// startACME starts pebble-challtestsrv (DNS: every name is 127.0.0.1),
// Pebble, and a gateway whose gateway.acme points at them; it returns once
// Pebble answers.
func startACME(t *testing.T, kit pebbleKit, c acmeCase) *acmeRun {
	t.Helper()
	dir := t.TempDir()
	gwHTTPS, gwHTTP, closed := freeport.Loopback(t), freeport.Loopback(t), freeport.Loopback(t)
	dns, pebbleDir, pebbleMgmt := freeport.Loopback(t), freeport.Loopback(t), freeport.Loopback(t)
	pick := func(which string) int {
		addr := map[string]string{"https": gwHTTPS, "http": gwHTTP, "closed": closed}[which]
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	runBackground(t, kit.challtestsrv, nil, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", dns,
		"-management", freeport.Loopback(t), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	certs := filepath.Join(kit.moduleDir, "test", "certs")
	pcfg := map[string]any{"pebble": map[string]any{
		"listenAddress": pebbleDir, "managementListenAddress": pebbleMgmt,
		"certificate": filepath.Join(certs, "localhost", "cert.pem"), "privateKey": filepath.Join(certs, "localhost", "key.pem"),
		"httpPort": pick(c.pebbleHTTP), "tlsPort": pick(c.pebbleTLS),
		"ocspResponderURL": "", "externalAccountBindingRequired": false, "keyAlgorithm": "ecdsa",
		"retryAfter": map[string]int{"authz": 1, "order": 1},
		"profiles":   map[string]any{"default": map[string]any{"description": "sluice's test", "validityPeriod": c.validity}},
	}}
	b, _ := json.Marshal(pcfg)
	pcfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(pcfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// No sleeps before validation, no nonces rejected at random, and every
	// order validated afresh (no reused authorization), so a renewal
	// answers its challenge again.
	runBackground(t, kit.pebble, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", pcfgPath, "-dnsserver", dns)

	minica := readPool(t, filepath.Join(certs, "pebble.minica.pem"))
	pebbleClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: minica}}}
	var issuing []byte
	poll(t, "Pebble's issuing root at /roots/0", 30*time.Second, func() error {
		var err error
		issuing, err = fetch(pebbleClient, "https://"+pebbleMgmt+"/roots/0")
		return err
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(issuing) {
		t.Fatalf("/roots/0 is not a PEM certificate: %q", issuing)
	}

	r := &acmeRun{issuingRoots: roots, storage: filepath.Join(dir, "acme")}
	_, r.httpsPort, _ = net.SplitHostPort(gwHTTPS)
	httpListen := "off"
	if c.httpListen {
		httpListen, r.httpAddr = gwHTTP, gwHTTP
	}
	cfg := writeConfig(t, fmt.Sprintf(`gateway:
  acme:
    domains: [%s]
    email: ops@sluice.test
    ca: https://%s/dir
    caRoot: %s
    storage: %s
    httpListen: %q
    challenges: [%s]
    renewInterval: 1s
`, acmeDomain, pebbleDir, filepath.Join(certs, "pebble.minica.pem"), r.storage, httpListen, strings.Join(c.challenges, ", ")))
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "gw-1", "--host", "127.0.0.1")
	r.gw = start(t, "gateway", "--config", cfg, "--tls-dir", dir, "--tls-name", "gw-1", "--bind", freeport.Loopback(t),
		"--http", gwHTTPS, "--ice-port", "-1")
	r.gw.waitLine(regexp.MustCompile(`ready on https://`), 30*time.Second)
	r.gw.waitLine(regexp.MustCompile(`ACME\s+`+regexp.QuoteMeta(acmeDomain+" from https://"+pebbleDir+"/dir (")), 5*time.Second)
	return r
}

// served makes a new HTTPS connection to the gateway as a browser would for
// https://gw.sluice.test:PORT/healthz (the name resolved to the gateway's
// loopback address), trusting Pebble's issuing root alone, and returns the
// certificate the gateway served.
func (r *acmeRun) served() (*x509.Certificate, error) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: r.issuingRoots},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", r.httpsPort))
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + net.JoinHostPort(acmeDomain, r.httpsPort) + "/healthz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/healthz over HTTPS: %s", resp.Status)
	}
	if len(resp.TLS.VerifiedChains) == 0 {
		return nil, fmt.Errorf("no verified chain")
	}
	return resp.TLS.PeerCertificates[0], nil
}

// waitCertificate waits for the gateway to serve a certificate for the
// domain that chains to Pebble's issuing root, and checks certmagic stored it
// under gateway.acme.storage.
func (r *acmeRun) waitCertificate(t *testing.T) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	poll(t, "a certificate from Pebble served over HTTPS", 90*time.Second, func() error {
		var err error
		leaf, err = r.served()
		return err
	})
	if err := leaf.VerifyHostname(acmeDomain); err != nil {
		t.Fatalf("served certificate: %v", err)
	}
	var stored []string
	_ = filepath.WalkDir(r.storage, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == acmeDomain+".crt" {
			stored = append(stored, path)
		}
		return nil
	})
	if len(stored) == 0 {
		t.Fatalf("no %s.crt under gateway.acme.storage %s", acmeDomain, r.storage)
	}
	return leaf
}

func TestACMECertificatesFromPebble(t *testing.T) {
	kit := buildPebble(t)

	t.Run("HTTP-01 on httpListen, which redirects everything else to HTTPS", func(t *testing.T) {
		r := startACME(t, kit, acmeCase{challenges: []string{"http-01"}, httpListen: true, validity: 3600,
			pebbleHTTP: "http", pebbleTLS: "closed"})
		r.waitCertificate(t)

		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.httpAddr+"/whip/cam-1?x=1", strings.NewReader("v=0"))
		req.Host = acmeDomain
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://" + net.JoinHostPort(acmeDomain, r.httpsPort) + "/whip/cam-1?x=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Fatalf("POST over plain HTTP: %s, Location %q; want 308 to %s", resp.Status, resp.Header.Get("Location"), want)
		}
	})

	t.Run("TLS-ALPN-01 on the HTTPS listener, with no httpListen", func(t *testing.T) {
		r := startACME(t, kit, acmeCase{challenges: []string{"tls-alpn-01"}, validity: 3600,
			pebbleHTTP: "closed", pebbleTLS: "https"})
		r.waitCertificate(t)
	})

	t.Run("a short-lived certificate is renewed before it expires", func(t *testing.T) {
		// 30 s certificates: certmagic renews in the last third of their
		// lifetime (or in Pebble's ARI window, which may open sooner),
		// checking every second (renewInterval).
		r := startACME(t, kit, acmeCase{challenges: []string{"http-01", "tls-alpn-01"}, httpListen: true, validity: 30,
			pebbleHTTP: "http", pebbleTLS: "https"})
		first := r.waitCertificate(t)
		var next *x509.Certificate
		poll(t, "a renewed certificate with a new serial", 90*time.Second, func() error {
			c, err := r.served()
			if err != nil {
				return err
			}
			if c.SerialNumber.Cmp(first.SerialNumber) == 0 {
				if time.Now().After(first.NotAfter) {
					t.Fatalf("the gateway still serves certificate %x after it expired at %s", first.SerialNumber, first.NotAfter)
				}
				return fmt.Errorf("still serial %x (valid until %s)", c.SerialNumber, c.NotAfter.Format(time.TimeOnly))
			}
			next = c
			return nil
		})
		if next.NotAfter.Before(first.NotAfter) {
			t.Fatalf("renewed certificate ends %s, before the first one (%s)", next.NotAfter, first.NotAfter)
		}
	})
}

// poll calls try every 200 ms until it succeeds, failing the test with its
// last error after limit.
func poll(t *testing.T, what string, limit time.Duration, try func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", limit, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fetch(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

func readPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	return p
}

func TestACMEDefaultsAreLetsEncryptOnPort80WithBothChallenges(t *testing.T) {
	for _, c := range []struct {
		in              config.ACME
		httpListen      string
		http01, tlsalpn bool
	}{
		{config.ACME{Domains: []string{"a.example.com"}}, ":80", true, true},
		{config.ACME{HTTPListen: "off"}, "", false, true},
		{config.ACME{HTTPListen: "127.0.0.1:8081", Challenges: []string{"http-01"}}, "127.0.0.1:8081", true, false},
	} {
		s := acmeFromConfig(c.in)
		if s.HTTPListen != c.httpListen || s.HTTP01 != c.http01 || s.TLSALPN01 != c.tlsalpn ||
			s.CA != certmagic.LetsEncryptProductionCA || s.Storage != "./acme" || s.RenewInterval != 10*time.Minute {
			t.Errorf("%+v resolved to %+v", c.in, s)
		}
	}
}
