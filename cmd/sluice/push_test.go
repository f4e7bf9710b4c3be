package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
)

func TestPushFlagErrorsExitTwoWithOneLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--video", "x.ivf"}, "--stream is required"},
		{[]string{"--stream", "cam1"}, "nothing to push"},
		{[]string{"--stream", "cam1", "--video", "-", "--audio", "-"}, "only one of --video and --audio"},
		{[]string{"--stream", "cam1", "--video", "-", "--loop"}, "--loop needs files"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "--url", "https://127.0.0.1:4443/"}, "want moqt://host:port"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "--cert-sha256", "ab", "--ca", "ca.pem"}, "not both"},
		{[]string{"--stream", "cam1", "--video", "a.ivf", "extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"push"}, c.args...), &stdout, &stderr)
		line := stderr.String()
		if code != 2 || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "sluice push: ") || !strings.Contains(line, c.want) {
			t.Errorf("push %v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, line, c.want)
		}
	}
}

func TestPushReportsAMissingFileAndAFileOfTheWrongKind(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stream", "cam1", "--video", "no-such.ivf"}, "no such file"},
		{[]string{"--stream", "cam1", "--video", "../../testdata/audio.ogg"}, "not an IVF file"},
		{[]string{"--stream", "cam1", "--audio", "../../testdata/video.ivf"}, "not an Ogg Opus file"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"push"}, c.args...), &stdout, &stderr)
		if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("push %v: exit %d, stderr %q; want 1 and one line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}

func TestPushWithNoGatewayOnLoopbackSaysConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--video", "../../testdata/video.ivf", "--url", "moqt://" + addr}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "connection refused") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line saying connection refused", code, stderr.String())
	}
}

func TestPushToAServerWithoutMoQSaysVersionNegotiationFailed(t *testing.T) {
	ln, hash := quicServer(t, "h3") // HTTP/3 only
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--video", "../../testdata/video.ivf",
		"--url", "moqt://" + ln.Addr().String(), "--cert-sha256", hash}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "version negotiation") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line about version negotiation", code, stderr.String())
	}
}

// quicServer listens on loopback with a fresh certificate for alpns and
// returns it with the certificate's hex SHA-256.
func quicServer(t *testing.T, alpns ...string) (*quic.Listener, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: alpns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sum := sha256.Sum256(der)
	return ln, hex.EncodeToString(sum[:])
}

func TestPushThatTheServerRefusesPrintsItsCodeAndReason(t *testing.T) {
	ln, hash := quicServer(t, "moqt-16")
	go func() {
		// A draft 16 server that refuses every announcement.
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		ctrl, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		v := moqt.Draft16
		if _, err := moqt.ReadMessage(ctrl, v, 0); err != nil {
			return
		}
		ctrl.Write((&moqt.ServerSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 10}}}).Append(nil, v))
		m, err := moqt.ReadMessage(ctrl, v, 0)
		if pn, ok := m.(*moqt.PublishNamespace); ok && err == nil {
			ctrl.Write((&moqt.RequestError{RequestID: pn.RequestID, Code: moqt.ReqUnauthorized, Reason: "no publish grant for cam1"}).Append(nil, v))
		}
		<-conn.Context().Done()
	}()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"push", "--stream", "cam1", "--audio", "../../testdata/audio.ogg",
		"--url", "moqt://" + ln.Addr().String(), "--cert-sha256", hash}, &stdout, &stderr)
	line := stderr.String()
	if code != 1 || strings.Count(line, "\n") != 1 || !strings.Contains(line, "no publish grant for cam1") || !strings.Contains(line, "0x1") {
		t.Fatalf("exit %d, stderr %q; want 1 and one line with the server's reason and code", code, line)
	}
}
